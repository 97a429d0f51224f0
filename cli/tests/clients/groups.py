"""Consumer groups through confluent-kafka (Debian's python3-confluent-kafka
on librdkafka 2.0.2, or the newest from the venv) and kafka-python.

Usage: groups.py BOOTSTRAP COMMAND ARGS...
  produce TOPIC PARTITIONS COUNT      create TOPIC, write COUNT records (value = index)
  append TOPIC PARTITIONS FROM TO     write records FROM..TO to an existing TOPIC
  member TOPIC GROUP OUT STOP [k=v]   a confluent-kafka group member (k=v: client
                                      configs, e.g. group.protocol=consumer for KIP-848;
                                      rill.pause_every=N to read slowly): subscribes,
                                      commits synchronously on revoke and every
                                      second, writes "partition offset" per record
                                      and "# assigned ..." per assignment to OUT,
                                      until the file STOP exists
  kafka-python TOPIC GROUP COUNT      kafka-python (newest) reads COUNT records
                                      through a group and commits
  committed TOPIC GROUP PARTITIONS    prints "partition offset" as committed
Every wait is bounded; a failed assertion exits non-zero with the reason.
"""
import os
import sys
import time

BOOT, CMD, ARGS = sys.argv[1], sys.argv[2], sys.argv[3:]
TIMEOUT = 30


def produce(topic, partitions, count):
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": BOOT})
    admin.create_topics([NewTopic(topic, int(partitions), 1)])[topic].result(TIMEOUT)
    append(topic, partitions, 0, count)


def append(topic, partitions, first, end):
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": BOOT, "acks": "all", "linger.ms": 20})
    partitions = int(partitions)
    for i in range(int(first), int(end)):
        while True:
            try:
                p.produce(topic, key=b"%d" % i, value=b"%d" % i, partition=i % partitions)
                break
            except BufferError:
                p.poll(0.1)
    assert p.flush(120) == 0, "undelivered records"


def member(topic, group, out, stop, *extra):
    from confluent_kafka import Consumer, KafkaError
    conf = {
        "bootstrap.servers": BOOT,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 500,
    }
    pace = 0
    for kv in extra:
        k, v = kv.split("=", 1)
        if k == "rill.pause_every":
            pace = int(v)  # a slow consumer: 10 ms pause every so many records
        else:
            conf[k] = v
    if conf.get("group.protocol") == "consumer":
        # KIP-848: the broker sets session and heartbeat times.
        del conf["session.timeout.ms"], conf["heartbeat.interval.ms"]
    c = Consumer(conf)
    f = open(out, "w", buffering=1)
    state = {"uncommitted": False}

    def commit():
        if not state["uncommitted"]:
            return
        try:
            c.commit(asynchronous=False)
            state["uncommitted"] = False
        except Exception as e:  # no offsets to commit, or a rebalance beat us
            f.write("# commit failed: %s\n" % e)

    def on_assign(consumer, partitions):
        f.write("# assigned %s\n" % ",".join(str(p.partition) for p in partitions))

    def on_revoke(consumer, partitions):
        commit()
        f.write("# revoked %s\n" % ",".join(str(p.partition) for p in partitions))

    c.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)
    last_commit = time.time()
    deadline = time.time() + 300
    while not os.path.exists(stop) and time.time() < deadline:
        m = c.poll(0.2)
        if m is not None:
            if m.error():
                assert m.error().code() == KafkaError._PARTITION_EOF, m.error()
            else:
                f.write("%d %d\n" % (m.partition(), m.offset()))
                state["uncommitted"] = True
                state["read"] = state.get("read", 0) + 1
                if pace and state["read"] % pace == 0:
                    time.sleep(0.01)
        if time.time() - last_commit > 1:
            commit()
            last_commit = time.time()
    commit()
    c.close()
    f.write("# closed\n")


def kafka_python(topic, group, count):
    import kafka
    c = kafka.KafkaConsumer(topic, bootstrap_servers=BOOT, group_id=group, auto_offset_reset="earliest",
                            enable_auto_commit=False, consumer_timeout_ms=15000)
    seen = set()
    deadline = time.time() + 60
    for m in c:
        seen.add((m.partition, m.offset))
        if len(seen) >= int(count) or time.time() > deadline:
            break
    c.commit()
    assignment = sorted(p.partition for p in c.assignment())
    c.close()
    assert len(seen) == int(count), f"kafka-python read {len(seen)} of {count}"
    print(f"kafka-python {kafka.__version__}: read {len(seen)} records, assigned {assignment}")


def committed(topic, group, partitions):
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": BOOT, "group.id": group, "enable.auto.commit": False})
    tps = c.committed([TopicPartition(topic, p) for p in range(int(partitions))], timeout=TIMEOUT)
    for tp in tps:
        assert tp.error is None, tp.error
        print(tp.partition, tp.offset)
    c.close()


{"produce": produce, "append": append, "member": member, "kafka-python": kafka_python, "committed": committed}[CMD](*ARGS)

"""A broker's disk filling up, seen through confluent-kafka.

Usage: disk_full.py BOOTSTRAP COMMAND ARGS...
  create TOPIC PARTITIONS   create TOPIC; prints "created" or "failed CODE MESSAGE"
  fill TOPIC LIMIT          produce 4 KiB records (acks=all, 5 s message timeout) until
                            200 in a row fail or LIMIT were tried; prints one JSON line:
                            {"acked": [[partition, offset], ...], "errors": {name: count}}
  produce TOPIC COUNT       produce COUNT records, every one must be acknowledged within
                            60 s (retrying); prints the JSON line as fill does
  read TOPIC PARTITIONS     read every partition from the beginning to its end; prints
                            one JSON line: [[partition, offset], ...]
Every wait is bounded.
"""
import json
import sys
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

BOOT, CMD, ARGS = sys.argv[1], sys.argv[2], sys.argv[3:]


def create(topic, partitions):
    admin = AdminClient({"bootstrap.servers": BOOT})
    try:
        admin.create_topics([NewTopic(topic, int(partitions), 1)])[topic].result(30)
        print("created")
    except KafkaException as e:
        err = e.args[0]
        print("failed %s %s" % (err.name(), err.str()))


def produce_until(topic, limit, give_up_after, timeout_ms):
    p = Producer({"bootstrap.servers": BOOT, "acks": "all", "linger.ms": 5,
                  "message.timeout.ms": timeout_ms})
    acked, errors, state = [], {}, {"failed_in_a_row": 0}

    def on_delivery(err, msg):
        if err is None:
            acked.append([msg.partition(), msg.offset()])
            state["failed_in_a_row"] = 0
        else:
            errors[err.name()] = errors.get(err.name(), 0) + 1
            state["failed_in_a_row"] += 1

    deadline = time.time() + 120
    for i in range(int(limit)):
        if give_up_after and state["failed_in_a_row"] >= give_up_after:
            break
        if time.time() > deadline:
            break
        while True:
            try:
                p.produce(topic, value=b"%08d" % i + b"x" * 4088, on_delivery=on_delivery)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    p.flush(90)
    print(json.dumps({"acked": acked, "errors": errors}))


def read(topic, partitions):
    c = Consumer({"bootstrap.servers": BOOT, "group.id": "disk-full-reader",
                  "enable.auto.commit": False, "enable.partition.eof": True})
    parts = [TopicPartition(topic, p, 0) for p in range(int(partitions))]
    ends = {}
    for tp in parts:
        lo, hi = c.get_watermark_offsets(tp, timeout=30)
        ends[tp.partition] = hi
    c.assign([tp for tp in parts if ends[tp.partition] > 0])
    got, done = [], {p for p, hi in ends.items() if hi == 0}
    deadline = time.time() + 60
    while len(done) < len(parts) and time.time() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            if m.error().code() == -191:  # partition EOF
                done.add(m.partition())
                continue
            raise m.error()
        got.append([m.partition(), m.offset()])
    c.close()
    assert len(done) == len(parts), "did not reach the end of every partition"
    print(json.dumps(got))


if CMD == "create":
    create(*ARGS)
elif CMD == "fill":
    produce_until(ARGS[0], ARGS[1], 200, 5000)
elif CMD == "produce":
    produce_until(ARGS[0], ARGS[1], 0, 60000)
elif CMD == "read":
    read(*ARGS)
else:
    sys.exit("unknown command " + CMD)

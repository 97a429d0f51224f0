"""A compacted topic (cleanup.policy=compact) through the newest
confluent-kafka and kafka-python, from the venv scripts/test-clients.sh makes.

Usage: compacted_topic.py BOOTSTRAP CHECK TOPIC [ROUND]
  create TOPIC          create it compacted, with small segments
  produce TOPIC ROUND   every key gets its value of ROUND (from round 2 on,
                        keys 0-4 then get a delete marker); even rounds
                        through confluent-kafka, odd ones through
                        kafka-python (idempotent)
  keyless TOPIC         a record without a key is refused, by both clients
  verify TOPIC ROUND    both clients read the partition from its start: every
                        key's newest record is ROUND's, offsets increase;
                        prints how many records were read
Every wait is bounded; a failed assertion exits non-zero with the reason.
"""
import sys
import time

BOOT, CHECK, TOPIC = sys.argv[1], sys.argv[2], sys.argv[3]
ROUND = int(sys.argv[4]) if len(sys.argv) > 4 else 0
KEYS = 50
DELETED = 5
TIMEOUT = 30


def key(k):
    return b"key-%d" % k


def value(k, r):
    return b"k%d:r%d:" % (k, r) + b"x" * 200


def newest(r):
    """Each key's newest value after rounds 0..=r (None: a delete marker)."""
    return {key(k): (None if r >= 2 and k < DELETED else value(k, r)) for k in range(KEYS)}


def create():
    from confluent_kafka.admin import AdminClient, NewTopic
    config = {
        "cleanup.policy": "compact",
        "segment.bytes": "16384",
        "segment.ms": "300",
        "min.cleanable.dirty.ratio": "0.01",
        "delete.retention.ms": "1000",
    }
    admin = AdminClient({"bootstrap.servers": BOOT})
    admin.create_topics([NewTopic(TOPIC, num_partitions=1, config=config)],
                        request_timeout=TIMEOUT)[TOPIC].result(TIMEOUT)
    from confluent_kafka.admin import ConfigResource
    res = ConfigResource(ConfigResource.Type.TOPIC, TOPIC)
    described = admin.describe_configs([res])[res].result(TIMEOUT)
    assert described["cleanup.policy"].value == "compact", described["cleanup.policy"]


def produce():
    if ROUND % 2:
        return produce_kafka_python()
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": BOOT, "acks": "all", "linger.ms": 5})
    errors = []

    def done(err, _msg):
        if err is not None:
            errors.append(err)
    for k in range(KEYS):
        p.produce(TOPIC, key=key(k), value=value(k, ROUND), on_delivery=done)
        if ROUND >= 2 and k < DELETED:
            p.produce(TOPIC, key=key(k), value=None, on_delivery=done)
    assert p.flush(TIMEOUT) == 0, "undelivered records"
    assert not errors, errors


def produce_kafka_python():
    """Idempotent by default (kafka-python 3): the producer's superseded
    batches stay in the log as empty batches, which every reader must step over."""
    import kafka
    kp = kafka.KafkaProducer(bootstrap_servers=BOOT, acks="all", linger_ms=5)
    assert kp.config["enable_idempotence"], "kafka-python 3 is idempotent by default"
    futures = []
    for k in range(KEYS):
        futures.append(kp.send(TOPIC, key=key(k), value=value(k, ROUND)))
        if ROUND >= 2 and k < DELETED:
            futures.append(kp.send(TOPIC, key=key(k), value=None))
    for f in futures:
        f.get(timeout=TIMEOUT)
    kp.close()


def keyless():
    from confluent_kafka import Producer, KafkaError
    p = Producer({"bootstrap.servers": BOOT, "acks": "all", "retries": 0})
    got = []
    p.produce(TOPIC, value=b"no key", on_delivery=lambda err, _m: got.append(err))
    p.flush(TIMEOUT)
    assert got and got[0] is not None and got[0].code() == KafkaError.INVALID_RECORD, got
    print("confluent-kafka:", got[0])

    import kafka
    import kafka.errors
    kp = kafka.KafkaProducer(bootstrap_servers=BOOT, retries=0)
    try:
        kp.send(TOPIC, value=b"no key").get(timeout=TIMEOUT)
        raise AssertionError("kafka-python: a keyless record was accepted")
    except kafka.errors.InvalidRecordError as e:
        print("kafka-python:", repr(e))
    finally:
        kp.close()


def check(records, client):
    offsets = [o for o, _, _ in records]
    assert offsets == sorted(set(offsets)), f"{client}: offsets do not increase"
    seen = {}
    for _, k, v in records:
        seen[k] = v
    for k, v in newest(ROUND).items():
        if v is None:
            assert seen.get(k) is None, f"{client}: {k} was deleted but reads {seen.get(k)[:20]}"
        else:
            assert seen.get(k) == v, f"{client}: {k} reads {(seen.get(k) or b'')[:20]}, not round {ROUND}"
    print(f"{client}: read {len(records)} records")


def verify():
    from confluent_kafka import Consumer, KafkaError, TopicPartition
    c = Consumer({"bootstrap.servers": BOOT, "group.id": "verify", "enable.auto.commit": False,
                  "enable.partition.eof": True})
    _, high = c.get_watermark_offsets(TopicPartition(TOPIC, 0), timeout=TIMEOUT)
    c.assign([TopicPartition(TOPIC, 0, 0)])
    records = []
    deadline = time.time() + TIMEOUT
    while time.time() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            assert m.error().code() == KafkaError._PARTITION_EOF, m.error()
            if records and records[-1][0] >= high - 1 or high == 0:
                break
            continue
        records.append((m.offset(), m.key(), m.value()))
        if m.offset() >= high - 1:
            break
    c.close()
    check(records, "confluent-kafka")

    import kafka
    kc = kafka.KafkaConsumer(bootstrap_servers=BOOT, enable_auto_commit=False, consumer_timeout_ms=3000)
    tp = kafka.TopicPartition(TOPIC, 0)
    kc.assign([tp])
    kc.seek_to_beginning(tp)
    high = kc.end_offsets([tp])[tp]
    records = []
    deadline = time.time() + TIMEOUT
    while time.time() < deadline and (not records or records[-1][0] < high - 1):
        for batch in kc.poll(timeout_ms=500).values():
            records.extend((m.offset, m.key, m.value) for m in batch)
    kc.close()
    check(records, "kafka-python")


{"create": create, "produce": produce, "keyless": keyless, "verify": verify}[CHECK]()

"""A compacted changelog rebuilt from its start by Debian's confluent-kafka
(librdkafka 2.0.2) — or the newest, from the venv — after the cleaner ran.

Usage: changelog.py BOOTSTRAP CHECK TOPIC
  create TOPIC   one partition, 64 KiB segments, not compacted yet
  produce TOPIC  200 keys x 40 versions of ~200-byte values (not idempotent),
                 then delete markers for keys 0-39 and 10 more writes
  compact TOPIC  cleanup.policy=compact (AlterConfigs), so that one cleaner
                 pass finds the whole log dirty
  verify TOPIC   read from the beginning to the end: every live key's newest
                 value, no deleted key, no consumer error; prints the count
Every wait is bounded; a failed assertion exits non-zero with the reason.
"""
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition, OFFSET_BEGINNING, KafkaError

BOOT, CHECK, TOPIC = sys.argv[1], sys.argv[2], sys.argv[3]
KEYS, VERSIONS, DELETED, TAIL = 200, 40, 40, 10
TIMEOUT = 60


def value(k, v):
    return b"k%d:v%d:" % (k, v) + b"x" * 190


def newest():
    want = {}
    for k in range(KEYS):
        want[b"key-%d" % k] = value(k, VERSIONS - 1)
    for k in range(DELETED):
        want[b"key-%d" % k] = None
    for i in range(TAIL):
        want[b"key-%d" % (KEYS - 1 - i)] = value(KEYS - 1 - i, VERSIONS + 1)
    return want


def configs(policy):
    # Markers stay long enough that no second pass (which would merge what
    # the first left) comes before the readers.
    return {
        "cleanup.policy": policy,
        "segment.bytes": "65536",
        "segment.ms": "1000",
        "min.cleanable.dirty.ratio": "0.01",
        "delete.retention.ms": "600000",
        "min.compaction.lag.ms": "0",
    }


def create():
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": BOOT})
    topic = NewTopic(TOPIC, num_partitions=1, replication_factor=1, config=configs("delete"))
    admin.create_topics([topic], request_timeout=TIMEOUT)[TOPIC].result(TIMEOUT)


def compact():
    from confluent_kafka.admin import AdminClient, ConfigResource
    admin = AdminClient({"bootstrap.servers": BOOT})
    res = ConfigResource(ConfigResource.Type.TOPIC, TOPIC, set_config=configs("compact"))
    admin.alter_configs([res], request_timeout=TIMEOUT)[res].result(TIMEOUT)


def produce():
    p = Producer({"bootstrap.servers": BOOT, "acks": "all", "linger.ms": 5, "batch.size": 16384})
    errors = []

    def done(err, _msg):
        if err is not None:
            errors.append(err)
    for v in range(VERSIONS):
        for k in range(KEYS):
            p.produce(TOPIC, key=b"key-%d" % k, value=value(k, v), on_delivery=done)
        p.poll(0)
    for k in range(DELETED):
        p.produce(TOPIC, key=b"key-%d" % k, value=None, on_delivery=done)
    for i in range(TAIL):
        k = KEYS - 1 - i
        p.produce(TOPIC, key=b"key-%d" % k, value=value(k, VERSIONS + 1), on_delivery=done)
    assert p.flush(TIMEOUT) == 0, "undelivered records"
    assert not errors, errors[:3]


def verify():
    c = Consumer({"bootstrap.servers": BOOT, "group.id": "changelog-verify",
                  "enable.auto.commit": False, "enable.partition.eof": True})
    low, high = c.get_watermark_offsets(TopicPartition(TOPIC, 0), timeout=TIMEOUT)
    c.assign([TopicPartition(TOPIC, 0, OFFSET_BEGINNING)])
    seen, count, last = {}, 0, -1
    deadline = time.time() + TIMEOUT
    while time.time() < deadline:
        m = c.poll(1.0)
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                if m.offset() >= high:
                    break
                continue
            raise AssertionError(f"consumer error at offset {m.offset()}: {m.error()}")
        assert m.offset() > last, f"offset {m.offset()} after {last}"
        last = m.offset()
        seen[m.key()] = m.value()
        count += 1
    else:
        raise AssertionError(f"did not reach the end ({high}) in {TIMEOUT} s: at {last}")
    c.close()
    want = newest()
    for k, v in want.items():
        if v is None:
            assert seen.get(k) is None, f"{k} was deleted but reads a value"
        else:
            assert seen.get(k) == v, f"{k} reads {seen.get(k, b'')[:20]!r}, not its newest"
    print(f"read {count} records from {low} to {high}, {len(seen)} keys")


{"create": create, "produce": produce, "compact": compact, "verify": verify}[CHECK]()

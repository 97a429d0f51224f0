"""confluent-kafka (librdkafka) against a running Rill broker.

Usage: confluent_suite.py BOOTSTRAP CHECK...
Each check is a function below; any failed assertion exits non-zero with
the reason. Every wait is bounded.
"""
import sys
import time
import uuid

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewPartitions, NewTopic

BOOT = sys.argv[1]
TIMEOUT = 30


_ADMIN = None


def admin():
    # One client for the whole run: futures fail if their client is destroyed.
    global _ADMIN
    if _ADMIN is None:
        _ADMIN = AdminClient({"bootstrap.servers": BOOT})
    return _ADMIN


def create(name, partitions=1, config=None):
    fs = admin().create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})],
                               request_timeout=TIMEOUT)
    fs[name].result(TIMEOUT)


def consumer():
    return Consumer({"bootstrap.servers": BOOT, "group.id": "rill-test-" + uuid.uuid4().hex,
                     "enable.auto.commit": False, "auto.offset.reset": "earliest"})


def read_all(topic, partition, start, count):
    c = consumer()
    c.assign([TopicPartition(topic, partition, start)])
    out = []
    deadline = time.time() + TIMEOUT
    while len(out) < count and time.time() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        assert m.error() is None, m.error()
        out.append(m)
    c.close()
    assert len(out) == count, f"read {len(out)} of {count} messages"
    return out


def check_compression_codecs():
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"]:
        topic = "codec-" + codec
        create(topic, partitions=2)
        p = Producer({"bootstrap.servers": BOOT, "acks": "all", "compression.type": codec,
                      "enable.idempotence": False, "linger.ms": 5})
        acked = []
        errors = []

        def report(err, msg):
            if err is not None:
                errors.append(err)
            else:
                acked.append((msg.partition(), msg.offset(), msg.key(), msg.value()))

        for i in range(2000):
            p.produce(topic, key=f"k{i % 10}".encode(), value=(f"{codec}-{i}-" + "x" * (i % 300)).encode(),
                      headers=[("h", f"{i}".encode())], on_delivery=report)
            if i % 500 == 0:
                p.poll(0)
        assert p.flush(TIMEOUT) == 0, "messages left unflushed"
        assert not errors, errors
        assert len(acked) == 2000
        for part in (0, 1):
            mine = sorted(a for a in acked if a[0] == part)
            if not mine:
                continue
            got = read_all(topic, part, 0, len(mine))
            assert [(m.offset(), m.key(), m.value()) for m in got] == [(a[1], a[2], a[3]) for a in mine], codec
            assert all(m.headers()[0][0] == "h" for m in got)
    print("compression codecs ok")


def check_assign_seek_watermarks_and_times():
    topic = "seek-" + uuid.uuid4().hex[:8]
    create(topic, partitions=1)
    p = Producer({"bootstrap.servers": BOOT, "acks": "all", "enable.idempotence": False})
    base_ts = int(time.time() * 1000) - 100_000
    for i in range(100):
        p.produce(topic, value=f"v{i}".encode(), timestamp=base_ts + i * 10)
        p.flush(TIMEOUT)  # one batch per message, so timestamps map to offsets exactly
    c = consumer()
    low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=TIMEOUT)
    assert (low, high) == (0, 100), (low, high)
    found = c.offsets_for_times([TopicPartition(topic, 0, base_ts + 425)], timeout=TIMEOUT)
    assert found[0].offset == 43, found[0].offset
    found = c.offsets_for_times([TopicPartition(topic, 0, base_ts + 10_000)], timeout=TIMEOUT)
    assert found[0].offset in (-1, 100), found[0].offset  # no record that late: end
    c.assign([TopicPartition(topic, 0, 0)])
    m = None
    deadline = time.time() + TIMEOUT
    while m is None and time.time() < deadline:
        m = c.poll(0.5)
    assert m is not None and m.offset() == 0
    c.seek(TopicPartition(topic, 0, 77))
    m = None
    deadline = time.time() + TIMEOUT
    while m is None and time.time() < deadline:
        m = c.poll(0.5)
    assert m is not None and m.offset() == 77 and m.value() == b"v77", m
    c.close()
    print("assign/seek/watermarks/offsets_for_times ok")


def check_admin_topics_and_configs():
    a = admin()
    name = "adm-" + uuid.uuid4().hex[:8]
    create(name, partitions=3, config={"retention.ms": "3600000"})
    md = a.list_topics(timeout=TIMEOUT)
    assert name in md.topics and len(md.topics[name].partitions) == 3
    # Creating it again fails with TOPIC_ALREADY_EXISTS.
    fs = a.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)], request_timeout=TIMEOUT)
    try:
        fs[name].result(TIMEOUT)
        raise AssertionError("duplicate create succeeded")
    except KafkaException as e:
        assert e.args[0].code() == 36, e  # TOPIC_ALREADY_EXISTS
    # Invalid name and invalid config are refused with their codes.
    for bad, cfg, code in [("bad/name", {}, 17), ("okname-" + uuid.uuid4().hex[:6], {"retention.ms": "x"}, 40),
                           ("okname-" + uuid.uuid4().hex[:6], {"no.such": "1"}, 40)]:
        fs = a.create_topics([NewTopic(bad, num_partitions=1, replication_factor=1, config=cfg)], request_timeout=TIMEOUT)
        try:
            fs[bad].result(TIMEOUT)
            raise AssertionError(f"create {bad} {cfg} succeeded")
        except KafkaException as e:
            assert e.args[0].code() == code, (bad, cfg, e)
    # Describe: the override and a default.
    res = ConfigResource(ConfigResource.Type.TOPIC, name)
    desc = a.describe_configs([res], request_timeout=TIMEOUT)[res].result(TIMEOUT)
    assert desc["retention.ms"].value == "3600000"
    assert desc["cleanup.policy"].value == "delete"
    # Alter (confluent-kafka 1.7 has the whole-set AlterConfigs), then describe again.
    res = ConfigResource(ConfigResource.Type.TOPIC, name,
                         set_config={"retention.ms": "7200000", "segment.bytes": "1048576"})
    a.alter_configs([res], request_timeout=TIMEOUT)[res].result(TIMEOUT)
    res = ConfigResource(ConfigResource.Type.TOPIC, name)
    desc = a.describe_configs([res], request_timeout=TIMEOUT)[res].result(TIMEOUT)
    assert desc["retention.ms"].value == "7200000" and desc["segment.bytes"].value == "1048576"
    # Grow partitions.
    a.create_partitions([NewPartitions(name, 5)])[name].result(TIMEOUT)
    assert len(a.list_topics(timeout=TIMEOUT).topics[name].partitions) == 5
    # Delete; it is gone, and producing to it is refused.
    a.delete_topics([name], request_timeout=TIMEOUT)[name].result(TIMEOUT)
    assert name not in a.list_topics(timeout=TIMEOUT).topics
    print("admin topics/configs ok")


for check in sys.argv[2:]:
    globals()["check_" + check]()

"""The newest confluent-kafka, kafka-python and aiokafka (from PyPI, in the
venv scripts/test-clients.sh makes) against a running Rill broker.

Usage: current_clients.py BOOTSTRAP CHECK [ARG...]
Every wait is bounded; a failed assertion exits non-zero with the reason.
"""
import asyncio
import sys
import time
import uuid

BOOT = sys.argv[1]
TIMEOUT = 30
N = 300


def key(i):
    return None if i % 7 == 0 else bytes([i % 256, 0, 255]) + b"k%d" % i


def value(i):
    # Null for some records, never together with a null key (clients refuse that).
    return None if i % 11 == 0 and i % 7 != 0 else bytes([(i * j) % 256 for j in range(i % 50)]) + b"v%d" % i


def headers(i):
    return [("h", bytes([0, i % 256, 255])), ("empty", b"")]


def expected():
    return sorted((key(i) or b"", value(i) or b"", key(i) is None, value(i) is None, tuple(headers(i)))
                  for i in range(N))


def normalize(k, v, hs):
    return (k or b"", v or b"", k is None, v is None, tuple((h, bytes(x or b"")) for h, x in hs))


def uniq(prefix):
    return prefix + "-" + uuid.uuid4().hex[:8]


# ---------------------------------------------------------------- confluent-kafka (librdkafka 2.16)
def ck():
    import confluent_kafka
    return confluent_kafka


_ADMIN = None


def admin():
    global _ADMIN
    if _ADMIN is None:
        _ADMIN = ck().admin.AdminClient({"bootstrap.servers": BOOT})
    return _ADMIN


def ck_create(name, partitions=1, config=None, assignment=None):
    from confluent_kafka.admin import NewTopic
    t = NewTopic(name, num_partitions=len(assignment), replica_assignment=assignment, config=config or {}) if assignment else \
        NewTopic(name, num_partitions=partitions, config=config or {})
    admin().create_topics([t], request_timeout=TIMEOUT)[name].result(TIMEOUT)


def ck_read(topic, partitions, count):
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": BOOT, "group.id": uniq("g"), "enable.auto.commit": False})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out = []
    deadline = time.time() + TIMEOUT
    while len(out) < count and time.time() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        assert m.error() is None, m.error()
        out.append(m)
    c.close()
    assert len(out) == count, f"read {len(out)} of {count}"
    return out


def check_confluent_version():
    print("confluent-kafka", ck().__version__, "librdkafka", ck().libversion()[0])


def check_confluent_list_topics():
    name = uniq("listed")
    ck_create(name, partitions=2)
    md = admin().list_topics(timeout=TIMEOUT)  # Metadata v12 "all topics", with trailing bytes
    assert name in md.topics and len(md.topics[name].partitions) == 2, md.topics
    from confluent_kafka import Consumer
    c = Consumer({"bootstrap.servers": BOOT, "group.id": uniq("g")})
    assert name in c.list_topics(timeout=TIMEOUT).topics
    c.close()
    print("list_topics ok")


def check_confluent_round_trip():
    from confluent_kafka import Producer
    topic = uniq("ck-rt")
    ck_create(topic, partitions=3)
    p = Producer({"bootstrap.servers": BOOT, "acks": "all", "linger.ms": 5})
    errors = []
    for i in range(N):
        p.produce(topic, key=key(i), value=value(i), headers=headers(i),
                  on_delivery=lambda e, m: e and errors.append(e))
    assert p.flush(TIMEOUT) == 0 and not errors, errors
    got = sorted(normalize(m.key(), m.value(), m.headers() or []) for m in ck_read(topic, 3, N))
    assert got == expected(), "records differ"
    print("confluent-kafka round trip ok")


def check_confluent_timestamps_every_codec():
    from confluent_kafka import Consumer, Producer, TopicPartition
    base = int(time.time() * 1000) - 1_000_000
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"]:
        topic = uniq("ts-" + codec)
        ck_create(topic)
        # Many records per batch, so the answer lies inside compressed batches.
        p = Producer({"bootstrap.servers": BOOT, "acks": "all", "compression.type": codec,
                      "linger.ms": 100, "batch.num.messages": 10000, "enable.idempotence": False})
        for i in range(2000):
            p.produce(topic, value=b"x%d" % i, timestamp=base + i * 2)
        assert p.flush(TIMEOUT) == 0
        c = Consumer({"bootstrap.servers": BOOT, "group.id": uniq("g")})
        for target, want in [(base, 0), (base + 1, 1), (base + 2481, 1241), (base + 2480, 1240),
                             (base + 3998, 1999), (base + 3999, -1)]:
            got = c.offsets_for_times([TopicPartition(topic, 0, target)], timeout=TIMEOUT)[0].offset
            assert got == want, f"{codec}: offsets_for_times({target - base}) = {got}, want {want}"
        c.close()
    print("offsets_for_times exact for every codec")


def check_confluent_topic_compression(topic):
    """Creates `topic` with compression.type=lz4 and writes gzip, zstd and
    uncompressed batches to it; the caller checks the stored codec."""
    from confluent_kafka import Producer
    ck_create(topic, config={"compression.type": "lz4"})
    sent = []
    for codec in ["gzip", "none", "zstd"]:
        p = Producer({"bootstrap.servers": BOOT, "acks": "all", "compression.type": codec, "linger.ms": 20})
        for i in range(N):
            p.produce(topic, key=key(i), value=value(i), headers=headers(i))
            sent.append(normalize(key(i), value(i), headers(i)))
        assert p.flush(TIMEOUT) == 0
    got = sorted(normalize(m.key(), m.value(), m.headers() or []) for m in ck_read(topic, 1, len(sent)))
    assert got == sorted(sent), "records differ after recompression"
    from confluent_kafka.admin import ConfigResource
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    assert admin().describe_configs([res])[res].result(TIMEOUT)["compression.type"].value == "lz4"
    for bad in ["brotli", "none"]:
        try:
            ck_create(uniq("badcodec"), config={"compression.type": bad})
            raise AssertionError(f"compression.type={bad} accepted")
        except ck().KafkaException as e:
            assert e.args[0].code() == 40, e
    print("topic compression.type ok")


def check_confluent_replica_assignment():
    from confluent_kafka.admin import NewPartitions, NewTopic
    name = uniq("assigned")
    ck_create(name, assignment=[[0], [0]])
    assert len(admin().list_topics(timeout=TIMEOUT).topics[name].partitions) == 2
    admin().create_partitions([NewPartitions(name, 4, replica_assignment=[[0], [0]])])[name].result(TIMEOUT)
    assert len(admin().list_topics(timeout=TIMEOUT).topics[name].partitions) == 4
    bad = uniq("badassign")
    fs = admin().create_topics([NewTopic(bad, num_partitions=2, replica_assignment=[[0], [5]])],
                               request_timeout=TIMEOUT)
    try:
        fs[bad].result(TIMEOUT)
        raise AssertionError("assignment to broker 5 accepted")
    except ck().KafkaException as e:
        assert e.args[0].code() == 39 and "broker 5" in e.args[0].str(), e
    fs = admin().create_partitions([NewPartitions(name, 5, replica_assignment=[[7]])])
    try:
        fs[name].result(TIMEOUT)
        raise AssertionError("partition on broker 7 accepted")
    except ck().KafkaException as e:
        assert e.args[0].code() == 39 and "broker 7" in e.args[0].str(), e
    print("replica assignments ok")


def describe(kind, name):
    from confluent_kafka.admin import ConfigResource
    res = ConfigResource(kind, name)
    return admin().describe_configs([res], request_timeout=TIMEOUT)[res].result(TIMEOUT)


def incremental(kind, name, entries):
    from confluent_kafka.admin import ConfigResource
    res = ConfigResource(kind, name, incremental_configs=entries)
    admin().incremental_alter_configs([res], request_timeout=TIMEOUT)[res].result(TIMEOUT)


def check_confluent_broker_configs_set(topic):
    """Sets dynamic broker configs; `topic` is created after them. The
    cluster-default layer (resource name "") was set by the caller: neither
    confluent-kafka nor kafka-python can name it."""
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource
    B = ConfigResource.Type.BROKER
    incremental(B, "0", [ConfigEntry("log.retention.ms", "1234567", incremental_operation=AlterConfigOpType.SET),
                         ConfigEntry("compression.type", "zstd", incremental_operation=AlterConfigOpType.SET)])
    d = describe(B, "0")
    assert d["log.retention.ms"].value == "1234567", d["log.retention.ms"]
    assert d["log.retention.ms"].source == ConfigSource.DYNAMIC_BROKER_CONFIG.value, d["log.retention.ms"].source
    assert d["num.partitions"].value == "3"
    assert d["num.partitions"].source == ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value
    assert d["log.dirs"].is_read_only
    # A topic created now takes the dynamic defaults.
    from confluent_kafka.admin import NewTopic
    admin().create_topics([NewTopic(topic)], request_timeout=TIMEOUT)[topic].result(TIMEOUT)
    assert len(admin().list_topics(timeout=TIMEOUT).topics[topic].partitions) == 3
    t = describe(ConfigResource.Type.TOPIC, topic)
    assert t["retention.ms"].value == "1234567" and t["retention.ms"].source == ConfigSource.DYNAMIC_BROKER_CONFIG.value
    assert t["compression.type"].value == "zstd"
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": BOOT, "acks": "all"})
    for i in range(50):
        p.produce(topic, value=b"z%d" % i, partition=0)
    assert p.flush(TIMEOUT) == 0
    # Kafka's dynamic broker configs for parts Rill does not have (librdkafka's
    # own test suite sets this one) are accepted and recorded, as Kafka does,
    # and described as set, never as anything more; a secret is not shown.
    incremental(B, "0", [ConfigEntry("sasl.kerberos.min.time.before.relogin", "58000",
                                     incremental_operation=AlterConfigOpType.SET),
                         ConfigEntry("sasl.jaas.config", "secret", incremental_operation=AlterConfigOpType.SET)])
    d = describe(B, "0")
    kerberos = d["sasl.kerberos.min.time.before.relogin"]
    assert kerberos.value == "58000" and kerberos.source == ConfigSource.DYNAMIC_BROKER_CONFIG.value, kerberos
    assert d["sasl.jaas.config"].is_sensitive and d["sasl.jaas.config"].value is None, d["sasl.jaas.config"]
    assert "max.connections" not in d, "a Kafka-only setting that was never set is not described"
    # Read-only and unknown settings are refused with a reason.
    for name, val, needle in [("log.dirs", "/tmp/x", "read-only"), ("no.such.config", "1", "unknown"),
                              ("log.segment.bytes", "12", "log.segment.bytes")]:
        try:
            incremental(B, "0", [ConfigEntry(name, val, incremental_operation=AlterConfigOpType.SET)])
            raise AssertionError(f"{name} accepted")
        except ck().KafkaException as e:
            assert e.args[0].code() == 40 and needle in e.args[0].str(), e
    print("broker configs set ok")


def check_confluent_broker_configs_after_restart(topic):
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource
    B = ConfigResource.Type.BROKER
    d = describe(B, "0")
    assert d["log.retention.ms"].value == "1234567" and d["num.partitions"].value == "3", "not persisted"
    incremental(B, "0", [ConfigEntry("log.retention.ms", None, incremental_operation=AlterConfigOpType.DELETE)])
    t = describe(ConfigResource.Type.TOPIC, topic)
    assert t["retention.ms"].value == "999", t["retention.ms"].value
    assert t["retention.ms"].source == ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value
    print("broker configs persisted ok")


# ---------------------------------------------------------------- kafka-python 3
def check_kafka_python():
    import kafka
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import NewTopic
    print("kafka-python", kafka.__version__)
    a = KafkaAdminClient(bootstrap_servers=BOOT, request_timeout_ms=TIMEOUT * 1000)
    topic = uniq("kp")
    a.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    assert topic in a.list_topics()
    # kafka-python 3's defaults: idempotence on.
    p = KafkaProducer(bootstrap_servers=BOOT, linger_ms=5)
    assert p.config["enable_idempotence"]
    futures = [p.send(topic, key=key(i), value=value(i), headers=headers(i)) for i in range(N)]
    p.flush(TIMEOUT)
    metas = [f.get(TIMEOUT) for f in futures]
    assert all(m.offset >= 0 for m in metas)
    p.close()
    c = KafkaConsumer(bootstrap_servers=BOOT, group_id=None, enable_auto_commit=False,
                      consumer_timeout_ms=TIMEOUT * 1000)
    tps = [TopicPartition(topic, i) for i in range(3)]
    c.assign(tps)
    c.seek_to_beginning(*tps)
    got = []
    deadline = time.time() + TIMEOUT
    while len(got) < N and time.time() < deadline:
        for recs in c.poll(timeout_ms=500).values():
            got.extend(normalize(r.key, r.value, r.headers) for r in recs)
    c.close()
    assert sorted(got) == expected(), f"kafka-python read {len(got)} records, differing"
    a.delete_topics([topic])
    assert topic not in a.list_topics()
    a.close()
    print("kafka-python round trip ok")


# ---------------------------------------------------------------- aiokafka
def check_aiokafka():
    asyncio.run(aiokafka_round_trip())


async def aiokafka_round_trip():
    import aiokafka
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    print("aiokafka", aiokafka.__version__)
    a = AIOKafkaAdminClient(bootstrap_servers=BOOT, request_timeout_ms=TIMEOUT * 1000)
    await a.start()
    topic = uniq("aio")
    await a.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    assert topic in await a.list_topics()
    p = AIOKafkaProducer(bootstrap_servers=BOOT, acks="all", linger_ms=5)
    await p.start()
    try:
        futs = [await p.send(topic, key=key(i), value=value(i), headers=headers(i)) for i in range(N)]
        metas = [await asyncio.wait_for(f, TIMEOUT) for f in futs]
        assert all(m.offset >= 0 for m in metas)
    finally:
        await p.stop()
    c = AIOKafkaConsumer(bootstrap_servers=BOOT, group_id=None, enable_auto_commit=False)
    await c.start()
    try:
        tps = [TopicPartition(topic, i) for i in range(3)]
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        got = []
        deadline = time.time() + TIMEOUT
        while len(got) < N and time.time() < deadline:
            batch = await c.getmany(timeout_ms=500)
            for recs in batch.values():
                got.extend(normalize(r.key, r.value, r.headers) for r in recs)
    finally:
        await c.stop()
    assert sorted(got) == expected(), f"aiokafka read {len(got)} records, differing"
    await a.delete_topics([topic])
    await a.close()
    print("aiokafka round trip ok")


# ---------------------------------------------------------------- what kafkajs wrote
def check_read_back(topic, partitions):
    """Reads what another client (kafkajs) wrote with the shared data set."""
    got = sorted(normalize(m.key(), m.value(), m.headers() or []) for m in ck_read(topic, int(partitions), N))
    assert got == expected(), "records differ"
    print(f"read back {N} records of {topic} ok")


args = sys.argv[3:]
globals()["check_" + sys.argv[2]](*args)

"""Writes one record to every partition of the given topics, or checks
what every partition holds, through confluent-kafka (Debian's).

  every_partition.py BOOTSTRAP write TOPIC:PARTITIONS...
      prints "delivered N" (acks=all; each record's value names its partition)
  every_partition.py BOOTSTRAP ends TOPIC:PARTITIONS...
      prints "TOPIC END_OFFSET COUNT" for each distinct high watermark
"""
import sys
import time
from collections import Counter

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

BOOT, MODE = sys.argv[1], sys.argv[2]
specs = [(s.split(":")[0], int(s.split(":")[1])) for s in sys.argv[3:]]

if MODE == "write":
    failed = []
    delivered = [0]

    def done(err, msg):
        if err is not None:
            failed.append(f"{msg.topic()}-{msg.partition()}: {err}")
        else:
            delivered[0] += 1

    p = Producer({"bootstrap.servers": BOOT, "acks": "all", "linger.ms": 20,
                  "message.timeout.ms": 60000})
    for topic, n in specs:
        for i in range(n):
            p.produce(topic, value=f"{topic}-{i}".encode(), partition=i, on_delivery=done)
            p.poll(0)
    p.flush(90)
    for f in failed[:5]:
        print("failed", f)
    print("delivered", delivered[0])
elif MODE == "ends":
    c = Consumer({"bootstrap.servers": BOOT, "group.id": "every-partition-check",
                  "enable.auto.commit": False})
    def watermarks(tp):
        # A broker that has just started answers NOT_LEADER_OR_FOLLOWER
        # (retriable) for partitions it is still opening: retry as an
        # application would.
        deadline = time.monotonic() + 60
        while True:
            try:
                return c.get_watermark_offsets(tp, timeout=30)
            except KafkaException as e:
                err = e.args[0]
                opening = err.code() in (KafkaError.NOT_LEADER_FOR_PARTITION,
                                         KafkaError.LEADER_NOT_AVAILABLE)
                if not (opening or err.retriable()) or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    for topic, n in specs:
        ends = Counter()
        for i in range(n):
            low, high = watermarks(TopicPartition(topic, i))
            ends[high] += 1
        for end, count in sorted(ends.items()):
            print(topic, end, count)
    c.close()

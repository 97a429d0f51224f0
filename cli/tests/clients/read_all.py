"""Reads every record of a topic from the beginning with confluent-kafka and
prints one JSON object per record: partition, offset, key, value, headers.

usage: read_all.py BOOTSTRAP TOPIC EXPECTED_COUNT
"""
import json
import sys
import time

from confluent_kafka import Consumer, TopicPartition

bootstrap, topic, expected = sys.argv[1], sys.argv[2], int(sys.argv[3])
c = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused",
              "enable.auto.commit": False, "api.version.request": True})
md = c.list_topics(topic, timeout=10)
parts = sorted(md.topics[topic].partitions)
c.assign([TopicPartition(topic, p, -2) for p in parts])  # -2: beginning
seen = 0
deadline = time.time() + 60
while seen < expected and time.time() < deadline:
    m = c.poll(1.0)
    if m is None:
        continue
    if m.error():
        print("error", m.error(), file=sys.stderr)
        sys.exit(1)
    dec = lambda b: None if b is None else b.decode()
    print(json.dumps({"partition": m.partition(), "offset": m.offset(), "key": dec(m.key()),
                      "value": dec(m.value()),
                      "headers": [[k, dec(v)] for k, v in (m.headers() or [])]}))
    seen += 1
c.close()
sys.exit(0 if seen == expected else 2)

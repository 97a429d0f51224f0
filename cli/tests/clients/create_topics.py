"""Creates topics in one CreateTopics request through confluent-kafka's
AdminClient and prints each topic's outcome on a line:
"NAME ok" or "NAME error CODE_NAME: MESSAGE".

Usage: create_topics.py BOOTSTRAP NAME:PARTITIONS...
"""
import sys

from confluent_kafka.admin import AdminClient, NewTopic

BOOT = sys.argv[1]
admin = AdminClient({"bootstrap.servers": BOOT})
topics = []
for spec in sys.argv[2:]:
    name, partitions = spec.split(":")
    topics.append(NewTopic(name, num_partitions=int(partitions), replication_factor=1))
futures = admin.create_topics(topics, request_timeout=60)
for name, f in futures.items():
    try:
        f.result(60)
        print(f"{name} ok")
    except Exception as e:
        err = e.args[0]
        print(f"{name} error {err.name()}: {err.str()}")

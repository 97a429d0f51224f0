"""A consumer subscribed to two topics keeps the survivor's partition when
the other is deleted (librdkafka's 0113 h_delete_topic): one member,
cooperative-sticky on the classic protocol, or the KIP-848 protocol.

Usage: delete_subscribed.py BOOTSTRAP classic|consumer [close|no-close]
Prints the rebalance callbacks and "settled on T [0]". With no-close the
process ends without closing the consumer: Debian's librdkafka 2.0.2 never
finishes destroying a consumer whose subscribed topic was deleted (its
bootstrap connection keeps two references and reconnects until killed; the
newest librdkafka closes at once).
"""
import os
import sys
import time
import uuid

from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewTopic

BOOT, PROTOCOL = sys.argv[1], sys.argv[2]
CLOSE = len(sys.argv) < 4 or sys.argv[3] == "close"
TIMEOUT = 30
t1, t2 = "keep-" + uuid.uuid4().hex[:8], "gone-" + uuid.uuid4().hex[:8]
admin = AdminClient({"bootstrap.servers": BOOT})
for f in admin.create_topics([NewTopic(t1, 1, 1), NewTopic(t2, 1, 1)]).values():
    f.result(TIMEOUT)
conf = {"bootstrap.servers": BOOT, "group.id": "del-" + uuid.uuid4().hex[:8],
        "topic.metadata.refresh.interval.ms": 3000, "auto.offset.reset": "earliest",
        "enable.auto.commit": False}
if PROTOCOL == "consumer":
    conf["group.protocol"] = "consumer"
else:
    conf["partition.assignment.strategy"] = "cooperative-sticky"
c = Consumer(conf)
c.subscribe([t1, t2],
            on_assign=lambda c, p: print("assigned", [(x.topic, x.partition) for x in p], flush=True),
            on_revoke=lambda c, p: print("revoked", [(x.topic, x.partition) for x in p], flush=True))
deleted = None
deadline = time.time() + TIMEOUT
while True:
    assert time.time() < deadline, f"did not settle: {[(x.topic, x.partition) for x in c.assignment()]}"
    c.poll(0.2)
    held = sorted((x.topic, x.partition) for x in c.assignment())
    if deleted is None and held == sorted([(t1, 0), (t2, 0)]):
        admin.delete_topics([t2])[t2].result(TIMEOUT)
        deleted = time.time()
    if deleted is not None and held == [(t1, 0)]:
        print(f"settled on {t1} [0] {time.time() - deleted:.1f} s after the delete", flush=True)
        break
# Settled means staying settled: the group does not move it again.
end = time.time() + 4
while time.time() < end:
    c.poll(0.2)
    held = sorted((x.topic, x.partition) for x in c.assignment())
    assert held == [(t1, 0)], f"moved again: {held}"
if CLOSE:
    c.close()
    print("closed", flush=True)
else:
    os._exit(0)

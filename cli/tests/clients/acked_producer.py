"""Produce COUNT messages with acks=all and print each acknowledged one as
`ack PARTITION OFFSET VALUE`, flushing as it goes, so a test that kills the
broker knows exactly what was acknowledged.

Usage: acked_producer.py BOOTSTRAP TOPIC COUNT PREFIX
"""
import sys

from confluent_kafka import Producer

boot, topic, count, prefix = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
p = Producer({"bootstrap.servers": boot, "acks": "all", "enable.idempotence": False, "linger.ms": 2,
              "message.timeout.ms": 5000, "retries": 0})
failed = 0


def report(err, msg):
    global failed
    if err is None:
        print(f"ack {msg.partition()} {msg.offset()} {msg.value().decode()}", flush=True)
    else:
        failed += 1


for i in range(count):
    while True:
        try:
            p.produce(topic, key=str(i).encode(), value=f"{prefix}-{i}".encode(), on_delivery=report)
            break
        except BufferError:
            p.poll(0.05)
    p.poll(0)
p.flush(15)
print(f"done failed={failed}", flush=True)

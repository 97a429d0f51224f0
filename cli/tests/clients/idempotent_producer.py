"""Produce COUNT records `0`..`COUNT-1` to partition 0 of TOPIC with an
idempotent producer, and fail unless every one is acknowledged.

Usage: idempotent_producer.py CLIENT BOOTSTRAP TOPIC COUNT
CLIENT: kafka-python (its defaults: idempotence on in 3.x) or confluent
(enable.idempotence=true; whichever confluent-kafka this python has).
"""
import sys

client, boot, topic, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

if client == "kafka-python":
    import kafka
    from kafka import KafkaProducer

    p = KafkaProducer(bootstrap_servers=boot)  # the defaults, as users run it
    print("kafka-python", kafka.__version__, "enable_idempotence =", p.config["enable_idempotence"])
    assert p.config["enable_idempotence"], "kafka-python 3 defaults to idempotence"
    futures = [p.send(topic, value=str(i).encode(), partition=0) for i in range(count)]
    p.flush(timeout=120)
    for f in futures:
        f.get(timeout=1)
    p.close()
elif client == "confluent":
    import confluent_kafka
    from confluent_kafka import Producer

    print("confluent-kafka", confluent_kafka.version(), "librdkafka", confluent_kafka.libversion())
    failed = []
    # Small batches: many Produce requests, so several answers are lost.
    p = Producer({"bootstrap.servers": boot, "enable.idempotence": True, "linger.ms": 5,
                  "batch.num.messages": 200})
    for i in range(count):
        while True:
            try:
                p.produce(topic, value=str(i).encode(), partition=0,
                          on_delivery=lambda err, msg: err and failed.append(err))
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    left = p.flush(120)
    assert left == 0, f"{left} records not delivered"
    assert not failed, f"delivery failed: {failed[:3]}"
else:
    sys.exit(f"unknown client {client}")
print("acknowledged", count)

// kafkajs with `idempotent: true` (npm, in .test-clients/node): COUNT
// records `0`..`COUNT-1` to partition 0, 100 per send, each send awaited.
// Usage: node kafkajs_idempotent.js BOOTSTRAP TOPIC COUNT
const { Kafka, logLevel } = require('kafkajs');

const [boot, topic, count] = process.argv.slice(2);

async function main() {
  console.log(`kafkajs ${require('kafkajs/package.json').version}`);
  const kafka = new Kafka({ clientId: 'rill-idempotent', brokers: [boot], logLevel: logLevel.NOTHING,
    retry: { retries: 20, initialRetryTime: 50 } });
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false });
  await producer.connect();
  for (let i = 0; i < Number(count); i += 100) {
    const messages = [];
    for (let j = i; j < Math.min(i + 100, Number(count)); j++) messages.push({ value: String(j), partition: 0 });
    await producer.send({ topic, messages, acks: -1 });
  }
  await producer.disconnect();
  console.log(`acknowledged ${count}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});

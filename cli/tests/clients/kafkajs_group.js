// The newest kafkajs (npm, in .test-clients/node) reading a topic through a
// consumer group with consumer.run, committing as it goes (its default).
// Usage: node kafkajs_group.js BOOTSTRAP TOPIC GROUP COUNT
const { Kafka, logLevel } = require('kafkajs');

const [boot, topic, group, count] = process.argv.slice(2);

async function main() {
  const kafka = new Kafka({ clientId: 'rill-test', brokers: [boot], logLevel: logLevel.NOTHING });
  const consumer = kafka.consumer({ groupId: group, sessionTimeout: 10000, heartbeatInterval: 1000 });
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  const seen = new Set();
  let resolve;
  const done = new Promise((r) => { resolve = r; });
  await consumer.run({
    eachMessage: async ({ partition, message }) => {
      seen.add(`${partition}:${message.offset}`);
      if (seen.size >= Number(count)) resolve();
    },
  });
  const timer = setTimeout(() => resolve(), 60000);
  await done;
  clearTimeout(timer);
  await consumer.commitOffsets([]).catch(() => {});
  await consumer.disconnect();
  if (seen.size !== Number(count)) {
    console.error(`kafkajs read ${seen.size} of ${count}`);
    process.exit(1);
  }
  const version = require('kafkajs/package.json').version;
  console.log(`kafkajs ${version}: read ${seen.size} records through group ${group}`);
}

main().catch((e) => { console.error(e); process.exit(1); });

// The newest kafkajs (npm, in .test-clients/node) against a running Rill
// broker: admin round trip and a produce of the shared data set (the same
// records as current_clients.py; that script reads them back byte for byte).
// Usage: node kafkajs_suite.js BOOTSTRAP TOPIC PARTITIONS
// kafkajs consumers always join a group: kafkajs_group.js reads through one.
const { Kafka, logLevel } = require('kafkajs');

const [boot, topic, partitions] = process.argv.slice(2);
const N = 300;
const key = (i) => (i % 7 === 0 ? null : Buffer.concat([Buffer.from([i % 256, 0, 255]), Buffer.from(`k${i}`)]));
const value = (i) => {
  if (i % 11 === 0 && i % 7 !== 0) return null;
  const b = [];
  for (let j = 0; j < i % 50; j++) b.push((i * j) % 256);
  return Buffer.concat([Buffer.from(b), Buffer.from(`v${i}`)]);
};
const headers = (i) => ({ h: Buffer.from([0, i % 256, 255]), empty: Buffer.alloc(0) });

function assert(cond, msg) {
  if (!cond) {
    throw new Error(msg);
  }
}

async function main() {
  const version = require('kafkajs/package.json').version;
  console.log(`kafkajs ${version}`);
  const kafka = new Kafka({ clientId: 'rill-test', brokers: [boot], logLevel: logLevel.WARN, requestTimeout: 30000 });
  const admin = kafka.admin();
  await admin.connect();
  const created = await admin.createTopics({ topics: [{ topic, numPartitions: Number(partitions) }], waitForLeaders: true });
  assert(created === true, 'createTopics returned false');
  const md = await admin.fetchTopicMetadata({ topics: [topic] });
  assert(md.topics[0].partitions.length === Number(partitions), 'partition count');
  const listed = await admin.listTopics();
  assert(listed.includes(topic), 'listTopics');

  const producer = kafka.producer({ allowAutoTopicCreation: false });
  await producer.connect();
  const messages = [];
  for (let i = 0; i < N; i++) messages.push({ key: key(i), value: value(i), headers: headers(i) });
  for (let at = 0; at < N; at += 50) {
    const res = await producer.send({ topic, acks: -1, messages: messages.slice(at, at + 50) });
    assert(res.every((r) => r.errorCode === 0), JSON.stringify(res));
  }
  await producer.disconnect();

  const offsets = await admin.fetchTopicOffsets(topic);
  const total = offsets.reduce((s, o) => s + (Number(o.high) - Number(o.low)), 0);
  assert(total === N, `high watermarks add up to ${total}, not ${N}`);
  const scratch = `${topic}-scratch`;
  await admin.createTopics({ topics: [{ topic: scratch, numPartitions: 1 }] });
  await admin.deleteTopics({ topics: [scratch] });
  assert(!(await admin.listTopics()).includes(scratch), 'deleteTopics');
  await admin.disconnect();
  console.log('kafkajs produce + admin ok');
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});

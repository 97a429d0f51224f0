//! Produces a few keyed records and reads them back: the crate's example,
//! run by CI against a real broker. `RILL_BROKERS` (default 127.0.0.1:9092)
//! names the bootstrap brokers; the topic is created if missing.

use std::time::Duration;

use rill_client::{
    Admin, Client, ClientConfig, Consumer, ConsumerConfig, NewTopic, Offset, Producer,
    ProducerConfig, Record, TopicPartition,
};

#[tokio::main(flavor = "current_thread")]
async fn main() -> rill_client::Result<()> {
    let brokers = std::env::var("RILL_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let client = Client::connect(ClientConfig::new(&brokers)).await?;

    match Admin::new(client.clone())
        .create_topic(NewTopic::new("example-greetings", 3))
        .await
    {
        Ok(()) => {}
        Err(e) if e.code() == Some(36) => {} // TOPIC_ALREADY_EXISTS
        Err(e) => return Err(e),
    }

    let producer = Producer::new(client.clone(), ProducerConfig::default())?;
    let mut deliveries = Vec::new();
    for i in 0..10 {
        let record = Record::new("example-greetings", format!("hello {i}"))
            .key(format!("user-{}", i % 3))
            .header("sent-by", "round_trip example");
        deliveries.push(producer.send(record).await?);
    }
    let mut written = Vec::new();
    for d in deliveries {
        written.push(d.await?);
    }
    producer.close().await;

    let mut consumer = Consumer::new(client, ConsumerConfig::default());
    let partitions: Vec<TopicPartition> = (0..3)
        .map(|p| TopicPartition::new("example-greetings", p))
        .collect();
    consumer.assign(&partitions).await?;
    for w in &written {
        // Start each partition at the first record written in this run.
        let tp = TopicPartition::new("example-greetings", w.partition);
        let first = written
            .iter()
            .filter(|x| x.partition == w.partition)
            .map(|x| x.offset)
            .min()
            .expect("this record");
        consumer.seek(&tp, Offset::At(first))?;
    }
    let mut seen = 0;
    while seen < written.len() {
        let records = consumer.poll(Duration::from_secs(10)).await?;
        if records.is_empty() {
            eprintln!("timed out after {seen} of {} records", written.len());
            std::process::exit(1);
        }
        for r in records {
            println!(
                "{}-{}@{} key={} value={}",
                r.topic,
                r.partition,
                r.offset,
                String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()),
                String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()),
            );
            seen += 1;
        }
    }
    Ok(())
}

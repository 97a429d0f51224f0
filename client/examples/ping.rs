//! Sequential produce round trips: send one record, await its
//! acknowledgement, repeat; prints the latency percentiles.
//! Usage: cargo run --release -p rill-client --example ping -- BROKER TOPIC [COUNT]
use std::time::{Duration, Instant};

use rill_client::{Client, ClientConfig, Producer, ProducerConfig, Record};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (broker, topic) = (&args[1], &args[2]);
    let count: usize = args.get(3).map_or(Ok(300), |c| c.parse())?;
    let client = Client::connect(ClientConfig::new(broker)).await?;
    for idempotence in [false, true] {
        let producer = Producer::new(
            client.clone(),
            ProducerConfig {
                linger: Duration::ZERO,
                idempotence,
                ..ProducerConfig::default()
            },
        )?;
        producer
            .send(Record::new(topic.as_str(), "warm"))
            .await?
            .await?;
        let mut lat = Vec::with_capacity(count);
        for _ in 0..count {
            let t = Instant::now();
            producer
                .send(Record::new(topic.as_str(), vec![b'x'; 1024]))
                .await?
                .await?;
            lat.push(t.elapsed());
        }
        lat.sort();
        println!(
            "rill-client idempotence={idempotence}: p50 {:?} p99 {:?}",
            lat[count / 2],
            lat[count * 99 / 100]
        );
        producer.close().await;
    }
    Ok(())
}

//! Requests pipelined on one connection take effect in request order and
//! are answered in request order, while produce requests overlap their
//! waits for the disk.

mod support;

use bytes::Bytes;
use rill_net::kafka_protocol::messages::create_topics_request::CreatableTopic;
use rill_net::kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use rill_net::kafka_protocol::messages::*;
use rill_net::kafka_protocol::protocol::StrBytes;
use rill_storage::batch::{encode_uncompressed, RecordSpec};
use support::InProcess;
use wire::Wire;

#[path = "support/wire.rs"]
mod wire;

fn batch(request: usize, records: usize) -> Bytes {
    let values: Vec<Vec<u8>> = (0..records)
        .map(|r| format!("request {request} record {r} {}", "x".repeat(200)).into_bytes())
        .collect();
    let specs: Vec<RecordSpec> = values
        .iter()
        .map(|v| RecordSpec {
            value: Some(v),
            ..Default::default()
        })
        .collect();
    Bytes::from(encode_uncompressed(1_700_000_000_000, &specs))
}

fn produce_request(topic: &str, parts: &[(i32, Bytes)]) -> ProduceRequest {
    let mut t = TopicProduceData::default();
    t.name = TopicName(StrBytes::from_string(topic.to_string()));
    t.partition_data = parts
        .iter()
        .map(|(i, b)| {
            let mut p = PartitionProduceData::default();
            p.index = *i;
            p.records = Some(b.clone());
            p
        })
        .collect();
    let mut req = ProduceRequest::default();
    req.acks = -1;
    req.timeout_ms = 10_000;
    req.topic_data = vec![t];
    req
}

#[test]
fn pipelined_produce_requests_append_and_answer_in_request_order() {
    let dir = tempfile::tempdir().unwrap();
    let broker = InProcess::start(dir.path());
    let mut w = Wire::connect(&broker.addr());
    let mut t = CreatableTopic::default();
    t.name = TopicName(StrBytes::from_static_str("pipe"));
    t.num_partitions = 2;
    t.replication_factor = 1;
    let mut req = CreateTopicsRequest::default();
    req.topics = vec![t];
    req.timeout_ms = 10_000;
    let ResponseKind::CreateTopics(r) = w.call(ApiKey::CreateTopics, 5, &req) else {
        panic!()
    };
    assert_eq!(r.topics[0].error_code, 0);

    // 60 produce requests written back to back without reading, a corrupt
    // one and a Metadata request among them.
    const N: usize = 60;
    const RECORDS: usize = 20;
    let mut sent = Vec::new();
    for i in 0..N {
        if i == 20 {
            let mut bad = batch(999, 3).to_vec();
            let last = bad.len() - 1;
            bad[last] ^= 0xff; // CRC mismatch
            let id = w.send_request(
                ApiKey::Produce,
                7,
                &produce_request("pipe", &[(0, Bytes::from(bad))]),
            );
            sent.push((id, ApiKey::Produce, 7, None));
        }
        if i == 40 {
            let mut all = MetadataRequest::default();
            all.topics = None; // every topic
            let id = w.send_request(ApiKey::Metadata, 9, &all);
            sent.push((id, ApiKey::Metadata, 9, None));
        }
        let id = w.send_request(
            ApiKey::Produce,
            7,
            &produce_request("pipe", &[(0, batch(i, RECORDS)), (1, batch(i, 1))]),
        );
        sent.push((id, ApiKey::Produce, 7, Some(i)));
    }
    let mut produced = 0;
    for (id, api, version, request) in sent {
        let (got, body) = w.read_response(api, version);
        assert_eq!(got, id, "answers come in request order");
        match (body, request) {
            (ResponseKind::Produce(r), Some(i)) => {
                let p0 = &r.responses[0].partition_responses[0];
                let p1 = &r.responses[0].partition_responses[1];
                assert_eq!((p0.error_code, p1.error_code), (0, 0));
                assert_eq!(
                    (p0.base_offset, p1.base_offset),
                    ((i * RECORDS) as i64, i as i64),
                    "request {i} appended after every earlier one"
                );
                produced += 1;
            }
            (ResponseKind::Produce(r), None) => {
                assert_eq!(
                    r.responses[0].partition_responses[0].error_code, 2,
                    "CORRUPT_MESSAGE"
                );
            }
            (ResponseKind::Metadata(m), None) => {
                assert!(m
                    .topics
                    .iter()
                    .any(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == "pipe")));
            }
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!(produced, N);
}

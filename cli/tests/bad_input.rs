//! Bad input gets the Kafka error a client understands, or a closed
//! connection for what is not Kafka at all, and loses nothing already
//! acknowledged. Requests are built byte-exact with the kafka-protocol codecs.

mod support;

use bytes::Bytes;
use rill_net::kafka_protocol::messages::create_topics_request::{
    CreatableTopic, CreatableTopicConfig,
};
use rill_net::kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use rill_net::kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use rill_net::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use rill_net::kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use rill_net::kafka_protocol::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsTopic,
};
use rill_net::kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use rill_net::kafka_protocol::messages::*;
use rill_net::kafka_protocol::protocol::StrBytes;
use rill_storage::batch::{encode_uncompressed, RecordSpec};
use support::Broker;
use wire::Wire;

#[path = "support/wire.rs"]
mod wire;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn batch(n: usize, value_len: usize) -> Bytes {
    let value = vec![b'v'; value_len];
    let specs: Vec<RecordSpec> = (0..n)
        .map(|_| RecordSpec {
            value: Some(&value),
            ..Default::default()
        })
        .collect();
    Bytes::from(encode_uncompressed(1_700_000_000_000, &specs))
}

fn create_topic(
    w: &mut Wire,
    name: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) -> (i16, Option<String>) {
    let mut t = CreatableTopic::default();
    t.name = TopicName(s(name));
    t.num_partitions = partitions;
    t.replication_factor = 1;
    t.configs = configs
        .iter()
        .map(|(k, v)| {
            let mut c = CreatableTopicConfig::default();
            c.name = s(k);
            c.value = Some(s(v));
            c
        })
        .collect();
    let mut req = CreateTopicsRequest::default();
    req.topics = vec![t];
    req.timeout_ms = 10_000;
    let ResponseKind::CreateTopics(r) = w.call(ApiKey::CreateTopics, 5, &req) else {
        panic!()
    };
    (
        r.topics[0].error_code,
        r.topics[0].error_message.as_ref().map(|m| m.to_string()),
    )
}

fn produce(w: &mut Wire, topic: &str, partition: i32, records: Bytes) -> (i16, i64) {
    let mut p = PartitionProduceData::default();
    p.index = partition;
    p.records = Some(records);
    let mut t = TopicProduceData::default();
    t.name = TopicName(s(topic));
    t.partition_data = vec![p];
    let mut req = ProduceRequest::default();
    req.acks = -1;
    req.timeout_ms = 10_000;
    req.topic_data = vec![t];
    let ResponseKind::Produce(r) = w.call(ApiKey::Produce, 7, &req) else {
        panic!()
    };
    let pr = &r.responses[0].partition_responses[0];
    (pr.error_code, pr.base_offset)
}

fn fetch(w: &mut Wire, topic: &str, offset: i64) -> (i16, i64, Bytes) {
    let mut p = FetchPartition::default();
    p.partition = 0;
    p.fetch_offset = offset;
    p.partition_max_bytes = 1 << 20;
    let mut t = FetchTopic::default();
    t.topic = TopicName(s(topic));
    t.partitions = vec![p];
    let mut req = FetchRequest::default();
    req.max_wait_ms = 0;
    req.min_bytes = 0;
    req.max_bytes = 1 << 20;
    req.topics = vec![t];
    let ResponseKind::Fetch(r) = w.call(ApiKey::Fetch, 11, &req) else {
        panic!()
    };
    let pd = &r.responses[0].partitions[0];
    (
        pd.error_code,
        pd.high_watermark,
        pd.records.clone().unwrap_or_default(),
    )
}

fn list_offset(w: &mut Wire, topic: &str, timestamp: i64) -> (i16, i64) {
    let mut p = ListOffsetsPartition::default();
    p.partition_index = 0;
    p.timestamp = timestamp;
    let mut t = ListOffsetsTopic::default();
    t.name = TopicName(s(topic));
    t.partitions = vec![p];
    let mut req = ListOffsetsRequest::default();
    req.topics = vec![t];
    let ResponseKind::ListOffsets(r) = w.call(ApiKey::ListOffsets, 5, &req) else {
        panic!()
    };
    let pr = &r.topics[0].partitions[0];
    (pr.error_code, pr.offset)
}

fn api_versions_ok(addr: &str) -> bool {
    let mut w = Wire::connect(addr);
    matches!(w.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default()), ResponseKind::ApiVersions(r) if r.error_code == 0 && !r.api_keys.is_empty())
}

#[test]
fn bad_requests_get_kafka_errors_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), &["--max-request-bytes", "1048576"]);
    let addr = broker.addr();
    let mut w = Wire::connect(&addr);

    assert_eq!(
        create_topic(&mut w, "good", 1, &[("max.message.bytes", "10000")]).0,
        0
    );
    // Topic name and config validation.
    assert_eq!(
        create_topic(&mut w, "bad name!", 1, &[]).0,
        17,
        "INVALID_TOPIC_EXCEPTION"
    );
    let (code, msg) = create_topic(&mut w, "cfg", 1, &[("retention.ms", "soon")]);
    assert_eq!(code, 40, "INVALID_CONFIG");
    assert!(msg.unwrap().contains("retention.ms"));
    assert_eq!(
        create_topic(&mut w, "cfg", 1, &[("no.such.thing", "1")]).0,
        40
    );
    assert_eq!(
        create_topic(&mut w, "good", 1, &[]).0,
        36,
        "TOPIC_ALREADY_EXISTS"
    );
    assert_eq!(
        create_topic(&mut w, "zero", 0, &[]).0,
        37,
        "INVALID_PARTITIONS"
    );

    // Acknowledged data that must survive everything below.
    let (code, base) = produce(&mut w, "good", 0, batch(5, 100));
    assert_eq!((code, base), (0, 0));
    let (code, base) = produce(&mut w, "good", 0, batch(3, 100));
    assert_eq!((code, base), (0, 5));

    // Corrupt CRC, a batch over max.message.bytes, garbage records, unknown topic/partition.
    let mut corrupt = batch(2, 100).to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 1;
    assert_eq!(
        produce(&mut w, "good", 0, corrupt.into()).0,
        2,
        "CORRUPT_MESSAGE"
    );
    assert_eq!(
        produce(&mut w, "good", 0, batch(20, 1000)).0,
        10,
        "MESSAGE_TOO_LARGE"
    );
    assert_eq!(
        produce(
            &mut w,
            "good",
            0,
            Bytes::from_static(b"not a record batch at all, just bytes.....")
        )
        .0,
        2
    );
    // Two batches where the second is bad: neither is appended.
    let mut two = batch(1, 10).to_vec();
    let mut bad = batch(1, 10).to_vec();
    bad[16] = 1; // magic 1
    two.extend_from_slice(&bad);
    assert_eq!(produce(&mut w, "good", 0, two.into()).0, 2);
    assert_eq!(
        produce(&mut w, "missing", 0, batch(1, 10)).0,
        3,
        "UNKNOWN_TOPIC_OR_PARTITION"
    );
    assert_eq!(produce(&mut w, "good", 7, batch(1, 10)).0, 3);

    // Fetch out of range, and the log is exactly what was acknowledged.
    assert_eq!(fetch(&mut w, "good", 9).0, 1, "OFFSET_OUT_OF_RANGE");
    assert_eq!(fetch(&mut w, "missing", 0).0, 3);
    let (code, hw, records) = fetch(&mut w, "good", 0);
    assert_eq!((code, hw), (0, 8));
    let mut bytes = records.clone();
    let sets =
        rill_net::kafka_protocol::records::RecordBatchDecoder::decode_all(&mut bytes).unwrap();
    assert_eq!(sets.iter().map(|s| s.records.len()).sum::<usize>(), 8);
    assert_eq!(list_offset(&mut w, "good", -1), (0, 8));

    // Configs: alter one, refuse a bad one, describe shows the result.
    let alter = |w: &mut Wire, name: &str, value: &str| {
        let mut c = AlterableConfig::default();
        c.name = s(name);
        c.config_operation = 0;
        c.value = Some(s(value));
        let mut r = AlterConfigsResource::default();
        r.resource_type = 2;
        r.resource_name = s("good");
        r.configs = vec![c];
        let mut req = IncrementalAlterConfigsRequest::default();
        req.resources = vec![r];
        let ResponseKind::IncrementalAlterConfigs(resp) =
            w.call(ApiKey::IncrementalAlterConfigs, 0, &req)
        else {
            panic!()
        };
        resp.responses[0].error_code
    };
    assert_eq!(alter(&mut w, "retention.ms", "123456"), 0);
    assert_eq!(alter(&mut w, "retention.ms", "-7"), 40);
    let mut res = DescribeConfigsResource::default();
    res.resource_type = 2;
    res.resource_name = s("good");
    res.configuration_keys = Some(vec![s("retention.ms")]);
    let mut req = DescribeConfigsRequest::default();
    req.resources = vec![res];
    let ResponseKind::DescribeConfigs(d) = w.call(ApiKey::DescribeConfigs, 1, &req) else {
        panic!()
    };
    assert_eq!(
        d.results[0].configs[0].value.as_ref().unwrap().as_str(),
        "123456"
    );

    // DeleteRecords moves the low watermark; earlier offsets are out of range.
    let mut p = DeleteRecordsPartition::default();
    p.partition_index = 0;
    p.offset = 5;
    let mut t = DeleteRecordsTopic::default();
    t.name = TopicName(s("good"));
    t.partitions = vec![p];
    let mut req = DeleteRecordsRequest::default();
    req.topics = vec![t];
    let ResponseKind::DeleteRecords(r) = w.call(ApiKey::DeleteRecords, 1, &req) else {
        panic!()
    };
    assert_eq!(
        (
            r.topics[0].partitions[0].error_code,
            r.topics[0].partitions[0].low_watermark
        ),
        (0, 5)
    );
    assert_eq!(list_offset(&mut w, "good", -2), (0, 5));
    assert_eq!(fetch(&mut w, "good", 2).0, 1);

    // ApiVersions at a version we do not speak: a v0 answer with UNSUPPORTED_VERSION.
    let mut raw = Wire::connect(&addr);
    let mut frame = Vec::new();
    frame.extend_from_slice(&18i16.to_be_bytes());
    frame.extend_from_slice(&99i16.to_be_bytes());
    frame.extend_from_slice(&42i32.to_be_bytes());
    frame.extend_from_slice(&[0, 0]);
    raw.send_frame(&frame);
    let mut resp = raw.read_frame().expect("an answer");
    use rill_net::kafka_protocol::protocol::Decodable;
    let header = ResponseHeader::decode(&mut resp, 0).unwrap();
    assert_eq!(header.correlation_id, 42);
    let body = ApiVersionsResponse::decode(&mut resp, 0).unwrap();
    assert_eq!(body.error_code, 35);
    assert!(body
        .api_keys
        .iter()
        .any(|k| k.api_key == 18 && k.max_version == 3));

    // Not Kafka at all: the connection is closed, the broker carries on.
    for bytes in [
        (200u32 << 20).to_be_bytes().to_vec(), // frame over the limit
        (-5i32).to_be_bytes().to_vec(),        // negative size
        [0, 0, 0, 3, 1, 2, 3].to_vec(),        // too short for a header
        [0, 0, 0, 10, 0x27, 0x0f, 0, 0, 0, 0, 0, 1, 0, 0].to_vec(), // unknown API key 9999
        [0, 0, 0, 12, 0, 3, 0, 9, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff].to_vec(), // metadata v9, garbage body
    ] {
        let mut c = Wire::connect(&addr);
        c.send_raw(&bytes);
        assert!(
            c.closed_by_broker(),
            "connection not closed after {bytes:?}"
        );
    }
    assert!(api_versions_ok(&addr));

    // A burst of random frames with valid API keys and versions never takes the broker down.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..300 {
        let (key, min, max) = rill_net::versions::SUPPORTED
            [(next() % rill_net::versions::SUPPORTED.len() as u64) as usize];
        let version = min + (next() % (max - min + 1) as u64) as i16;
        let len = (next() % 200) as usize;
        let mut frame = Vec::with_capacity(8 + len);
        frame.extend_from_slice(&(key as i16).to_be_bytes());
        frame.extend_from_slice(&version.to_be_bytes());
        frame.extend_from_slice(&1i32.to_be_bytes());
        frame.extend((0..len).map(|_| next() as u8));
        let mut c = Wire::connect(&addr);
        c.send_frame(&frame);
        // Either an answer or a closed connection; never a hang or a crash.
        let _ = c.read_frame();
    }
    assert!(api_versions_ok(&addr), "broker survived random frames");
    let (code, hw, _) = fetch(&mut Wire::connect(&addr), "good", 5);
    assert_eq!((code, hw), (0, 8), "acknowledged data intact");
}

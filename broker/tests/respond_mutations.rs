//! In-process robustness: valid requests with random bytes flipped or cut
//! off go through the same decode-and-dispatch function as every connection
//! (and the fuzz target). Nothing may panic; the broker keeps answering.

use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use rill_broker::server::{respond, Reply};
use rill_broker::shard::Shard;
use rill_broker::BrokerConfig;
use rill_net::kafka_protocol::messages::create_topics_request::CreatableTopic;
use rill_net::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use rill_net::kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use rill_net::kafka_protocol::messages::*;
use rill_net::kafka_protocol::protocol::{Encodable, StrBytes};
use rill_storage::batch::{encode_uncompressed, RecordSpec};

fn frame<T: Encodable>(api: ApiKey, version: i16, body: &T) -> Vec<u8> {
    let mut buf = BytesMut::new();
    let mut h = RequestHeader::default();
    h.request_api_key = api as i16;
    h.request_api_version = version;
    h.correlation_id = 1;
    h.client_id = Some(StrBytes::from_static_str("mutations"));
    h.encode(&mut buf, api.request_header_version(version))
        .unwrap();
    body.encode(&mut buf, version).unwrap();
    buf.to_vec()
}

fn seeds() -> Vec<Vec<u8>> {
    let name = TopicName(StrBytes::from_static_str("t"));
    let mut create = CreateTopicsRequest::default();
    let mut ct = CreatableTopic::default();
    ct.name = name.clone();
    ct.num_partitions = 2;
    ct.replication_factor = 1;
    create.topics = vec![ct];
    let records = Bytes::from(encode_uncompressed(
        5,
        &[RecordSpec {
            value: Some(b"hello"),
            ..Default::default()
        }],
    ));
    let mut pd = PartitionProduceData::default();
    pd.records = Some(records);
    let mut td = TopicProduceData::default();
    td.name = name.clone();
    td.partition_data = vec![pd];
    let mut produce = ProduceRequest::default();
    produce.acks = 1;
    produce.topic_data = vec![td];
    let mut fp = FetchPartition::default();
    fp.partition_max_bytes = 1000;
    let mut ft = FetchTopic::default();
    ft.topic = name;
    ft.partitions = vec![fp];
    let mut fetch = FetchRequest::default();
    fetch.topics = vec![ft];
    fetch.max_bytes = 10_000;
    vec![
        frame(ApiKey::CreateTopics, 5, &create),
        frame(ApiKey::Produce, 9, &produce),
        frame(ApiKey::Produce, 3, &produce),
        frame(ApiKey::Fetch, 12, &fetch),
        frame(ApiKey::Fetch, 4, &fetch),
        frame(ApiKey::Metadata, 12, &MetadataRequest::default()),
        frame(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default()),
    ]
}

#[test]
fn mutated_requests_never_panic_the_dispatcher() {
    let dir = tempfile::tempdir().unwrap();
    let config = BrokerConfig::ephemeral(dir.path()).unwrap();
    glommio::LocalExecutorBuilder::default()
        .spawn(move || async move {
            let shard: Rc<Shard> = rill_broker::runtime::local_shard(config).await.unwrap();
            let seeds = seeds();
            for s in &seeds {
                assert!(
                    matches!(
                        respond(&shard, Bytes::from(s.clone())).await,
                        Reply::Send(_)
                    ),
                    "seed request answered"
                );
            }
            let mut x = 0x2545_f491_4f6c_dd1du64;
            let mut rand = move || {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x
            };
            let (mut answered, mut closed, mut waiting) = (0, 0, 0);
            for _ in 0..5000 {
                let mut f = seeds[(rand() % seeds.len() as u64) as usize].clone();
                for _ in 0..1 + rand() % 4 {
                    let i = 4 + (rand() as usize % (f.len() - 4)); // keep api key and version
                    f[i] = rand() as u8;
                }
                if rand() % 4 == 0 {
                    f.truncate(8 + rand() as usize % f.len());
                }
                // A mutated fetch may ask for a long poll (max_wait_ms up to
                // weeks); waiting as asked is correct, so stop watching it.
                let reply = futures_lite::future::or(
                    async { Some(respond(&shard, Bytes::from(f)).await) },
                    async {
                        glommio::timer::sleep(std::time::Duration::from_millis(500)).await;
                        None
                    },
                )
                .await;
                match reply {
                    Some(Reply::Send(_) | Reply::Nothing) => answered += 1,
                    Some(Reply::Close(_)) => closed += 1,
                    None => waiting += 1,
                }
            }
            assert!(
                answered > 0 && closed > 0,
                "answered {answered}, closed {closed}, waiting {waiting}"
            );
            assert!(waiting < 100, "{waiting} requests did not finish");
            assert!(matches!(
                respond(&shard, Bytes::from(seeds[5].clone())).await,
                Reply::Send(_)
            ));
        })
        .unwrap()
        .join()
        .unwrap();
}

//! The error codes an answer carries, for `rill_request_errors_total`: the
//! top-level code and the code of each partition, topic or group where the
//! answer has one per item. APIs not listed here are counted as requests
//! only.

use rill_net::kafka_protocol::messages::ResponseKind;

/// Calls `f` with every non-zero error code in `body`.
pub fn error_codes(body: &ResponseKind, mut f: impl FnMut(i16)) {
    let mut each = |code: i16| {
        if code != 0 {
            f(code)
        }
    };
    match body {
        ResponseKind::Produce(r) => r
            .responses
            .iter()
            .flat_map(|t| &t.partition_responses)
            .for_each(|p| each(p.error_code)),
        ResponseKind::Fetch(r) => {
            each(r.error_code);
            r.responses
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| each(p.error_code));
        }
        ResponseKind::Metadata(r) => {
            r.topics.iter().for_each(|t| each(t.error_code));
        }
        ResponseKind::ListOffsets(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| each(p.error_code)),
        ResponseKind::JoinGroup(r) => each(r.error_code),
        ResponseKind::SyncGroup(r) => each(r.error_code),
        ResponseKind::Heartbeat(r) => each(r.error_code),
        ResponseKind::LeaveGroup(r) => {
            each(r.error_code);
            r.members.iter().for_each(|m| each(m.error_code));
        }
        ResponseKind::FindCoordinator(r) => {
            each(r.error_code);
            r.coordinators.iter().for_each(|c| each(c.error_code));
        }
        ResponseKind::OffsetCommit(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| each(p.error_code)),
        ResponseKind::OffsetFetch(r) => {
            each(r.error_code);
            r.topics
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| each(p.error_code));
            for g in &r.groups {
                each(g.error_code);
                g.topics
                    .iter()
                    .flat_map(|t| &t.partitions)
                    .for_each(|p| each(p.error_code));
            }
        }
        ResponseKind::CreateTopics(r) => r.topics.iter().for_each(|t| each(t.error_code)),
        ResponseKind::DeleteTopics(r) => r.responses.iter().for_each(|t| each(t.error_code)),
        ResponseKind::InitProducerId(r) => each(r.error_code),
        ResponseKind::ConsumerGroupHeartbeat(r) => each(r.error_code),
        _ => {}
    }
}

//! The APIs and version ranges Rill implements: the single source for the
//! ApiVersions answer and for refusing what is not implemented.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};

/// (API, lowest version, highest version) that Rill implements.
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 6),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::ConsumerGroupHeartbeat, 0, 1),
    (ApiKey::ConsumerGroupDescribe, 0, 1),
];

/// The implemented version range of `api`, if any.
pub fn range(api: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED
        .iter()
        .find(|(k, _, _)| *k == api)
        .map(|&(_, min, max)| (min, max))
}

pub fn is_supported(api: ApiKey, version: i16) -> bool {
    range(api).is_some_and(|(min, max)| (min..=max).contains(&version))
}

/// The ApiVersions answer listing [`SUPPORTED`], with `error_code`.
pub fn api_versions_response(error_code: i16) -> ApiVersionsResponse {
    let mut r = ApiVersionsResponse::default();
    r.error_code = error_code;
    r.api_keys = SUPPORTED
        .iter()
        .map(|&(k, min, max)| {
            let mut v = ApiVersion::default();
            v.api_key = k as i16;
            v.min_version = min;
            v.max_version = max;
            v
        })
        .collect();
    r
}

/// For each API in `ours` (API, lowest, highest) that the peer's ApiVersions
/// answer lists, the highest version both sides speak; APIs without a common
/// version are left out. The client side of the table above.
pub fn negotiate(ours: &[(ApiKey, i16, i16)], theirs: &ApiVersionsResponse) -> Vec<(ApiKey, i16)> {
    ours.iter()
        .filter_map(|&(api, min, max)| {
            let t = theirs.api_keys.iter().find(|k| k.api_key == api as i16)?;
            let v = max.min(t.max_version);
            (v >= min.max(t.min_version)).then_some((api, v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_takes_the_highest_common_version() {
        let ours = [
            (ApiKey::Fetch, 4, 12),
            (ApiKey::ListOffsets, 1, 7),
            (ApiKey::EndTxn, 0, 3),
        ];
        let chosen = negotiate(&ours, &api_versions_response(0));
        assert_eq!(chosen, vec![(ApiKey::Fetch, 12), (ApiKey::ListOffsets, 6)]);
    }

    #[test]
    fn every_advertised_range_is_one_the_codec_handles() {
        for &(k, min, max) in SUPPORTED {
            let valid = k.valid_versions();
            assert!(
                min >= valid.min && max <= valid.max,
                "{k:?} {min}..={max} outside {valid:?}"
            );
        }
    }
}

//! Framing requests and unframing responses, and choosing API versions: the
//! byte-level half of the client, free of any runtime.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};

use crate::error::{Error, Result};

/// The versions of each API this client speaks. Fetch stops at 12 (13 names
/// topics by id only); Produce at 9 (10+ add nothing this client uses).
pub const CLIENT_VERSIONS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 1, 12),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 5),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::ConsumerGroupDescribe, 0, 1),
    (ApiKey::ConsumerGroupHeartbeat, 0, 1),
];

/// What a broker said it supports, intersected with [`CLIENT_VERSIONS`].
#[derive(Debug, Clone, Default)]
pub struct Versions {
    chosen: Vec<(ApiKey, i16)>,
}

impl Versions {
    /// The highest version both sides speak for every API the broker lists.
    pub fn negotiate(response: &ApiVersionsResponse) -> Versions {
        Versions {
            chosen: rill_net::versions::negotiate(CLIENT_VERSIONS, response),
        }
    }

    /// The version to use for `api`, or an error naming what is missing.
    pub fn get(&self, api: ApiKey) -> Result<i16> {
        self.chosen
            .iter()
            .find(|(k, _)| *k == api)
            .map(|&(_, v)| v)
            .ok_or_else(|| {
                let (min, max) = CLIENT_VERSIONS
                    .iter()
                    .find(|(k, _, _)| *k == api)
                    .map(|&(_, a, b)| (a, b))
                    .unwrap_or((0, 0));
                Error::UnsupportedVersion {
                    api: api_name(api),
                    min,
                    max,
                }
            })
    }
}

pub fn api_name(api: ApiKey) -> &'static str {
    match api {
        ApiKey::Produce => "Produce",
        ApiKey::Fetch => "Fetch",
        ApiKey::ListOffsets => "ListOffsets",
        ApiKey::Metadata => "Metadata",
        ApiKey::ApiVersions => "ApiVersions",
        ApiKey::CreateTopics => "CreateTopics",
        ApiKey::DeleteTopics => "DeleteTopics",
        ApiKey::DescribeConfigs => "DescribeConfigs",
        ApiKey::CreatePartitions => "CreatePartitions",
        ApiKey::IncrementalAlterConfigs => "IncrementalAlterConfigs",
        ApiKey::DeleteRecords => "DeleteRecords",
        ApiKey::FindCoordinator => "FindCoordinator",
        ApiKey::ListGroups => "ListGroups",
        ApiKey::DescribeGroups => "DescribeGroups",
        ApiKey::OffsetFetch => "OffsetFetch",
        ApiKey::OffsetCommit => "OffsetCommit",
        ApiKey::DeleteGroups => "DeleteGroups",
        ApiKey::JoinGroup => "JoinGroup",
        ApiKey::SyncGroup => "SyncGroup",
        ApiKey::Heartbeat => "Heartbeat",
        ApiKey::LeaveGroup => "LeaveGroup",
        _ => "an API",
    }
}

/// Encodes a whole request frame (length prefix, header, body).
pub fn encode_request<R: Request>(
    request: &R,
    version: i16,
    correlation_id: i32,
    client_id: &str,
) -> Result<BytesMut> {
    let mut header = RequestHeader::default();
    header.request_api_key = R::KEY;
    header.request_api_version = version;
    header.correlation_id = correlation_id;
    header.client_id = Some(StrBytes::from_string(client_id.to_string()));
    let header_version = R::header_version(version);
    let size = header
        .compute_size(header_version)
        .and_then(|h| request.compute_size(version).map(|b| h + b))
        .map_err(|e| Error::Protocol(format!("sizing a request: {e}")))?;
    let mut buf = BytesMut::with_capacity(4 + size);
    buf.put_i32(size as i32);
    header
        .encode(&mut buf, header_version)
        .and_then(|_| request.encode(&mut buf, version))
        .map_err(|e| Error::Protocol(format!("encoding a request: {e}")))?;
    Ok(buf)
}

/// The correlation id of a response frame (length prefix already removed).
pub fn peek_correlation_id(frame: &[u8]) -> Option<i32> {
    frame
        .get(..4)
        .map(|b| i32::from_be_bytes(b.try_into().expect("4 bytes")))
}

/// Decodes a response frame (length prefix already removed) to `R`'s response.
pub fn decode_response<R: Request>(mut frame: Bytes, version: i16) -> Result<R::Response> {
    let header_version = <R::Response as HeaderVersion>::header_version(version);
    ResponseHeader::decode(&mut frame, header_version)
        .map_err(|e| Error::Protocol(format!("response header: {e}")))?;
    let response = <R::Response as Decodable>::decode(&mut frame, version)
        .map_err(|e| Error::Protocol(format!("response body: {e}")))?;
    if frame.has_remaining() {
        tracing::debug!(left = frame.remaining(), "response has trailing bytes");
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    use kafka_protocol::messages::MetadataRequest;

    #[test]
    fn negotiation_takes_the_highest_common_version() {
        let mut r = ApiVersionsResponse::default();
        for (k, min, max) in [(ApiKey::Fetch, 0, 16), (ApiKey::Produce, 0, 2)] {
            let mut v = ApiVersion::default();
            v.api_key = k as i16;
            v.min_version = min;
            v.max_version = max;
            r.api_keys.push(v);
        }
        let v = Versions::negotiate(&r);
        assert_eq!(v.get(ApiKey::Fetch).unwrap(), 12);
        let e = v.get(ApiKey::Produce).unwrap_err();
        assert!(
            matches!(e, Error::UnsupportedVersion { api: "Produce", .. }),
            "{e}"
        );
        assert!(v.get(ApiKey::Metadata).is_err());
    }

    #[test]
    fn a_request_frame_starts_with_its_length_and_header() {
        let frame = encode_request(&MetadataRequest::default(), 9, 77, "rill").unwrap();
        let len = i32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
        assert_eq!(len, frame.len() - 4);
        assert_eq!(
            i16::from_be_bytes([frame[4], frame[5]]),
            ApiKey::Metadata as i16
        );
        assert_eq!(i16::from_be_bytes([frame[6], frame[7]]), 9);
        assert_eq!(i32::from_be_bytes(frame[8..12].try_into().unwrap()), 77);
    }
}

//! Decoding a request frame: header first (its layout is fixed for the
//! first 8 bytes in every version), then the body.

use bytes::{Buf, Bytes};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind};
use kafka_protocol::protocol::Decodable;

use crate::versions;

/// A decoded request.
#[derive(Debug)]
pub struct Request {
    pub header: RequestHeader,
    pub api_key: ApiKey,
    pub version: i16,
    pub body: RequestKind,
    /// Bytes left in the frame after a well-formed body. Apache Kafka ignores
    /// them, and current librdkafka (2.16) sends a few after a Metadata v12
    /// request, so they are counted, not refused.
    pub trailing_bytes: usize,
}

/// Why a frame could not become a [`Request`], in the terms a server acts on.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// Not a Kafka request: log it and close the connection.
    #[error("malformed request: {reason}")]
    Malformed { reason: String },
    /// A known API at a version Rill does not implement. ApiVersions is
    /// answered (v0 form with UNSUPPORTED_VERSION); for other APIs Kafka
    /// closes the connection, since no reply the client could parse exists.
    #[error("unsupported version {version} of {api_key:?}")]
    UnsupportedVersion {
        api_key: ApiKey,
        version: i16,
        correlation_id: i32,
    },
    /// An API key Rill does not implement at all.
    #[error("unsupported API key {api_key}")]
    UnknownApi { api_key: i16, correlation_id: i32 },
}

/// The fixed prefix of every request header: (api key, version, correlation id).
pub fn peek_header(frame: &[u8]) -> Option<(i16, i16, i32)> {
    if frame.len() < 8 {
        return None;
    }
    Some((
        i16::from_be_bytes([frame[0], frame[1]]),
        i16::from_be_bytes([frame[2], frame[3]]),
        i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]),
    ))
}

/// Decodes a request frame (without its size prefix). Never panics on any input.
pub fn decode_request(frame: Bytes) -> Result<Request, RequestError> {
    let (key, version, correlation_id) =
        peek_header(&frame).ok_or_else(|| RequestError::Malformed {
            reason: format!("{} bytes is too short for a request header", frame.len()),
        })?;
    let api_key = ApiKey::try_from(key).map_err(|_| RequestError::UnknownApi {
        api_key: key,
        correlation_id,
    })?;
    if versions::range(api_key).is_none() {
        return Err(RequestError::UnknownApi {
            api_key: key,
            correlation_id,
        });
    }
    if !versions::is_supported(api_key, version) {
        return Err(RequestError::UnsupportedVersion {
            api_key,
            version,
            correlation_id,
        });
    }
    let mut buf = frame;
    let header_version = api_key.request_header_version(version);
    let header =
        RequestHeader::decode(&mut buf, header_version).map_err(|e| RequestError::Malformed {
            reason: format!("bad {api_key:?} header: {e}"),
        })?;
    let body =
        RequestKind::decode(api_key, &mut buf, version).map_err(|e| RequestError::Malformed {
            reason: format!("bad {api_key:?} v{version} body: {e}"),
        })?;
    Ok(Request {
        header,
        api_key,
        version,
        body,
        trailing_bytes: buf.remaining(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest};
    use kafka_protocol::protocol::{Encodable, StrBytes};
    use proptest::prelude::*;

    fn frame<T: Encodable>(key: ApiKey, version: i16, body: &T) -> Bytes {
        let mut buf = BytesMut::new();
        let mut h = RequestHeader::default();
        h.request_api_key = key as i16;
        h.request_api_version = version;
        h.correlation_id = 7;
        h.client_id = Some(StrBytes::from_static_str("test"));
        h.encode(&mut buf, key.request_header_version(version))
            .unwrap();
        body.encode(&mut buf, version).unwrap();
        buf.freeze()
    }

    #[test]
    fn decodes_known_requests_and_classifies_the_rest() {
        let r = decode_request(frame(
            ApiKey::ApiVersions,
            3,
            &ApiVersionsRequest::default(),
        ))
        .unwrap();
        assert_eq!(
            (r.api_key, r.version, r.header.correlation_id),
            (ApiKey::ApiVersions, 3, 7)
        );
        let r = decode_request(frame(ApiKey::Metadata, 9, &MetadataRequest::default())).unwrap();
        assert!(matches!(r.body, RequestKind::Metadata(_)));
        assert!(matches!(
            decode_request(frame(ApiKey::Metadata, 13, &MetadataRequest::default())),
            Err(RequestError::UnsupportedVersion {
                correlation_id: 7,
                ..
            })
        ));
        let mut f = frame(ApiKey::Metadata, 9, &MetadataRequest::default()).to_vec();
        f[0..2].copy_from_slice(&999i16.to_be_bytes());
        assert!(matches!(
            decode_request(f.into()),
            Err(RequestError::UnknownApi { api_key: 999, .. })
        ));
        // Bytes after a well-formed body are counted and ignored, as Kafka does
        // (librdkafka 2.16 sends 3 after Metadata v12)…
        let mut f = frame(ApiKey::Metadata, 12, &MetadataRequest::default()).to_vec();
        f.extend_from_slice(&[0, 0, 0]);
        let r = decode_request(f.into()).unwrap();
        assert!(matches!(r.body, RequestKind::Metadata(_)));
        assert_eq!(r.trailing_bytes, 3);
        // …but a body cut short is still refused.
        let mut f = frame(ApiKey::Metadata, 12, &MetadataRequest::default()).to_vec();
        f.pop();
        assert!(matches!(
            decode_request(f.into()),
            Err(RequestError::Malformed { .. })
        ));
        assert!(matches!(
            decode_request(Bytes::from_static(&[0, 3])),
            Err(RequestError::Malformed { .. })
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512), key in 0i16..70, version in 0i16..14) {
            let mut f = bytes;
            if f.len() >= 4 {
                f[0..2].copy_from_slice(&key.to_be_bytes());
                f[2..4].copy_from_slice(&version.to_be_bytes());
            }
            let _ = decode_request(Bytes::from(f));
        }
    }
}

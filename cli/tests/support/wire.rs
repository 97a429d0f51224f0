//! A minimal blocking Kafka client for tests that need exact control over
//! the bytes: requests built with the kafka-protocol codecs, or raw frames.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rill_net::kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader, ResponseKind};
use rill_net::kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

pub struct Wire {
    stream: TcpStream,
    correlation: i32,
}

impl Wire {
    pub fn connect(addr: &str) -> Wire {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        Wire {
            stream,
            correlation: 0,
        }
    }

    /// Sends a request and decodes the response at the same version.
    pub fn call<T: Encodable>(&mut self, api: ApiKey, version: i16, body: &T) -> ResponseKind {
        let id = self.send_request(api, version, body);
        let (got, response) = self.read_response(api, version);
        assert_eq!(got, id);
        response
    }

    /// Sends a request without waiting for its answer; returns its
    /// correlation id (for pipelining tests).
    pub fn send_request<T: Encodable>(&mut self, api: ApiKey, version: i16, body: &T) -> i32 {
        self.correlation += 1;
        let mut buf = BytesMut::new();
        let mut h = RequestHeader::default();
        h.request_api_key = api as i16;
        h.request_api_version = version;
        h.correlation_id = self.correlation;
        h.client_id = Some(StrBytes::from_static_str("wire-test"));
        h.encode(&mut buf, api.request_header_version(version))
            .unwrap();
        body.encode(&mut buf, version).unwrap();
        self.send_frame(&buf);
        self.correlation
    }

    /// Reads the next answer, which must be to `api` at `version`; returns
    /// its correlation id and body.
    pub fn read_response(&mut self, api: ApiKey, version: i16) -> (i32, ResponseKind) {
        let mut frame = self.read_frame().expect("a response");
        let header =
            ResponseHeader::decode(&mut frame, api.response_header_version(version)).unwrap();
        (
            header.correlation_id,
            ResponseKind::decode(api, &mut frame, version).unwrap(),
        )
    }

    /// Writes `body` with a correct size prefix.
    pub fn send_frame(&mut self, body: &[u8]) {
        let mut out = (body.len() as i32).to_be_bytes().to_vec();
        out.extend_from_slice(body);
        self.send_raw(&out);
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        // The broker may already have closed the connection; that is what some tests expect.
        let _ = self.stream.write_all(bytes);
    }

    /// The next response frame (without its size), or `None` if the broker closed the connection.
    pub fn read_frame(&mut self) -> Option<Bytes> {
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).ok()?;
        let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
        self.stream.read_exact(&mut body).ok()?;
        Some(Bytes::from(body))
    }

    /// True if the broker closed the connection (reads end) within the timeout.
    pub fn closed_by_broker(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.stream.read(&mut b), Ok(0) | Err(_))
    }
}

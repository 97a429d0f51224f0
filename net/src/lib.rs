//! Rill's wire protocols, free of any async runtime, so the broker (glommio)
//! and the client (tokio) share them.
//!
//! - [`error_code`]: Kafka's names for its error codes, the one table.
//! - [`frame`]: the 4-byte length prefix, refusing oversized frames before
//!   allocating for them.
//! - [`request`]: request header and body decoding, with the outcomes a
//!   server must tell apart (malformed → close; unsupported version → answer).
//! - [`response`]: response encoding with the right header version.
//! - [`versions`]: the one table of APIs and versions Rill implements, which
//!   ApiVersions advertises.
//! - [`peer`]: Rill's own broker-to-broker protocol: Raft messages of many
//!   groups in one frame (an rkyv header, the record batches as the body).
//!
//! ```
//! use bytes::BytesMut;
//! use rill_net::frame::{next_frame, Frame};
//!
//! let mut buf = BytesMut::from(&[0u8, 0, 0, 3, b'a', b'b', b'c', 0][..]);
//! assert!(matches!(next_frame(&mut buf, 1024), Ok(Frame::Complete(f)) if &f[..] == b"abc"));
//! assert!(matches!(next_frame(&mut buf, 1024), Ok(Frame::Incomplete { .. })));
//! ```

pub mod consumer_protocol;
pub mod error_code;
pub mod frame;
pub mod peer;
pub mod request;
pub mod response;
pub mod versions;

pub use kafka_protocol;

//! The client's one error type. A broker's answer keeps its Kafka error code;
//! every variant says whether trying again can help.

use kafka_protocol::error::ResponseError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The broker answered with a Kafka error code.
    #[error("{context}: broker error {code} ({name}){}", message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Kafka {
        code: i16,
        name: &'static str,
        retriable: bool,
        context: String,
        message: Option<String>,
    },
    /// Connecting to or talking with a broker failed at the socket.
    #[error("{context}: {message}")]
    Io { context: String, message: String },
    /// No broker in the bootstrap list could be reached.
    #[error("no broker reachable (tried {tried}): {last}")]
    NoBrokerReachable { tried: String, last: String },
    /// The broker sent something this client cannot decode.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The broker implements none of the versions of an API this client speaks.
    #[error("the broker does not support {api} in versions {min}..={max}")]
    UnsupportedVersion {
        api: &'static str,
        min: i16,
        max: i16,
    },
    /// The topic does not exist (or has no such partition).
    #[error("unknown topic or partition: {0}")]
    UnknownTopicOrPartition(String),
    /// A received record batch failed its CRC-32C or could not be decoded.
    #[error("corrupt record batch at offset {offset}: {reason}")]
    CorruptBatch { offset: i64, reason: String },
    /// The request was not answered in time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The argument cannot be used (bad config value, empty topic name…).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The producer or consumer was closed.
    #[error("closed")]
    Closed,
}

impl Error {
    /// The error for Kafka error `code` (must be non-zero).
    pub fn kafka(code: i16, context: impl Into<String>, message: Option<String>) -> Error {
        Error::Kafka {
            code,
            name: rill_net::error_code::name_of(code),
            retriable: ResponseError::try_from_code(code).is_some_and(|e| e.is_retriable()),
            context: context.into(),
            message,
        }
    }

    /// `Err` for a non-zero code, `Ok` for zero.
    pub fn check(code: i16, context: impl FnOnce() -> String) -> Result<()> {
        if code == 0 {
            Ok(())
        } else if code == ResponseError::UnknownTopicOrPartition.code() {
            Err(Error::UnknownTopicOrPartition(context()))
        } else {
            Err(Error::kafka(code, context(), None))
        }
    }

    pub(crate) fn io(context: impl Into<String>, e: impl std::fmt::Display) -> Error {
        Error::Io {
            context: context.into(),
            message: e.to_string(),
        }
    }

    /// The Kafka error code, if the broker sent one.
    pub fn code(&self) -> Option<i16> {
        match self {
            Error::Kafka { code, .. } => Some(*code),
            Error::UnknownTopicOrPartition(_) => {
                Some(ResponseError::UnknownTopicOrPartition.code())
            }
            Error::UnsupportedVersion { .. } => Some(ResponseError::UnsupportedVersion.code()),
            _ => None,
        }
    }

    /// Whether the same request may succeed later (leader moved, broker
    /// restarting, socket reset, time out). Fatal errors need a different
    /// request or configuration.
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Kafka { retriable, .. } => *retriable,
            Error::Io { .. } | Error::NoBrokerReachable { .. } | Error::Timeout(_) => true,
            // Metadata may not have caught up with a topic just created.
            Error::UnknownTopicOrPartition(_) => true,
            Error::Protocol(_)
            | Error::UnsupportedVersion { .. }
            | Error::CorruptBatch { .. }
            | Error::InvalidArgument(_)
            | Error::Closed => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_keep_their_meaning_and_retriability() {
        let e = Error::kafka(
            ResponseError::NotLeaderOrFollower.code(),
            "produce t-0",
            None,
        );
        assert_eq!(e.code(), Some(6));
        assert!(e.is_retriable());
        assert!(e.to_string().contains("NOT_LEADER_OR_FOLLOWER"), "{e}");
        let e = Error::kafka(ResponseError::MessageTooLarge.code(), "produce t-0", None);
        assert!(!e.is_retriable(), "MESSAGE_TOO_LARGE is fatal");
        assert_eq!(
            Error::check(3, || "t-9".into()).unwrap_err().code(),
            Some(3)
        );
        assert!(Error::check(0, || unreachable!()).is_ok());
    }
}

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
        let e = ResponseError::try_from_code(code);
        let (name, retriable) = match e {
            Some(e) => (response_error_name(e), e.is_retriable()),
            None => ("UNKNOWN", false),
        };
        Error::Kafka {
            code,
            name,
            retriable,
            context: context.into(),
            message,
        }
    }

    /// `Err` for a non-zero code, `Ok` for zero.
    pub fn check(code: i16, context: impl FnOnce() -> String) -> Result<()> {
        if code == 0 {
            Ok(())
        } else if code == 3 {
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
            Error::UnknownTopicOrPartition(_) => Some(3),
            Error::UnsupportedVersion { .. } => Some(35),
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

fn response_error_name(e: ResponseError) -> &'static str {
    use ResponseError as E;
    match e {
        E::OffsetOutOfRange => "OFFSET_OUT_OF_RANGE",
        E::CorruptMessage => "CORRUPT_MESSAGE",
        E::UnknownTopicOrPartition => "UNKNOWN_TOPIC_OR_PARTITION",
        E::InvalidFetchSize => "INVALID_FETCH_SIZE",
        E::LeaderNotAvailable => "LEADER_NOT_AVAILABLE",
        E::NotLeaderOrFollower => "NOT_LEADER_OR_FOLLOWER",
        E::RequestTimedOut => "REQUEST_TIMED_OUT",
        E::BrokerNotAvailable => "BROKER_NOT_AVAILABLE",
        E::MessageTooLarge => "MESSAGE_TOO_LARGE",
        E::NetworkException => "NETWORK_EXCEPTION",
        E::InvalidTopicException => "INVALID_TOPIC_EXCEPTION",
        E::RecordListTooLarge => "RECORD_LIST_TOO_LARGE",
        E::NotEnoughReplicas => "NOT_ENOUGH_REPLICAS",
        E::NotEnoughReplicasAfterAppend => "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
        E::InvalidRequiredAcks => "INVALID_REQUIRED_ACKS",
        E::TopicAuthorizationFailed => "TOPIC_AUTHORIZATION_FAILED",
        E::UnsupportedVersion => "UNSUPPORTED_VERSION",
        E::TopicAlreadyExists => "TOPIC_ALREADY_EXISTS",
        E::InvalidPartitions => "INVALID_PARTITIONS",
        E::InvalidReplicationFactor => "INVALID_REPLICATION_FACTOR",
        E::NotController => "NOT_CONTROLLER",
        E::InvalidRequest => "INVALID_REQUEST",
        E::InvalidConfig => "INVALID_CONFIG",
        E::InvalidReplicaAssignment => "INVALID_REPLICA_ASSIGNMENT",
        E::TopicDeletionDisabled => "TOPIC_DELETION_DISABLED",
        E::ReassignmentInProgress => "REASSIGNMENT_IN_PROGRESS",
        E::PolicyViolation => "POLICY_VIOLATION",
        E::KafkaStorageError => "KAFKA_STORAGE_ERROR",
        E::UnknownServerError => "UNKNOWN_SERVER_ERROR",
        E::InvalidRecord => "INVALID_RECORD",
        E::OffsetNotAvailable => "OFFSET_NOT_AVAILABLE",
        E::UnknownTopicId => "UNKNOWN_TOPIC_ID",
        E::InvalidTimestamp => "INVALID_TIMESTAMP",
        E::ThrottlingQuotaExceeded => "THROTTLING_QUOTA_EXCEEDED",
        E::FencedLeaderEpoch => "FENCED_LEADER_EPOCH",
        E::UnknownLeaderEpoch => "UNKNOWN_LEADER_EPOCH",
        _ => "KAFKA_ERROR",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_keep_their_meaning_and_retriability() {
        let e = Error::kafka(6, "produce t-0", None);
        assert_eq!(e.code(), Some(6));
        assert!(e.is_retriable());
        assert!(e.to_string().contains("NOT_LEADER_OR_FOLLOWER"), "{e}");
        let e = Error::kafka(10, "produce t-0", None);
        assert!(!e.is_retriable(), "MESSAGE_TOO_LARGE is fatal");
        assert_eq!(
            Error::check(3, || "t-9".into()).unwrap_err().code(),
            Some(3)
        );
        assert!(Error::check(0, || unreachable!()).is_ok());
    }
}

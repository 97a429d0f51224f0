//! Kafka error codes: the one table of their names, shared by the broker's
//! messages and the client's errors. The codes themselves are
//! `kafka_protocol::ResponseError` (`ResponseError::UnknownTopicOrPartition.code()`);
//! no bare numbers elsewhere.

use kafka_protocol::ResponseError;

/// Kafka's name for an error (`UNKNOWN_TOPIC_OR_PARTITION`), as clients and
/// logs print it; `KAFKA_ERROR` for codes this table does not name.
pub fn name(e: ResponseError) -> &'static str {
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

/// The name of a non-zero code; `UNKNOWN` for one Kafka does not define.
pub fn name_of(code: i16) -> &'static str {
    match ResponseError::try_from_code(code) {
        Some(ResponseError::Unknown(_)) | None => "UNKNOWN",
        Some(e) => name(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_kafka() {
        assert_eq!(name_of(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(
            name(ResponseError::InvalidReplicaAssignment),
            "INVALID_REPLICA_ASSIGNMENT"
        );
        assert_eq!(name_of(-2), "UNKNOWN");
    }
}

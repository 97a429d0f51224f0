//! Rill's wire protocols, free of any async runtime: Kafka framing, API
//! version negotiation, request/response codecs and error-code mapping, and
//! the peer (replication) protocol frames.
//!
//! Nothing is implemented here yet; the single-node broker work fills it.

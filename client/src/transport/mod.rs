//! Sockets: the tokio half of the client.

pub mod connection;

//! The runtime-independent half of the client: wire framing and version
//! negotiation, record batches, partitioning. Nothing here does I/O, so
//! another transport can reuse it.

pub mod partitioner;
pub mod records;
pub mod wire;

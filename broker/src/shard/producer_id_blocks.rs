//! Where this broker's producer-id blocks come from: its controller, one
//! metadata command per block.

use std::ops::Range;
use std::rc::Rc;

use super::Shard;
use crate::cluster::MetadataCommand;
use crate::producer_ids::{ProducerIdBlocks, ProducerIdError};

/// This broker's controller: one metadata command per block.
impl ProducerIdBlocks for Rc<Shard> {
    async fn allocate(&self, count: i64) -> Result<Range<i64>, ProducerIdError> {
        let broker = self.config.node_id;
        let block = self
            .change_metadata(move |draft, _| {
                let start = draft.state().next_producer_id;
                draft
                    .push(MetadataCommand::AllocateProducerIds { broker, count })
                    .map(|()| start..start + count)
            })
            .await??;
        tracing::debug!(?block, "allocated producer ids");
        Ok(block)
    }
}

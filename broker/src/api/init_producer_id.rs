//! InitProducerId for idempotent (not transactional) producers: a new
//! producer id with epoch 0, or — given the id and epoch a producer already
//! has (v3+, KIP-360) — the same id with the next epoch, which fences the
//! producer's own older in-flight batches on every partition. Kafka answers
//! that case with a new id instead; either is valid to clients, and the bump
//! keeps one id per producer for the partitions' state.

use rill_net::kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse};
use rill_net::kafka_protocol::ResponseError;

use super::Context;

pub async fn handle(cx: &Context<'_>, req: InitProducerIdRequest) -> InitProducerIdResponse {
    let mut resp = InitProducerIdResponse::default();
    resp.producer_id = (-1).into();
    resp.producer_epoch = -1;
    let result = if req.transactional_id.as_ref().is_some_and(|t| t.is_empty()) {
        Err(ResponseError::InvalidRequest)
    } else if req.transactional_id.is_some() {
        // Transactions are not implemented; refuse rather than pretend.
        Err(ResponseError::TransactionalIdAuthorizationFailed)
    } else {
        match (*req.producer_id, req.producer_epoch) {
            (-1, -1) => new_id(cx).await,
            (-1, _) | (_, -1) => Err(ResponseError::InvalidRequest),
            (id, epoch) if id >= 0 && epoch >= 0 => {
                let issued = id < cx.shard.meta().next_producer_id;
                if issued && epoch < i16::MAX - 1 {
                    Ok((id, epoch + 1))
                } else {
                    // Not one of ours, or its epochs are spent: a fresh id.
                    new_id(cx).await
                }
            }
            _ => Err(ResponseError::InvalidRequest),
        }
    };
    match result {
        Ok((id, epoch)) => {
            resp.producer_id = id.into();
            resp.producer_epoch = epoch;
        }
        Err(e) => resp.error_code = e.code(),
    }
    resp
}

async fn new_id(cx: &Context<'_>) -> Result<(i64, i16), ResponseError> {
    let id = cx
        .shard
        .on(0, |s0| async move {
            let ids = s0
                .producer_ids
                .as_ref()
                .expect("shard 0 hands out producer ids");
            ids.next(&s0).await.map_err(|e| e.to_string())
        })
        .await;
    match id {
        Ok(id) => Ok((id, 0)),
        Err(e) => {
            tracing::warn!(error = %e, "InitProducerId failed");
            // Retriable for clients: they ask again.
            Err(ResponseError::CoordinatorNotAvailable)
        }
    }
}

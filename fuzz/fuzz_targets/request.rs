//! Arbitrary bytes as one request frame, through the decoder and the API
//! dispatcher of a one-shard broker with its data in a temporary directory.
//! Any panic is a bug: the broker must answer or close, never crash.
//!
//! cargo +nightly fuzz run request -- -max_total_time=300
#![no_main]

use std::rc::Rc;

use libfuzzer_sys::fuzz_target;
use rill_broker::BrokerConfig;
use rill_broker::shard::Shard;

thread_local! {
    static BROKER: (glommio::LocalExecutor, Rc<Shard>) = {
        let executor = glommio::LocalExecutorBuilder::default().make().expect("executor");
        let dir = std::env::temp_dir().join(format!("rill-fuzz-{}", std::process::id()));
        let mut config = BrokerConfig::ephemeral(&dir).expect("config");
        config.auto_create_topics = true;
        let shard = executor.run(rill_broker::runtime::local_shard(config)).expect("shard");
        (executor, shard)
    };
}

fuzz_target!(|data: &[u8]| {
    BROKER.with(|(executor, shard)| {
        let frame = bytes::Bytes::copy_from_slice(data);
        // A fetch may legitimately long-poll for as long as it asks; stop
        // watching after a moment (the wait itself is bounded by its deadline).
        executor.run(async {
            futures_lite::future::or(
                async {
                    let _ = rill_broker::server::respond(shard, frame).await;
                },
                glommio::timer::sleep(std::time::Duration::from_millis(50)),
            )
            .await
        });
    });
});

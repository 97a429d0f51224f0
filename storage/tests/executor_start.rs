//! An executor whose preemption timer fires before it has run anything must
//! still run its tasks. glommio 0.9.0 parked instead, with runnable tasks
//! and nothing pending to wake it, and stayed asleep for good: a broker's
//! shard hung at start, now and then, on a loaded machine (the fix is the
//! "Rill patch" in third_party/glommio/src/executor/mod.rs).

use std::time::Duration;

use glommio::LocalExecutorBuilder;

#[test]
fn an_executor_preempted_before_its_first_task_still_runs_it() {
    // A preemption timer this short has fired by the time the executor
    // looks at its queues, nearly every time.
    const ROUNDS: usize = 300;
    for round in 0..ROUNDS {
        let (tx, rx) = std::sync::mpsc::channel();
        let handle = LocalExecutorBuilder::default()
            .name("preempted")
            .preempt_timer(Duration::from_nanos(1))
            .spawn(move || async move {
                let spawned = glommio::spawn_local(async move { round * 2 });
                let _ = tx.send(spawned.await);
            })
            .expect("starting an executor");
        // A hung executor's thread is left behind: the test fails at once.
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(v) => assert_eq!(v, round * 2),
            Err(_) => panic!("round {round}: the executor never ran its tasks"),
        }
        handle.join().expect("the executor's thread");
    }
}

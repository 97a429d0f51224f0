//! Shutdown by construction: SIGTERM while connections are idle, halfway
//! through sending a request, and long-polling a fetch that spans both
//! shards. The broker answers what it started, closes its logs cleanly and
//! exits 0 within the grace period, with no shard left serving another's
//! work (a panic would make the exit status non-zero).

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use rill_net::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use rill_net::kafka_protocol::messages::{ApiKey, FetchRequest, TopicName};
use rill_net::kafka_protocol::protocol::StrBytes;
use support::{kcat_read, run_with_input, Broker};
use wire::Wire;

#[path = "support/wire.rs"]
mod wire;

#[test]
fn sigterm_with_busy_idle_and_half_sent_connections() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(dir.path(), &["--cores", "2"]);
    let addr = broker.addr();
    for topic in ["t", "empty"] {
        let (ok, _, err) = run_with_input(
            Command::new(env!("CARGO_BIN_EXE_rill"))
                .args(["topic", "create", topic, "-p", "4"])
                .env("RILL_BROKERS", &addr),
            b"",
            Duration::from_secs(30),
        );
        assert!(ok, "{err}");
    }
    let input: String = (0..200).map(|i| format!("m{i}\n")).collect();
    let (ok, _, err) = run_with_input(
        Command::new("kcat").args(["-b", &addr, "-P", "-t", "t"]),
        input.as_bytes(),
        Duration::from_secs(30),
    );
    assert!(ok, "{err}");

    // Several connections, so the kernel spreads them over both shards.
    let _idle: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    let mut half: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    for s in &mut half {
        s.write_all(&[0, 0, 0, 100, 0, 1, 0, 11]).unwrap(); // 8 of 104 bytes
    }
    // Long polls on every partition of an empty topic (both shards own some):
    // each waits on the other shard's partitions until max_wait.
    let mut pollers: Vec<Wire> = (0..4).map(|_| Wire::connect(&addr)).collect();
    for w in &mut pollers {
        let mut t = FetchTopic::default();
        t.topic = TopicName(StrBytes::from_static_str("empty"));
        t.partitions = (0..4)
            .map(|p| {
                let mut fp = FetchPartition::default();
                fp.partition = p;
                fp.fetch_offset = 0;
                fp.partition_max_bytes = 1 << 20;
                fp
            })
            .collect();
        let mut req = FetchRequest::default();
        req.max_wait_ms = 3_000;
        req.min_bytes = 1;
        req.max_bytes = 1 << 20;
        req.topics = vec![t];
        w.send_request(ApiKey::Fetch, 11, &req);
    }
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let status = broker.terminate();
    let took = started.elapsed();
    assert!(status.success(), "broker exited with {status}");
    // The long polls end at their max_wait (3 s); half-sent requests get
    // PARTIAL_REQUEST_GRACE_MS; nothing waits for the full grace period.
    assert!(
        took < Duration::from_millis(rill_broker::server::SHUTDOWN_GRACE_MS),
        "shutdown took {took:?}"
    );
    drop(half);
    broker.restart();
    let read = kcat_read(&broker.addr(), "t", "%s\n", &["-o", "beginning"]);
    assert_eq!(read.lines().count(), 200, "records after a clean restart");
}

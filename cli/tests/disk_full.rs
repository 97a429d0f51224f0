//! The broker's whole data directory — metadata, partitions — and its log
//! on a small loop-mounted filesystem that fills up, with confluent-kafka
//! (Debian's) as the client. The broker stays up; produce fails with an
//! error the client understands (KAFKA_STORAGE_ERROR, retriable, as
//! Kafka's: librdkafka retries it until its message timeout); creating a
//! topic fails with a message that says why; everything acknowledged can
//! be read; once space returns, produce works again by itself, and a
//! SIGTERM still shuts it down cleanly. Needs root (mount), as CI has.

mod support;

#[path = "support/loop_mount.rs"]
mod loop_mount;

use std::collections::BTreeSet;
use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use loop_mount::LoopMount;
use support::{clients_dir, python, run};

fn script(addr: &str, args: &[&str]) -> String {
    let (ok, out, err) = run(
        Command::new(python())
            .arg(clients_dir().join("disk_full.py"))
            .arg(addr)
            .args(args),
        Duration::from_secs(240),
    );
    assert!(ok, "disk_full.py {args:?} failed\n{out}\n{err}");
    out.lines()
        .rfind(|l| !l.starts_with('%'))
        .unwrap_or_default()
        .to_string()
}

fn acked(json: &str) -> (Vec<(i32, i64)>, serde_json::Value) {
    let v: serde_json::Value = serde_json::from_str(json).expect(json);
    let acked = v["acked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a[0].as_i64().unwrap() as i32, a[1].as_i64().unwrap()))
        .collect();
    (acked, v["errors"].clone())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The broker process, killed if the test fails before stopping it (a
/// panicking test must not leave a broker running).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn alive(child: &mut Child) -> bool {
    child.try_wait().unwrap().is_none()
}

fn free_bytes(path: &Path) -> u64 {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut s) }, 0);
    s.f_bavail as u64 * s.f_frsize as u64
}

#[test]
fn a_full_disk_keeps_the_broker_up_and_produce_resumes_when_space_returns() {
    let fs = LoopMount::new(160);
    let mnt = fs.path();
    // Space that comes back later: most of the filesystem.
    let filler = mnt.join("filler");
    {
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0xa5u8; 1 << 20];
        for _ in 0..80 {
            f.write_all(&chunk).unwrap();
        }
        f.sync_all().unwrap();
    }
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let log = std::fs::File::create(mnt.join("broker.log")).unwrap();
    // Its log on the same filesystem: writing it must not fail the broker.
    let mut running = Running(
        Command::new(env!("CARGO_BIN_EXE_rill"))
            .args(["broker", "--data-dir"])
            .arg(mnt.join("data"))
            .args(["--listen", &addr, "--admin-listen", "127.0.0.1:0"])
            .env("RILL_LOG", "info")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap(),
    );
    let broker = &mut running.0;
    let up = Instant::now();
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(
            up.elapsed() < Duration::from_secs(30),
            "the broker did not start"
        );
        assert!(alive(broker), "the broker exited at start");
        std::thread::sleep(Duration::from_millis(50));
    }

    assert_eq!(script(&addr, &["create", "full", "4"]), "created");
    let (first, errors) = acked(&script(&addr, &["fill", "full", "30000"]));
    println!(
        "filled: {} records acknowledged, then {errors}; {} bytes free",
        first.len(),
        free_bytes(mnt)
    );
    assert!(
        !first.is_empty(),
        "nothing was written before the disk filled"
    );
    assert!(
        errors.as_object().is_some_and(|e| !e.is_empty()),
        "the disk never filled: {errors}"
    );
    assert!(alive(broker), "the broker died when the disk filled");

    // Metadata changes fail, saying why.
    let created = script(&addr, &["create", "another", "1"]);
    assert!(
        created.starts_with("failed KAFKA_STORAGE_ERROR") && created.contains("No space left"),
        "{created}"
    );
    // Every acknowledged record can be read.
    let read: BTreeSet<(i32, i64)> =
        serde_json::from_str::<Vec<(i32, i64)>>(&script(&addr, &["read", "full", "4"]))
            .unwrap()
            .into_iter()
            .collect();
    let missing: Vec<_> = first.iter().filter(|a| !read.contains(a)).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not readable: {missing:?}"
    );
    assert!(alive(broker));

    // Space returns: produce works again without a restart.
    std::fs::remove_file(&filler).unwrap();
    let (second, errors) = acked(&script(&addr, &["produce", "full", "200"]));
    assert_eq!(second.len(), 200, "after space returned: {errors}");
    assert_eq!(script(&addr, &["create", "another", "1"]), "created");
    let read: BTreeSet<(i32, i64)> =
        serde_json::from_str::<Vec<(i32, i64)>>(&script(&addr, &["read", "full", "4"]))
            .unwrap()
            .into_iter()
            .collect();
    assert!(first.iter().chain(&second).all(|a| read.contains(a)));

    unsafe { libc::kill(broker.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = broker.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "no clean shutdown");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "shutdown: {status}");
}

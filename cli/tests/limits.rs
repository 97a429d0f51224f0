//! Resource limits the broker sets for itself: started with a low soft
//! limit on open files (below a shell's usual 1024), it raises it to the hard
//! limit, as many partitions and connections need.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn limits_line(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/limits"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .to_string()
}

#[test]
fn the_broker_raises_its_open_file_limit_to_the_hard_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "ulimit -Sn 512 && exec {} broker --data-dir {} --listen 127.0.0.1:0",
            env!("CARGO_BIN_EXE_rill"),
            dir.path().display()
        ))
        .env("RILL_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("rill broker listening on"), "{line}");
    // "Max open files            <soft>  <hard>  files"
    let l = limits_line(child.id());
    let fields: Vec<&str> = l.split_whitespace().collect();
    let (soft, hard) = (fields[3], fields[4]);
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
    assert_eq!(soft, hard, "started at 512: {l}");
}

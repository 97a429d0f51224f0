//! A TCP proxy between Kafka clients and a broker that loses answers: it
//! forwards every request, and for every `every`-th Produce request it cuts
//! the client's connection instead of passing the broker's answer on — the
//! records were appended, the client never hears so, and retries. Clients
//! reach the broker only through it when the broker advertises the proxy's
//! address (`--advertised-listener`).
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const PRODUCE: i16 = 0;

pub struct FaultProxy {
    pub port: u16,
    upstream: Arc<Mutex<Option<String>>>,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
}

#[derive(Default)]
struct Stats {
    produce_requests: AtomicUsize,
    cuts: AtomicUsize,
}

struct Rule {
    every: usize,
    max_cuts: usize,
}

impl FaultProxy {
    /// Listens on a free loopback port; forwards once [`FaultProxy::forward_to`]
    /// names the broker. Cuts the answer of every `every`-th Produce request,
    /// at most `max_cuts` times.
    pub fn start(every: usize, max_cuts: usize) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let upstream: Arc<Mutex<Option<String>>> = Arc::default();
        let stats: Arc<Stats> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let rule = Arc::new(Rule { every, max_cuts });
        let (u, s, st) = (upstream.clone(), stats.clone(), stop.clone());
        std::thread::spawn(move || {
            while !st.load(SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let Some(addr) = u.lock().unwrap().clone() else {
                            continue;
                        };
                        let (s, rule) = (s.clone(), rule.clone());
                        std::thread::spawn(move || serve(client, &addr, &s, &rule));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FaultProxy {
            port,
            upstream,
            stats,
            stop,
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn forward_to(&self, broker: &str) {
        *self.upstream.lock().unwrap() = Some(broker.to_string());
    }

    /// Produce answers cut so far.
    pub fn cuts(&self) -> usize {
        self.stats.cuts.load(SeqCst)
    }

    pub fn produce_requests(&self) -> usize {
        self.stats.produce_requests.load(SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, SeqCst);
    }
}

fn read_frame(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let n = i32::from_be_bytes(len);
    if !(0..=256 << 20).contains(&n) {
        return None;
    }
    let mut frame = vec![0u8; 4 + n as usize];
    frame[..4].copy_from_slice(&len);
    s.read_exact(&mut frame[4..]).ok()?;
    Some(frame)
}

/// One client connection: requests one way, answers the other, with the
/// API of each correlation id remembered so Produce answers can be told.
fn serve(mut client: TcpStream, upstream: &str, stats: &Stats, rule: &Rule) {
    let Ok(mut broker) = TcpStream::connect(upstream) else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = broker.set_nodelay(true);
    let cut: Arc<Mutex<HashMap<i32, bool>>> = Arc::default();
    let (mut c_in, mut b_out) = (client.try_clone().unwrap(), broker.try_clone().unwrap());
    let (c_kill, b_kill) = (client.try_clone().unwrap(), broker.try_clone().unwrap());
    let pending = cut.clone();
    let every = rule.every.max(1);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while let Some(frame) = read_frame(&mut c_in) {
                if frame.len() >= 12 {
                    let api = i16::from_be_bytes([frame[4], frame[5]]);
                    let correlation = i32::from_be_bytes(frame[8..12].try_into().unwrap());
                    if api == PRODUCE {
                        let n = stats.produce_requests.fetch_add(1, SeqCst) + 1;
                        let lose =
                            n.is_multiple_of(every) && stats.cuts.load(SeqCst) < rule.max_cuts;
                        pending.lock().unwrap().insert(correlation, lose);
                    }
                }
                if b_out.write_all(&frame).is_err() {
                    break;
                }
            }
            let _ = b_kill.shutdown(Shutdown::Both);
        });
        while let Some(frame) = read_frame(&mut broker) {
            if frame.len() >= 8 {
                let correlation = i32::from_be_bytes(frame[4..8].try_into().unwrap());
                if cut.lock().unwrap().remove(&correlation) == Some(true) {
                    // The broker has answered: the append happened.
                    stats.cuts.fetch_add(1, SeqCst);
                    break;
                }
            }
            if client.write_all(&frame).is_err() {
                break;
            }
        }
        let _ = c_kill.shutdown(Shutdown::Both);
        let _ = broker.shutdown(Shutdown::Both);
    });
}

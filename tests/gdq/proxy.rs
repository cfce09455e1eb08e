//! A loopback HTTP proxy in front of the AWS emulator that holds, delays or fails chosen
//! requests, and counts every request: how the tests make an S3 write slow, make it land
//! after its writer gave up, or throttle it, and prove the fault happened.
//!
//! moto answers every request with `connection: close`, so the proxy reads one request per
//! connection, applies the first matching rule, forwards it, and copies the answer back (to
//! a client that may have given up: the request lands anyway, as a late write does).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// What a rule does to the requests it matches.
pub enum Fault {
    /// Forward after this long.
    Delay(Duration),
    /// Forward once the test opens the gate.
    Hold(Arc<Gate>),
    /// Answer with this status (an S3 `SlowDown` error body), never forwarding.
    Fail(u16),
    /// Answer with this status and S3 error code, never forwarding.
    Refuse(u16, &'static str),
}

/// A gate a held request waits at.
#[derive(Default)]
pub struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
}

impl Gate {
    pub fn new() -> Arc<Gate> {
        Arc::new(Gate::default())
    }

    pub fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }

    fn wait(&self) {
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.opened.wait(open).unwrap();
        }
    }
}

/// A rule: requests with this method whose path contains every one of `parts`.
pub struct Rule {
    method: String,
    parts: Vec<String>,
    fault: Fault,
    /// How many more requests it applies to.
    remaining: AtomicUsize,
    /// Requests it applied to so far, waiting now, and answered (forwarded or failed).
    pub matched: AtomicUsize,
    pub waiting: AtomicUsize,
    pub answered: AtomicUsize,
    /// Status codes the upstream gave the requests it held.
    pub statuses: Mutex<Vec<u16>>,
}

impl Rule {
    fn matches(&self, method: &str, path: &str) -> bool {
        method == self.method && self.parts.iter().all(|p| path.contains(p.as_str()))
    }

    /// Waits until `n` matched requests were answered.
    pub fn wait_answered(&self, n: usize) {
        poll(
            || self.answered.load(Ordering::SeqCst) >= n,
            "answered requests",
        );
    }

    /// Waits until a matched request is being held.
    pub fn wait_held(&self) {
        poll(|| self.waiting.load(Ordering::SeqCst) > 0, "a held request");
    }
}

fn poll(done: impl Fn() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !done() {
        assert!(Instant::now() < deadline, "no {what} within 120 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One request the proxy saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
}

struct State {
    upstream: String,
    rules: Mutex<Vec<Arc<Rule>>>,
    seen: Mutex<Vec<Seen>>,
}

/// The running proxy; it lives as long as the test holds it.
pub struct Proxy {
    pub endpoint: String,
    state: Arc<State>,
}

impl Proxy {
    /// A proxy to `upstream` (`http://host:port`) on a free loopback port.
    pub fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(State {
            upstream: upstream.trim_start_matches("http://").to_string(),
            rules: Mutex::new(Vec::new()),
            seen: Mutex::new(Vec::new()),
        });
        let accepting = Arc::clone(&state);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = Arc::clone(&accepting);
                std::thread::spawn(move || {
                    let _ = serve(&state, stream);
                });
            }
        });
        Proxy { endpoint, state }
    }

    /// Applies `fault` to the next `times` requests with `method` whose path contains all
    /// of `parts`.
    pub fn rule(&self, method: &str, parts: &[&str], fault: Fault, times: usize) -> Arc<Rule> {
        let rule = Arc::new(Rule {
            method: method.to_string(),
            parts: parts.iter().map(|p| p.to_string()).collect(),
            fault,
            remaining: AtomicUsize::new(times),
            matched: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            answered: AtomicUsize::new(0),
            statuses: Mutex::new(Vec::new()),
        });
        self.state.rules.lock().unwrap().push(Arc::clone(&rule));
        rule
    }

    /// Every request seen since the last call, and forgets them.
    pub fn take_seen(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.state.seen.lock().unwrap())
    }
}

/// Reads one HTTP request: its head (through the blank line) and body.
fn read_request(reader: &mut BufReader<TcpStream>) -> std::io::Result<(String, String, Vec<u8>)> {
    let mut head = Vec::new();
    let mut content_length = 0usize;
    let mut first = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if first.is_empty() {
            first = line.clone();
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            content_length = value.trim().parse().unwrap_or(0);
        }
        head.extend_from_slice(line.as_bytes());
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0; content_length];
    reader.read_exact(&mut body)?;
    head.extend_from_slice(&body);
    let mut parts = first.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    Ok((method, path, head))
}

fn serve(state: &State, client: TcpStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let (method, path, request) = read_request(&mut reader)?;
    state.seen.lock().unwrap().push(Seen {
        method: method.clone(),
        path: path.clone(),
    });
    let rule = state
        .rules
        .lock()
        .unwrap()
        .iter()
        .find(|r| {
            r.matches(&method, &path)
                && r.remaining
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok()
        })
        .cloned();
    let mut client = client;
    if let Some(rule) = &rule {
        rule.matched.fetch_add(1, Ordering::SeqCst);
        rule.waiting.fetch_add(1, Ordering::SeqCst);
        match &rule.fault {
            Fault::Delay(delay) => std::thread::sleep(*delay),
            Fault::Hold(gate) => gate.wait(),
            Fault::Fail(status) | Fault::Refuse(status, _) => {
                rule.waiting.fetch_sub(1, Ordering::SeqCst);
                let body = match &rule.fault {
                    Fault::Refuse(_, code) => {
                        format!("<Error><Code>{code}</Code><Message>Injected {code}</Message></Error>")
                    }
                    _ => "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>".to_string(),
                };
                let answer = format!(
                    "HTTP/1.1 {status} Injected\r\ncontent-type: application/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = client.write_all(answer.as_bytes());
                rule.statuses.lock().unwrap().push(*status);
                rule.answered.fetch_add(1, Ordering::SeqCst);
                return Ok(());
            }
        }
        rule.waiting.fetch_sub(1, Ordering::SeqCst);
    }
    let mut upstream = TcpStream::connect(&state.upstream)?;
    upstream.write_all(&request)?;
    let mut response = Vec::new();
    upstream.read_to_end(&mut response)?;
    if let Some(rule) = &rule {
        let status = String::from_utf8_lossy(&response)
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        rule.statuses.lock().unwrap().push(status);
        rule.answered.fetch_add(1, Ordering::SeqCst);
    }
    // The client may have given up waiting; the request landed all the same.
    let _ = client.write_all(&response);
    Ok(())
}

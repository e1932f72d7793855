//! A small HTTP proxy in front of the test S3 server that counts requests
//! and injects faults: `503 SlowDown`, `500 InternalError`, connection
//! resets, and requests held until the test lets them through.
//!
//! Each client connection carries one request: the proxy forwards it on a
//! connection of its own with `Connection: close`, passes the answer back
//! with `Connection: close`, and closes. Rules are tried in order; the
//! first that matches a request (method and a part of its path) and has
//! uses left decides its fate.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// What happens to a matching request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// `503 Slow Down` with S3's `SlowDown` error.
    SlowDown,
    /// `500 Internal Server Error` with S3's `InternalError`.
    InternalError,
    /// The connection is reset (RST) once the request was read.
    Reset,
    /// Held until [`Proxy::release`], then forwarded.
    Hold,
}

#[derive(Clone, Debug)]
struct Rule {
    method: String,
    path: String,
    fault: Fault,
    uses: usize,
}

/// A request as the proxy saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub method: String,
    pub path: String,
    /// The `Range` header's value.
    pub range: Option<String>,
    /// The fault injected, if any.
    pub fault: Option<Fault>,
    /// The answer's status (0: none, the connection was reset).
    pub status: u16,
    /// Bytes of the answer's body.
    pub bytes: usize,
}

impl Seen {
    /// The first byte a ranged GET asked for.
    pub fn range_start(&self) -> Option<u64> {
        self.range
            .as_deref()?
            .strip_prefix("bytes=")?
            .split('-')
            .next()?
            .parse()
            .ok()
    }

    /// The last byte a ranged GET asked for.
    pub fn range_end(&self) -> Option<u64> {
        self.range
            .as_deref()?
            .strip_prefix("bytes=")?
            .split('-')
            .nth(1)?
            .parse()
            .ok()
    }
}

#[derive(Default)]
struct State {
    rules: Vec<Rule>,
    seen: Vec<Seen>,
    held: usize,
    released: bool,
}

struct Shared {
    upstream: SocketAddr,
    state: Mutex<State>,
    changed: Condvar,
    stop: AtomicBool,
}

/// A running proxy; stopped when dropped.
pub struct Proxy {
    pub port: u16,
    shared: Arc<Shared>,
}

impl Proxy {
    /// A proxy to `127.0.0.1:upstream`.
    pub fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            upstream: SocketAddr::from(([127, 0, 0, 1], upstream)),
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        std::thread::Builder::new()
            .name("fault-proxy".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if s.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let s = s.clone();
                    std::thread::spawn(move || serve(&s, conn));
                }
            })
            .unwrap();
        Proxy { port, shared }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The next `uses` requests with `method` (`""`: any) whose path holds
    /// `path` get `fault`.
    pub fn inject(&self, method: &str, path: &str, fault: Fault, uses: usize) {
        let mut st = self.shared.state.lock().unwrap();
        st.rules.push(Rule {
            method: method.into(),
            path: path.into(),
            fault,
            uses,
        });
        if fault == Fault::Hold {
            st.released = false;
        }
    }

    /// Remove every rule.
    pub fn clear(&self) {
        self.shared.state.lock().unwrap().rules.clear();
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.state.lock().unwrap().seen.clone()
    }

    /// Forget the requests seen so far.
    pub fn forget(&self) {
        self.shared.state.lock().unwrap().seen.clear();
    }

    /// Wait until `n` requests are held since the last release (at most
    /// 60 s, then fail).
    pub fn wait_held(&self, n: usize) {
        let mut st = self.shared.state.lock().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while st.held < n {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                // Not with the lock held: the proxy's drop takes it again.
                let (held, seen) = (st.held, st.seen.clone());
                drop(st);
                panic!("{held} requests held after 60 s, not {n}: {seen:?}");
            }
            st = self.shared.changed.wait_timeout(st, left).unwrap().0;
        }
    }

    /// Requests held now (since the last release).
    pub fn held(&self) -> usize {
        self.shared.state.lock().unwrap().held
    }

    /// Let held requests (and those still to come) through.
    pub fn release(&self) {
        let mut st = self.shared.state.lock().unwrap();
        st.released = true;
        st.held = 0;
        st.rules.retain(|r| r.fault != Fault::Hold);
        self.shared.changed.notify_all();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.release();
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// A request's head (up to the blank line) and its body.
fn read_request(conn: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = conn.read(&mut byte).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&byte[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())
                .flatten()
        })
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let n = conn.read(&mut byte).ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&byte[..n]);
    }
    Some((head, body))
}

/// `head` with its `Connection` header replaced by `Connection: close`.
fn closing(head: &str) -> String {
    let mut out = String::new();
    for line in head.split("\r\n") {
        if line.is_empty() {
            continue;
        }
        if line
            .split_once(':')
            .is_some_and(|(k, _)| k.eq_ignore_ascii_case("connection"))
        {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    out
}

fn reset(conn: TcpStream) {
    // SO_LINGER 0: close sends RST.
    let fd = std::os::fd::AsRawFd::as_raw_fd(&conn);
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on an open socket with a properly sized value.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    drop(conn);
}

fn error_response(status: &str, code: &str) -> String {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>injected by the test proxy</Message><RequestId>test</RequestId></Error>"
    );
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn serve(s: &Shared, mut conn: TcpStream) {
    let Some((head, body)) = read_request(&mut conn) else {
        return;
    };
    let mut first = head.split_whitespace();
    let method = first.next().unwrap_or("").to_string();
    let path = first.next().unwrap_or("").to_string();
    let range = head.split("\r\n").find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("range")
            .then(|| v.trim().to_string())
    });
    let mut seen = Seen {
        method: method.clone(),
        path: path.clone(),
        range,
        fault: None,
        status: 0,
        bytes: 0,
    };
    let record = |seen: Seen| s.state.lock().unwrap().seen.push(seen);
    let fault = {
        let mut st = s.state.lock().unwrap();
        st.rules
            .iter_mut()
            .find(|r| {
                r.uses > 0 && (r.method.is_empty() || r.method == method) && path.contains(&r.path)
            })
            .map(|r| {
                r.uses -= 1;
                r.fault
            })
    };
    seen.fault = fault;
    match fault {
        Some(Fault::SlowDown) => {
            let _ = conn.write_all(error_response("503 Slow Down", "SlowDown").as_bytes());
            seen.status = 503;
            return record(seen);
        }
        Some(Fault::InternalError) => {
            let _ = conn
                .write_all(error_response("500 Internal Server Error", "InternalError").as_bytes());
            seen.status = 500;
            return record(seen);
        }
        Some(Fault::Reset) => {
            record(seen);
            return reset(conn);
        }
        Some(Fault::Hold) => {
            let mut st = s.state.lock().unwrap();
            st.held += 1;
            s.changed.notify_all();
            while !st.released {
                st = s.changed.wait(st).unwrap();
            }
        }
        None => {}
    }
    let answer = (|| {
        let mut up = TcpStream::connect_timeout(&s.upstream, Duration::from_secs(5)).ok()?;
        up.write_all(closing(&head).as_bytes()).ok()?;
        up.write_all(&body).ok()?;
        let mut answer = Vec::new();
        up.read_to_end(&mut answer).ok()?;
        (!answer.is_empty()).then_some(answer)
    })();
    let Some(answer) = answer else {
        // The server is down: the client sees what it would see of a dead
        // server behind a load balancer, a reset.
        record(seen);
        return reset(conn);
    };
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(answer.len(), |i| i + 4);
    let head = String::from_utf8_lossy(&answer[..split]).into_owned();
    seen.status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    seen.bytes = answer.len() - split;
    record(seen);
    let _ = conn.write_all(closing(&head).as_bytes());
    let _ = conn.write_all(&answer[split..]);
    let _ = conn.shutdown(Shutdown::Write);
}

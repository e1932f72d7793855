//! The HTTP client of a bucket on a loopback `http://` endpoint: hyper over
//! TCP connections that acknowledge every segment at once (`TCP_QUICKACK`
//! after each read).
//!
//! An S3 server that writes a response's head and its body in two writes,
//! without `TCP_NODELAY` (s3s-fs does, hyper's default), sends the body only
//! once the head is acknowledged (Nagle). A client that has just sent its
//! request is, to Linux, in an interactive exchange and delays that
//! acknowledgement by up to 40 ms, waiting for data of its own to carry it.
//! On a kept-alive connection half of the small answers (a snapshot, a
//! config, the end of a range) then came 43 ms late, measured with `curl`
//! against s3s-fs; a whole restore from it took 4.05-4.47 s, and 3.31-3.41
//! s with delayed acknowledgements turned off for the loopback route.
//! Setting `TCP_QUICKACK` is the client's own remedy: the kernel clears it
//! again as the exchange goes on, so it is set after every read.
//!
//! `https://` endpoints keep reqwest's client and its TLS set-up (the
//! system's trust store); plain `http://` is refused for anything but a
//! loopback address ([`super::location`]).

use bytes::Bytes;
use futures::TryStreamExt;
use http::{Request, Response, Uri};
use http_body_util::{BodyDataStream, Full};
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use opendal::raw::{parse_content_encoding, parse_content_length};
use opendal::{Buffer, ErrorKind, HttpBody, HttpTransport};
use std::future::Future;
use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;

/// A TCP connection that acknowledges what it reads at once, and fails a
/// read that waits longer than its limit (reqwest's `read_timeout`, which
/// this client replaces).
pub struct QuickAck {
    io: TokioIo<TcpStream>,
    /// How long a read may wait for bytes.
    limit: Duration,
    /// The limit's timer, made once per connection and set again each time
    /// a read starts to wait (reads wait often: at every gap in a body).
    timer: Pin<Box<tokio::time::Sleep>>,
    /// A read is waiting, and `timer` runs for it.
    waiting: bool,
}

impl QuickAck {
    /// Acknowledge at once from now on (until the kernel's next guess).
    fn arm(&self) {
        let one: libc::c_int = 1;
        // SAFETY: a valid descriptor and a c_int of the size given; a
        // failure only leaves acknowledgements delayed.
        unsafe {
            libc::setsockopt(
                self.io.inner().as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_QUICKACK,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
    }
}

impl hyper::rt::Read for QuickAck {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if r.is_ready() {
            self.waiting = false;
            if matches!(r, Poll::Ready(Ok(()))) {
                self.arm();
            }
            return r;
        }
        // A pooled connection with no request waits here too: the pool
        // lets it go after its idle time, well before the limit.
        let limit = self.limit;
        if !self.waiting {
            self.waiting = true;
            let deadline = tokio::time::Instant::now() + limit;
            self.timer.as_mut().reset(deadline);
        }
        match self.timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.waiting = false;
                let why = format!("no data for {limit:?}");
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, why)))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl hyper::rt::Write for QuickAck {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl Connection for QuickAck {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

/// Opens [`QuickAck`] connections (`TCP_NODELAY` too), each within
/// `timeout`, whose reads wait at most `read`.
#[derive(Clone)]
pub struct Connector {
    timeout: Duration,
    read: Duration,
}

impl tower_service::Service<Uri> for Connector {
    type Response = QuickAck;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<QuickAck>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let (timeout, read) = (self.timeout, self.read);
        Box::pin(async move {
            if uri.scheme_str() != Some("http") {
                return Err(io::Error::other("only http:// goes through this client"));
            }
            let host = uri
                .host()
                .ok_or_else(|| io::Error::other("no host in the URL"))?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let port = uri.port_u16().unwrap_or(80);
            let tcp = tokio::time::timeout(timeout, TcpStream::connect((host.as_str(), port)))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
            tcp.set_nodelay(true)?;
            Ok(QuickAck {
                io: TokioIo::new(tcp),
                limit: read,
                timer: Box::pin(tokio::time::sleep(read)),
                waiting: false,
            })
        })
    }
}

/// OpenDAL's HTTP transport over [`QuickAck`] connections.
#[derive(Clone)]
pub struct Plain {
    client: Client<Connector, Full<Bytes>>,
}

impl Plain {
    /// Connections open within `connect`, a read waits at most `read`,
    /// and a connection is kept `idle` between requests. No proxy is asked
    /// (the server is on this machine) and no redirect followed (S3 answers
    /// none that a client should follow).
    pub fn new(connect: Duration, read: Duration, idle: Duration) -> Self {
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(idle)
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .build(Connector {
                timeout: connect,
                read,
            });
        Plain { client }
    }
}

/// A transport failure (no answer, a reset connection): worth trying again.
fn transport(
    what: &'static str,
    e: impl std::error::Error + Send + Sync + 'static,
) -> opendal::Error {
    opendal::Error::new(ErrorKind::Unexpected, what)
        .set_temporary()
        .set_source(e)
}

impl HttpTransport for Plain {
    async fn fetch(&self, req: Request<Buffer>) -> opendal::Result<Response<HttpBody>> {
        let uri = req.uri().clone();
        let is_head = req.method() == http::Method::HEAD;
        let (parts, body) = req.into_parts();
        let req = Request::from_parts(parts, Full::new(body.to_bytes()));
        let resp = self
            .client
            .request(req)
            .await
            .map_err(|e| transport("send http request", e))?;
        let length = if is_head || parse_content_encoding(resp.headers())?.is_some() {
            None
        } else {
            parse_content_length(resp.headers())?
        };
        let (mut parts, body) = resp.into_parts();
        parts.extensions.insert(uri);
        let stream = BodyDataStream::new(body)
            .try_filter(|b| std::future::ready(!b.is_empty()))
            .map_ok(Buffer::from)
            .map_err(|e| transport("read data from http response", e));
        Ok(Response::from_parts(
            parts,
            HttpBody::new(SyncStream(std::sync::Mutex::new(Box::pin(stream))), length),
        ))
    }
}

/// A body stream made `Sync` (OpenDAL asks it; hyper's is not), polled by
/// one reader at a time.
struct SyncStream<S>(std::sync::Mutex<Pin<Box<S>>>);

impl<S: futures::Stream> futures::Stream for SyncStream<S> {
    type Item = S::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        s.as_mut().poll_next(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::sync::Arc;
    use std::time::Instant;

    /// Serve `stream` as a server that writes each answer's head, then its
    /// body a moment later, with Nagle on (as s3s-fs does); count the
    /// requests answered after the first on their connection in `reused`.
    fn serve(mut s: std::net::TcpStream, reused: &AtomicUsize) {
        let mut buf = [0u8; 4096];
        let mut pending: Vec<u8> = Vec::new();
        for n in 0.. {
            while !pending.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(k) => pending.extend_from_slice(&buf[..k]),
                }
            }
            let end = pending.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
            pending.drain(..end + 4);
            let head = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n";
            if s.write_all(head).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(3));
            if s.write_all(b"hello").is_err() {
                return;
            }
            if n > 0 {
                reused.fetch_add(1, SeqCst);
            }
        }
    }

    /// On a kept-alive connection, such a server's body waits for the
    /// head's acknowledgement, which Linux would delay 40 ms. None of the
    /// answers waits that long here (one may: a loaded machine); most come
    /// on a reused connection, where the delay would be.
    #[test]
    fn small_answers_on_a_kept_alive_connection_are_not_held_back() {
        const N: usize = 12;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let reused = Arc::new(AtomicUsize::new(0));
        {
            let reused = reused.clone();
            // Left blocked in accept when the test ends.
            std::thread::spawn(move || {
                for s in listener.incoming().flatten() {
                    let reused = reused.clone();
                    std::thread::spawn(move || serve(s, &reused));
                }
            });
        }
        let plain = Plain::new(
            Duration::from_secs(5),
            Duration::from_secs(5),
            Duration::from_secs(30),
        );
        let uri: Uri = format!("http://127.0.0.1:{port}/o").parse().unwrap();
        let mut late = Vec::new();
        for _ in 0..N {
            let t = Instant::now();
            let body = crate::backend::runtime::run({
                let (plain, uri) = (plain.clone(), uri.clone());
                async move {
                    let req = Request::get(uri).body(Buffer::new()).unwrap();
                    let fetch = async move {
                        let mut body = plain.fetch(req).await.unwrap().into_body();
                        body.to_buffer().await.unwrap()
                    };
                    tokio::time::timeout(Duration::from_secs(10), fetch).await
                }
            })
            .unwrap()
            .expect("an answer within 10 s");
            assert_eq!(body.to_bytes(), &b"hello"[..]);
            let took = t.elapsed();
            if took >= Duration::from_millis(35) {
                late.push(took);
            }
        }
        assert!(late.len() <= 1, "answers held back: {late:?}");
        assert!(
            reused.load(SeqCst) >= N / 2,
            "only {} of {N} answers came on a kept-alive connection",
            reused.load(SeqCst)
        );
    }

    /// A server that answers nothing: the read fails after its limit,
    /// named, rather than wait for the request's whole deadline.
    #[test]
    fn a_read_that_waits_past_its_limit_fails() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let held = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            std::thread::sleep(Duration::from_secs(3));
            drop(s);
        });
        let plain = Plain::new(
            Duration::from_secs(5),
            Duration::from_millis(300),
            Duration::from_secs(30),
        );
        let uri: Uri = format!("http://127.0.0.1:{port}/o").parse().unwrap();
        let t = Instant::now();
        let got = crate::backend::runtime::run(async move {
            let req = Request::get(uri).body(Buffer::new()).unwrap();
            tokio::time::timeout(Duration::from_secs(2), plain.fetch(req)).await
        })
        .unwrap()
        .expect("the read's own limit comes first");
        let Err(e) = got else {
            panic!("an answer from a server that sends nothing");
        };
        assert!(e.is_temporary(), "{e}");
        let chain = format!("{e:?}");
        assert!(chain.contains("no data for"), "{chain}");
        assert!(t.elapsed() < Duration::from_secs(2));
        held.join().unwrap();
    }
}

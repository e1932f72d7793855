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

/// A TCP connection that acknowledges what it reads at once.
pub struct QuickAck(TokioIo<TcpStream>);

impl QuickAck {
    /// Acknowledge at once from now on (until the kernel's next guess).
    fn arm(&self) {
        let one: libc::c_int = 1;
        // SAFETY: a valid descriptor and a c_int of the size given; a
        // failure only leaves acknowledgements delayed.
        unsafe {
            libc::setsockopt(
                self.0.inner().as_raw_fd(),
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
        let r = Pin::new(&mut self.0).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) {
            self.arm();
        }
        r
    }
}

impl hyper::rt::Write for QuickAck {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl Connection for QuickAck {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

/// Opens [`QuickAck`] connections (`TCP_NODELAY` too), each within a time.
#[derive(Clone)]
pub struct Connector {
    timeout: Duration,
}

impl tower_service::Service<Uri> for Connector {
    type Response = QuickAck;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<QuickAck>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let timeout = self.timeout;
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
            Ok(QuickAck(TokioIo::new(tcp)))
        })
    }
}

/// OpenDAL's HTTP transport over [`QuickAck`] connections.
#[derive(Clone)]
pub struct Plain {
    client: Client<Connector, Full<Bytes>>,
}

impl Plain {
    /// Connections open within `connect`, kept `idle` between requests.
    pub fn new(connect: Duration, idle: Duration) -> Self {
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(idle)
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .build(Connector { timeout: connect });
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
    use std::time::Instant;

    /// Answers a server sends head first, then body a moment later, with
    /// Nagle on (as s3s-fs does): on a kept-alive connection the body waits
    /// for the head's acknowledgement, which Linux would delay 40 ms. None
    /// of them waits that long here (one may: a loaded machine).
    #[test]
    fn small_answers_on_a_kept_alive_connection_are_not_held_back() {
        const N: usize = 12;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4096];
            let mut pending: Vec<u8> = Vec::new();
            for _ in 0..N {
                while !pending.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = s.read(&mut buf).unwrap();
                    assert!(n > 0, "the client closed the connection");
                    pending.extend_from_slice(&buf[..n]);
                }
                let end = pending.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
                pending.drain(..end + 4);
                s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n")
                    .unwrap();
                std::thread::sleep(Duration::from_millis(3));
                s.write_all(b"hello").unwrap();
            }
        });
        let plain = Plain::new(Duration::from_secs(5), Duration::from_secs(30));
        let uri: Uri = format!("http://127.0.0.1:{port}/o").parse().unwrap();
        let mut late = Vec::new();
        for _ in 0..N {
            let t = Instant::now();
            let body = crate::backend::runtime::run({
                let (plain, uri) = (plain.clone(), uri.clone());
                async move {
                    let req = Request::get(uri).body(Buffer::new()).unwrap();
                    let mut body = plain.fetch(req).await.unwrap().into_body();
                    body.to_buffer().await.unwrap()
                }
            })
            .unwrap();
            assert_eq!(body.to_bytes(), &b"hello"[..]);
            let took = t.elapsed();
            if took >= Duration::from_millis(35) {
                late.push(took);
            }
        }
        server.join().unwrap();
        assert!(late.len() <= 1, "answers held back: {late:?}");
    }
}

//! A repository in a bucket of S3-compatible object storage (AWS S3,
//! DigitalOcean Spaces, Backblaze B2, Garage, Ceph RGW, MinIO and the like),
//! through Apache OpenDAL's S3 service.
//!
//! Objects are the backend's paths ([`super::object_path`]) below the
//! location's prefix, addressed path-style (`https://HOST/BUCKET/KEY`: what
//! every S3-compatible server accepts). Each object is one `PutObject`:
//! S3 makes it visible whole or not at all, so no temporary name and no
//! rename are needed, and a killed upload leaves nothing behind. Uploads
//! carry `Content-MD5`, so the server refuses bytes damaged on the way.
//!
//! # Requests
//!
//! - `get`: one ranged `GET` of at most the type's size limit (no `HEAD`
//!   first); an object larger than the limit is refused having read only
//!   the limit's worth.
//! - `get_range`: one ranged `GET`; a shorter answer is `Corrupt`.
//! - `list`: `ListObjectsV2` of the type's prefix (one request per 1000
//!   objects), with sizes and `Last-Modified` times (locks judge staleness
//!   by the storage's clock).
//! - `put` of the config: `If-None-Match: *`, so two `init`s racing on one
//!   bucket cannot both succeed; a server that does not implement it (an
//!   answer 501) gets a plain `PUT` after the check `create` made.
//! - `create`: a missing bucket is created (`CreateBucket`, signed here:
//!   OpenDAL does not manage buckets); a prefix holding anything is refused.
//!
//! # Errors and retries
//!
//! A 404 is `NotFound`; a missing bucket is `InvalidInput` naming it;
//! anything else is `Io` on `s3:ENDPOINT/BUCKET/PREFIX/KEY` (never a
//! credential), the S3 error code and message as its text. Connection
//! failures, timeouts, 5xx answers, `SlowDown`, 429 and `BadDigest` are
//! tried again ([`super::retry`]). Requests in flight are bounded by the
//! `connections` given at construction.
//!
//! # Credentials
//!
//! `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`, or
//! a profile (`AWS_PROFILE`, `~/.aws/credentials` and `~/.aws/config`).
//! The instance metadata service is never asked (it is a network request
//! to an address outside the repository's). The region is
//! `AWS_DEFAULT_REGION` (or `AWS_REGION`), else `us-east-1`.

use super::location::S3Location;
use super::retry::{self, Outcome};
use super::{
    check_name, ends_before, not_found, object_path, runtime, valid_name, Backend, FileType,
    ObjectInfo, Parts,
};
use crate::error::{Error, Result};
use opendal::{ErrorKind as Kind, Operator};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime};

/// Waiting for a connection to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Waiting for the next bytes of an answer.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// A whole request, plus a second per this many bytes it moves (a 16 MiB
/// pack may take 60 + 256 s: a 64 KiB/s uplink).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const BYTES_PER_SECOND: u64 = 64 << 10;

/// How many requests may be in flight at once.
pub(crate) struct Limit {
    free: Mutex<usize>,
    freed: Condvar,
}

impl Limit {
    pub(crate) fn new(n: usize) -> Self {
        Limit {
            free: Mutex::new(n.max(1)),
            freed: Condvar::new(),
        }
    }

    pub(crate) fn acquire(&self) -> Slot<'_> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(|e| e.into_inner());
        }
        *free -= 1;
        Slot(self)
    }
}

/// A request's place in the [`Limit`], given back on drop.
pub(crate) struct Slot<'a>(&'a Limit);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.0.freed.notify_one();
    }
}

/// What the backend was asked to reach, and how.
#[derive(Clone)]
pub struct S3Options {
    /// Requests in flight at once.
    pub connections: usize,
    pub retry: retry::Policy,
    /// An access key and its secret, instead of the environment's (for
    /// library users; the command line reads the environment).
    pub credentials: Option<(String, String)>,
}

/// The secret never reaches a log through `{:?}`.
impl std::fmt::Debug for S3Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Options")
            .field("connections", &self.connections)
            .field("retry", &self.retry)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|(key, _)| (key, "<secret>")),
            )
            .finish()
    }
}

/// A client made in this process (see [`runtime`]).
struct Conn {
    generation: u32,
    op: Operator,
    http: Fetch,
}

/// The HTTP client behind OpenDAL and our own requests: reqwest's over
/// TLS, [`super::http::Plain`] on a loopback `http://` endpoint.
#[derive(Clone)]
enum Fetch {
    Tls(opendal_http_transport_reqwest::ReqwestTransport),
    Plain(super::http::Plain),
}

impl opendal::HttpTransport for Fetch {
    async fn fetch(
        &self,
        req: http::Request<opendal::Buffer>,
    ) -> opendal::Result<http::Response<opendal::HttpBody>> {
        match self {
            Fetch::Tls(t) => t.fetch(req).await,
            Fetch::Plain(p) => p.fetch(req).await,
        }
    }
}

impl Fetch {
    /// Send a request (a body of `body`); its status, and its body read
    /// until it ends or passes `max` bytes (by at most one piece).
    async fn send(
        &self,
        method: http::Method,
        uri: &http::Uri,
        headers: &http::HeaderMap,
        body: Vec<u8>,
        max: u64,
    ) -> opendal::Result<(http::StatusCode, Vec<u8>)> {
        use opendal::raw::oio::ReadStream;
        use opendal::HttpTransport;
        let mut req = http::Request::new(opendal::Buffer::from(body));
        *req.method_mut() = method;
        *req.uri_mut() = uri.clone();
        *req.headers_mut() = headers.clone();
        let resp = self.fetch(req).await?;
        let status = resp.status();
        let mut body = resp.into_body();
        let mut out = Vec::new();
        loop {
            let chunk = body.read().await?;
            if chunk.is_empty() {
                break;
            }
            out.extend_from_slice(&chunk.to_bytes());
            if out.len() as u64 > max {
                break;
            }
        }
        Ok((status, out))
    }
}

/// A bucket (and prefix) as a repository.
pub struct S3Backend {
    loc: S3Location,
    region: String,
    credentials: Option<(String, String)>,
    policy: retry::Policy,
    limit: Limit,
    conn: Mutex<Option<Arc<Conn>>>,
    /// The server refused `If-None-Match` once: plain `PUT`s from then on.
    no_conditional: AtomicBool,
    settle: Duration,
}

/// How a request failed, before it becomes the library's error.
enum Fail {
    Dal(opendal::Error),
    Rewind(Error),
}

impl From<opendal::Error> for Fail {
    fn from(e: opendal::Error) -> Self {
        Fail::Dal(e)
    }
}

/// The S3 error code and message in an OpenDAL error's text, or its text.
fn describe(e: &opendal::Error) -> String {
    let msg = e.message();
    let field = |name: &str| -> Option<String> {
        let start = msg.find(&format!("{name}: \""))? + name.len() + 3;
        let end = msg[start..].find('"')? + start;
        Some(msg[start..end].to_string())
    };
    let mut text = match (field("code"), field("message")) {
        (Some(code), Some(m)) if !code.is_empty() => format!("{code}: {m}"),
        (Some(code), None) if !code.is_empty() => code,
        _ => msg.to_string(),
    };
    // The innermost cause (a refused connection, a reset), without URLs.
    let mut source = std::error::Error::source(e);
    let mut last = None;
    while let Some(s) = source {
        last = Some(s.to_string());
        source = s.source();
    }
    if let Some(cause) = last {
        if !cause.contains("://") && !text.contains(&cause) {
            text = format!("{text}: {cause}");
        }
    }
    if text.len() > 400 {
        let mut cut = 400;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// A whole object, in one presigned GET, reading at most `max + 1` bytes.
async fn get_bounded(
    op: &Operator,
    http: &Fetch,
    rel: &str,
    max: u64,
) -> std::result::Result<Vec<u8>, Fail> {
    let req = op.presign_read(rel, Duration::from_secs(3600)).await?;
    let (status, out) = http
        .send(
            req.method().clone(),
            req.uri(),
            req.header(),
            Vec::new(),
            max,
        )
        .await?;
    if status.is_success() {
        return Ok(out);
    }
    Err(Fail::Dal(http_error(status, &out)))
}

/// An S3 error answer as OpenDAL classifies it.
fn http_error(status: http::StatusCode, body: &[u8]) -> opendal::Error {
    let text = String::from_utf8_lossy(body);
    let tag = |name: &str| -> Option<String> {
        let start = text.find(&format!("<{name}>"))? + name.len() + 2;
        let end = text[start..].find(&format!("</{name}>"))? + start;
        Some(text[start..end].to_string())
    };
    let code = tag("Code").unwrap_or_default();
    let message = tag("Message").unwrap_or_default();
    let kind = match (status.as_u16(), code.as_str()) {
        (_, "NoSuchBucket") => Kind::ConfigInvalid,
        (404, _) => Kind::NotFound,
        (403, _) => Kind::PermissionDenied,
        (429, _) | (_, "SlowDown") => Kind::RateLimited,
        _ => Kind::Unexpected,
    };
    let text = match (code.is_empty(), message.is_empty()) {
        (true, _) => format!("HTTP {status}"),
        (false, true) => code.clone(),
        (false, false) => format!("{code}: {message}"),
    };
    let transient = status.is_server_error()
        || status.as_u16() == 429
        || code == "SlowDown"
        || code == "RequestTimeout";
    let e = opendal::Error::new(kind, text);
    if transient {
        e.set_temporary()
    } else {
        e
    }
}

fn is_transient(e: &opendal::Error) -> bool {
    e.is_temporary()
        || e.kind() == Kind::RateLimited
        || e.message().contains("\"BadDigest\"")
        || e.message().contains("\"SlowDown\"")
}

fn no_such_bucket(e: &opendal::Error) -> bool {
    e.kind() == Kind::ConfigInvalid && e.message().contains("NoSuchBucket")
}

/// A request's time limit, by the bytes it moves.
fn deadline(bytes: u64) -> Duration {
    REQUEST_TIMEOUT + Duration::from_secs(bytes / BYTES_PER_SECOND)
}

fn region() -> String {
    ["AWS_DEFAULT_REGION", "AWS_REGION"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|r| !r.trim().is_empty()))
        .unwrap_or_else(|| "us-east-1".into())
}

/// Where credentials are looked for: the environment and the profile files;
/// never the instance metadata service.
fn credential_chain(
    given: &Option<(String, String)>,
) -> reqsign_core::ProvideCredentialChain<reqsign_aws_v4::Credential> {
    if let Some((key, secret)) = given {
        return reqsign_core::ProvideCredentialChain::new()
            .push(reqsign_aws_v4::StaticCredentialProvider::new(key, secret));
    }
    let default = reqsign_aws_v4::DefaultCredentialProvider::builder()
        .no_imds()
        .build();
    reqsign_core::ProvideCredentialChain::new().push(default)
}

fn signing_context() -> reqsign_core::Context {
    reqsign_core::Context::new()
        .with_file_read(reqsign_file_read_tokio::TokioFileRead)
        .with_env(reqsign_core::OsEnv)
}

impl S3Backend {
    /// The bucket `loc` names (nothing is contacted yet).
    pub fn new(loc: S3Location, opts: &S3Options) -> Self {
        S3Backend {
            loc,
            region: region(),
            credentials: opts.credentials.clone(),
            policy: opts.retry,
            limit: Limit::new(opts.connections),
            conn: Mutex::new(None),
            no_conditional: AtomicBool::new(false),
            settle: super::remote_settle(),
        }
    }

    /// An object's key below the bucket, for messages.
    fn display_path(&self, rel: &str) -> String {
        format!("{}/{rel}", self.loc)
    }

    /// The library's error for a failed request on `rel`.
    fn error(&self, rel: &str, t: FileType, name: &str, f: Fail, tries: u32) -> Error {
        let e = match f {
            Fail::Rewind(e) => return e,
            Fail::Dal(e) => e,
        };
        if e.kind() == Kind::NotFound {
            // A `HEAD` has no body to say NoSuchBucket: a missing config
            // may be a missing bucket, which a listing tells apart.
            if t == FileType::Config {
                if let Err(Fail::Dal(e)) = self.first_object() {
                    if no_such_bucket(&e) {
                        return self.missing_bucket();
                    }
                }
            }
            return not_found(t, name);
        }
        if no_such_bucket(&e) {
            return self.missing_bucket();
        }
        let kind = match e.kind() {
            Kind::PermissionDenied => std::io::ErrorKind::PermissionDenied,
            _ => std::io::ErrorKind::Other,
        };
        let mut text = describe(&e);
        if kind == std::io::ErrorKind::PermissionDenied {
            text = format!("access denied ({text}): check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY or AWS_PROFILE, and the key's rights on the bucket");
        }
        if tries > 1 {
            text = format!("{text} (gave up after {tries} tries)");
        }
        Error::io(self.display_path(rel), std::io::Error::new(kind, text))
    }

    fn missing_bucket(&self) -> Error {
        Error::InvalidInput(format!(
            "bucket {} does not exist at {} (`rewind init` creates it)",
            self.loc.bucket,
            self.loc.endpoint()
        ))
    }

    /// The client of this process, made at the first request.
    fn conn(&self) -> Result<Arc<Conn>> {
        let generation = runtime::generation();
        let mut slot = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = slot.as_ref().filter(|c| c.generation == generation) {
            return Ok(c.clone());
        }
        if let Some(parent) = slot.take() {
            // A parent's client (before `fork`): dropping it would wake its
            // connections' tasks on the parent's runtime, whose threads do
            // not exist here (one may have held a lock of it at the fork).
            // Leave it alone; its sockets close when the process ends.
            std::mem::forget(parent);
        }
        let c = Arc::new(self.connect(generation)?);
        *slot = Some(c.clone());
        Ok(c)
    }

    fn connect(&self, generation: u32) -> Result<Conn> {
        runtime::get()?;
        let found = runtime::block_on(async {
            use reqsign_core::ProvideCredential;
            credential_chain(&self.credentials)
                .provide_credential(&signing_context())
                .await
        })?;
        match found {
            Ok(Some(_)) => {}
            Ok(None) => {
                return Err(Error::InvalidInput(format!(
                    "no S3 credentials for {}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE (with ~/.aws/credentials)",
                    self.loc
                )))
            }
            Err(e) => {
                return Err(Error::InvalidInput(format!(
                    "reading S3 credentials for {}: {e}",
                    self.loc
                )))
            }
        }
        let idle = Duration::from_secs(30);
        let http = if self.loc.scheme == "http" {
            Fetch::Plain(super::http::Plain::new(CONNECT_TIMEOUT, READ_TIMEOUT, idle))
        } else {
            let http = reqwest::Client::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .read_timeout(READ_TIMEOUT)
                .pool_idle_timeout(idle)
                .tcp_nodelay(true)
                .build()
                .map_err(|e| {
                    Error::io(
                        self.loc.to_string(),
                        std::io::Error::other(format!("starting the HTTP client: {e}")),
                    )
                })?;
            Fetch::Tls(opendal_http_transport_reqwest::ReqwestTransport::new(http))
        };
        let builder = opendal::services::S3::default()
            .endpoint(&self.loc.endpoint())
            .bucket(&self.loc.bucket)
            .root(&format!("/{}", self.loc.prefix))
            .region(&self.region)
            .disable_ec2_metadata()
            .checksum_algorithm("md5")
            .credential_provider_chain(credential_chain(&self.credentials));
        let op = Operator::new(builder)
            .map_err(|e| Error::InvalidInput(format!("{}: {}", self.loc, describe(&e))))?;
        let transport = opendal::HttpTransporter::new(http.clone());
        let op = {
            let ctx = op.base_context().with_http_transport(transport);
            op.with_context(ctx)
        };
        Ok(Conn {
            generation,
            op,
            http,
        })
    }

    /// `len` bytes from `offset`, as the response brought them.
    fn range(&self, t: FileType, name: &str, offset: u64, len: usize) -> Result<opendal::Buffer> {
        check_name(t, name)?;
        let rel = object_path(t, name);
        let short = || ends_before(t, name, offset.saturating_add(len as u64));
        let end = offset.checked_add(len as u64).ok_or_else(short)?;
        if len == 0 {
            return Ok(opendal::Buffer::new());
        }
        let (r, tries) = self.request(len as u64, |op| {
            let rel = rel.clone();
            async move {
                match op.read_with(&rel).range(offset..end).await {
                    Ok(buf) => Ok(Some(buf)),
                    Err(e) if e.kind() == Kind::RangeNotSatisfied => Ok(None),
                    Err(e) => Err(Fail::Dal(e)),
                }
            }
        });
        match r.map_err(|f| self.error(&rel, t, name, f, tries))? {
            Some(data) if data.len() == len => Ok(data),
            _ => Err(short()),
        }
    }

    /// Run one request (tried again while it fails transiently), bounded by
    /// the limit and a deadline for `bytes`.
    fn request<T, F, Fut>(&self, bytes: u64, f: F) -> (std::result::Result<T, Fail>, u32)
    where
        F: Fn(Operator) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, Fail>> + Send + 'static,
        T: Send + 'static,
    {
        let _slot = self.limit.acquire();
        retry::run(&self.policy, || {
            let conn = match self.conn() {
                Ok(c) => c,
                Err(e) => return Outcome::Failed(Fail::Rewind(e)),
            };
            let limit = deadline(bytes);
            let fut = f(conn.op.clone());
            let res = runtime::run(async move {
                match tokio::time::timeout(limit, fut).await {
                    Ok(r) => r,
                    Err(_) => Err(Fail::Dal(
                        opendal::Error::new(
                            Kind::Unexpected,
                            format!("no answer within {} s", limit.as_secs()),
                        )
                        .set_temporary(),
                    )),
                }
            });
            match res {
                Err(e) => Outcome::Failed(Fail::Rewind(e)),
                Ok(Ok(v)) => Outcome::Done(v),
                Ok(Err(Fail::Dal(e))) if is_transient(&e) => Outcome::Transient(Fail::Dal(e)),
                Ok(Err(e)) => Outcome::Failed(e),
            }
        })
    }

    /// The first object under the prefix, if any (`Err` with a missing bucket).
    fn first_object(&self) -> std::result::Result<Option<String>, Fail> {
        let (r, _) = self.request(0, |op| async move {
            use futures::TryStreamExt;
            let mut lister = op.lister_with("").recursive(true).limit(2).await?;
            while let Some(entry) = lister.try_next().await? {
                if entry.metadata().is_file() {
                    return Ok(Some(entry.path().to_string()));
                }
            }
            Ok(None)
        });
        r
    }

    /// `CreateBucket`, signed with the same credentials and region.
    fn create_bucket(&self) -> Result<()> {
        let conn = self.conn()?;
        let url = format!("{}/{}", self.loc.endpoint(), self.loc.bucket);
        let body = if self.region == "us-east-1" {
            Vec::new()
        } else {
            format!(
                "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>",
                self.region
            )
            .into_bytes()
        };
        let region = self.region.clone();
        let given = self.credentials.clone();
        let http = conn.http.clone();
        let bucket = self.loc.to_string();
        let (r, tries) = self.request(0, move |_| {
            let (url, body, region, http) =
                (url.clone(), body.clone(), region.clone(), http.clone());
            let given = given.clone();
            async move {
                let fail = |text: String, transient: bool| {
                    let e = opendal::Error::new(Kind::Unexpected, text);
                    Fail::Dal(if transient { e.set_temporary() } else { e })
                };
                let req = http::Request::put(&url)
                    .header(
                        "x-amz-content-sha256",
                        reqsign_core::hash::hex_sha256(&body),
                    )
                    .header(http::header::CONTENT_LENGTH, body.len())
                    .body(())
                    .map_err(|e| fail(e.to_string(), false))?;
                let (mut parts, ()) = req.into_parts();
                let signer = reqsign_core::Signer::new(
                    signing_context(),
                    credential_chain(&given),
                    reqsign_aws_v4::RequestSigner::new("s3", &region),
                );
                signer
                    .sign(&mut parts, None)
                    .await
                    .map_err(|e| fail(format!("signing CreateBucket: {e}"), false))?;
                let (status, text) = http
                    .send(http::Method::PUT, &parts.uri, &parts.headers, body, 1 << 20)
                    .await
                    .map_err(|e| fail(describe(&e), true))?;
                let text = String::from_utf8_lossy(&text);
                if status.is_success() || text.contains("BucketAlreadyOwnedByYou") {
                    return Ok(());
                }
                let code = text
                    .split("<Code>")
                    .nth(1)
                    .and_then(|s| s.split("</Code>").next())
                    .unwrap_or("")
                    .to_string();
                Err(fail(
                    format!("CreateBucket answered {status} {code}"),
                    status.is_server_error() || status.as_u16() == 429,
                ))
            }
        });
        r.map_err(|f| match f {
            Fail::Dal(e) => Error::io(
                bucket.clone(),
                std::io::Error::other(format!(
                    "creating the bucket: {}{}",
                    describe(&e),
                    if tries > 1 {
                        format!(" (gave up after {tries} tries)")
                    } else {
                        String::new()
                    }
                )),
            ),
            Fail::Rewind(e) => e,
        })
    }

    /// An object's size and time. Times are whole seconds: a listing gives
    /// milliseconds, a `HEAD` only seconds, and both must agree (the index
    /// cache is keyed by them).
    fn info(name: &str, meta: &opendal::Metadata) -> ObjectInfo {
        let modified = meta.last_modified().map(SystemTime::from).and_then(|t| {
            let secs = t.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_secs();
            SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(secs))
        });
        ObjectInfo {
            name: name.to_string(),
            size: meta.content_length(),
            modified,
        }
    }

    fn put_object(
        &self,
        rel: &str,
        data: &[u8],
        conditional: bool,
    ) -> std::result::Result<(), (Fail, u32)> {
        let bytes = bytes::Bytes::copy_from_slice(data);
        let (r, tries) = self.request(data.len() as u64, |op| {
            let (rel, bytes) = (rel.to_string(), bytes.clone());
            async move {
                op.write_with(&rel, bytes)
                    .if_not_exists(conditional)
                    .await
                    .map(|_| ())
                    .map_err(Fail::Dal)
            }
        });
        r.map_err(|e| (e, tries))
    }
}

impl Backend for S3Backend {
    fn location(&self) -> String {
        self.loc.to_string()
    }

    fn create(&self) -> Result<()> {
        match self.first_object() {
            Ok(None) => Ok(()),
            Ok(Some(_)) => {
                let what = match self.stat(FileType::Config, "config") {
                    Ok(_) => "already holds a repository",
                    Err(Error::NotFound(_)) => {
                        "is not empty; a repository needs an empty bucket or prefix"
                    }
                    Err(e) => return Err(e),
                };
                Err(Error::InvalidInput(format!("{} {what}", self.loc)))
            }
            Err(Fail::Dal(e)) if no_such_bucket(&e) => self.create_bucket(),
            Err(f) => Err(self.error("", FileType::Config, "config", f, 1)),
        }
    }

    fn put(&self, t: FileType, name: &str, data: &[u8]) -> Result<()> {
        check_name(t, name)?;
        let rel = object_path(t, name);
        // Only the config is never replaced: the one write that must not
        // win a race with another `init`.
        let conditional = t == FileType::Config && !self.no_conditional.load(Ordering::Relaxed);
        match self.put_object(&rel, data, conditional) {
            Ok(()) => Ok(()),
            Err((Fail::Dal(e), _)) if conditional && e.kind() == Kind::ConditionNotMatch => {
                Err(Error::InvalidInput(format!(
                    "{} already holds a repository (another `rewind init` wrote its config meanwhile)",
                    self.loc
                )))
            }
            Err((Fail::Dal(e), _))
                if conditional && (e.message().contains("NotImplemented") || e.kind() == Kind::Unsupported) =>
            {
                self.no_conditional.store(true, Ordering::Relaxed);
                self.put_object(&rel, data, false)
                    .map_err(|(f, tries)| self.error(&rel, t, name, f, tries))
            }
            Err((f, tries)) => Err(self.error(&rel, t, name, f, tries)),
        }
    }

    fn get(&self, t: FileType, name: &str) -> Result<Vec<u8>> {
        check_name(t, name)?;
        let rel = object_path(t, name);
        let max = t.max_size();
        let http = self.conn()?.http.clone();
        // OpenDAL reads a whole object after a HEAD for its size: one GET
        // of our own (signed by OpenDAL) instead, read up to the limit.
        let (r, tries) = self.request(max.min(64 << 20), |op| {
            let (rel, http) = (rel.clone(), http.clone());
            async move { get_bounded(&op, &http, &rel, max).await }
        });
        let data = r.map_err(|f| self.error(&rel, t, name, f, tries))?;
        if data.len() as u64 > max {
            return Err(Error::corrupt(
                t.describe(name),
                format!("more than the {max} bytes a {t:?} object may hold"),
            ));
        }
        Ok(data)
    }

    fn get_range(&self, t: FileType, name: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        Ok(self.range(t, name, offset, len)?.to_vec())
    }

    fn get_range_parts(&self, t: FileType, name: &str, offset: u64, len: usize) -> Result<Parts> {
        Ok(self.range(t, name, offset, len)?.collect())
    }

    fn list(&self, t: FileType) -> Result<Vec<ObjectInfo>> {
        if t == FileType::Config {
            return match self.stat(t, "config") {
                Ok(info) => Ok(vec![info]),
                Err(Error::NotFound(_)) => Ok(Vec::new()),
                Err(e) => Err(e),
            };
        }
        let dir = format!("{}/", t.dir());
        let (r, tries) = self.request(0, |op| {
            let dir = dir.clone();
            async move { op.list_with(&dir).recursive(true).await.map_err(Fail::Dal) }
        });
        let entries = r.map_err(|f| self.error(&dir, t, "", f, tries))?;
        let mut out = Vec::new();
        for e in entries {
            let meta = e.metadata();
            let Some((parent, name)) = e.path().rsplit_once('/') else {
                continue;
            };
            // Only objects where `object_path` puts them, no larger than
            // a `get` accepts: list and get agree on what exists.
            if !meta.is_file() || !valid_name(t, name) || object_path(t, name) != e.path() {
                continue;
            }
            let _ = parent;
            if meta.content_length() > t.max_size() {
                continue;
            }
            out.push(Self::info(name, meta));
        }
        Ok(out)
    }

    fn stat(&self, t: FileType, name: &str) -> Result<ObjectInfo> {
        check_name(t, name)?;
        let rel = object_path(t, name);
        let (r, tries) = self.request(0, |op| {
            let rel = rel.clone();
            async move { op.stat(&rel).await.map_err(Fail::Dal) }
        });
        let meta = r.map_err(|f| self.error(&rel, t, name, f, tries))?;
        Ok(Self::info(name, &meta))
    }

    fn delete(&self, t: FileType, name: &str) -> Result<()> {
        check_name(t, name)?;
        let rel = object_path(t, name);
        let (r, tries) = self.request(0, |op| {
            let rel = rel.clone();
            async move {
                match op.delete(&rel).await {
                    Err(e) if e.kind() == Kind::NotFound => Ok(()),
                    other => other.map_err(Fail::Dal),
                }
            }
        });
        r.map_err(|f| self.error(&rel, t, name, f, tries))
    }

    fn is_local(&self) -> bool {
        false
    }

    fn settle(&self) -> Duration {
        self.settle
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_never_print_the_secret() {
        let opts = S3Options {
            connections: 4,
            retry: retry::Policy::default(),
            credentials: Some(("AKIDEXAMPLE".into(), "wJalrXUtnFEMI/K7MDENG".into())),
        };
        let shown = format!("{opts:?}");
        assert!(shown.contains("AKIDEXAMPLE"), "{shown}");
        assert!(!shown.contains("wJalrXUtnFEMI"), "{shown}");
    }
}

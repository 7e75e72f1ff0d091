//! HTTP(S) source: a byte stream that survives dropped connections, and
//! that a hostile or broken server cannot hold forever.
//!
//! - TLS is rustls (no OpenSSL), with the Mozilla roots or the CAs of
//!   `[http] ca_file`, and a client certificate for mutual TLS
//!   (`client_cert`, `client_key`).
//! - Redirects are followed by hand (at most [`MAX_REDIRECTS`]); one from
//!   https to http is refused.
//! - A dropped or stalled connection is resumed with `Range` from the last
//!   byte received, with `If-Range` (the first response's ETag, else its
//!   Last-Modified). A `206` must start where asked and agree on the total
//!   length and validator; a changed validator is [`FetchError::Changed`],
//!   which the caller answers by starting again from byte 0.
//! - Consecutive failures are bounded and backed off; 404 and other 4xx
//!   fail at once; 5xx is retried a bounded number of times.
//! - Time is bounded: the connect (DNS included) and each read by their
//!   timeouts, the whole download by `deadline_secs`, and a trickle by
//!   `min_rate_bytes` per `min_rate_window_secs` (too slow counts as a
//!   failed attempt).
//!
//! URLs in errors and logs are redacted ([`super::redact`]).

use std::io::{self, Read};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{redact, FetchError};
use crate::config::HttpSettings;

const BACKOFF_START: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(8);
/// Redirects followed per request.
pub const MAX_REDIRECTS: usize = 5;

/// What identifies the bundle the first response served.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Validator {
    ETag(String),
    LastModified(String),
}

impl Validator {
    fn of(resp: &ureq::Response) -> Option<Validator> {
        resp.header("ETag")
            .map(|v| Validator::ETag(v.to_string()))
            .or_else(|| {
                resp.header("Last-Modified")
                    .map(|v| Validator::LastModified(v.to_string()))
            })
    }

    /// The `If-Range` value.
    fn value(&self) -> &str {
        match self {
            Validator::ETag(v) | Validator::LastModified(v) => v,
        }
    }

    /// `Some(what)` when `resp` carries a different validator of our kind.
    fn differs(&self, resp: &ureq::Response) -> Option<String> {
        let (name, ours) = match self {
            Validator::ETag(v) => ("ETag", v),
            Validator::LastModified(v) => ("Last-Modified", v),
        };
        match resp.header(name) {
            Some(theirs) if theirs != ours => Some(format!("{name} {theirs}")),
            _ => None,
        }
    }

    fn describe(&self) -> String {
        match self {
            Validator::ETag(v) => format!("ETag {v}"),
            Validator::LastModified(v) => format!("Last-Modified {v}"),
        }
    }
}

/// Bytes seen in the current rate window.
struct Rate {
    min_bytes: u64,
    window: Duration,
    since: Instant,
    at_pos: u64,
}

/// Credentials for one origin (an OCI registry): the `Authorization`
/// value to send, and a way to get a new one when the server answers 401
/// (a registry token that expired during a long download).
pub trait Credentials: Send + Sync {
    /// The `Authorization` header value, if there is one yet.
    fn header(&self) -> Option<String>;
    /// Called on a 401 with the server's `WWW-Authenticate`; `Ok(true)`
    /// when there is a new header to try.
    fn renew(&self, challenge: Option<&str>) -> Result<bool, FetchError>;
}

/// What to fetch beyond a plain whole-body GET.
#[derive(Default, Clone)]
pub struct Request {
    /// First byte wanted.
    pub start: u64,
    /// One past the last byte wanted; `None` = to the end.
    pub end: Option<u64>,
    /// Sent only to the URL's own scheme, host and port, never to where a
    /// redirect leads (a CDN or object store).
    pub credentials: Option<Arc<dyn Credentials>>,
    /// Extra request headers (e.g. `Accept`).
    pub headers: Vec<(String, String)>,
}

pub struct HttpReader {
    agent: ureq::Agent,
    url: String,
    /// `url` as shown in errors and logs.
    shown: String,
    /// Where this reader started, and where it stops (exclusive).
    start: u64,
    end: Option<u64>,
    credentials: Option<Arc<dyn Credentials>>,
    headers: Vec<(String, String)>,
    /// Whether the current credentials were renewed without progress since.
    renewed: bool,
    pos: u64,
    /// The total length of the resource (not of the range).
    len: Option<u64>,
    validator: Option<Validator>,
    body: Option<Box<dyn Read + Send + Sync>>,
    /// Consecutive failures without progress.
    failures: u32,
    /// Consecutive rate windows below the minimum (progress does not reset
    /// these: a trickle makes progress).
    slow: u32,
    max_retries: u32,
    stall_secs: u64,
    started: Instant,
    deadline_secs: u64,
    rate: Option<Rate>,
}

fn backoff(failures: u32) -> Duration {
    BACKOFF_START
        .saturating_mul(1u32 << failures.min(6))
        .min(BACKOFF_MAX)
}

/// Resolves host names on a helper thread, so that a resolver that never
/// answers costs at most `timeout` (the standard resolver has none).
struct TimedResolver(Duration);

impl ureq::Resolver for TimedResolver {
    fn resolve(&self, netloc: &str) -> io::Result<Vec<SocketAddr>> {
        let (tx, rx) = std::sync::mpsc::channel();
        let name = netloc.to_string();
        std::thread::Builder::new()
            .name("resolve".into())
            .spawn(move || {
                let _ = tx.send(name.to_socket_addrs().map(|a| a.collect::<Vec<_>>()));
            })?;
        rx.recv_timeout(self.0).unwrap_or_else(|_| {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no DNS answer for {netloc} within {} s", self.0.as_secs()),
            ))
        })
    }
}

/// The rustls configuration: roots from `ca_file` (instead of the built-in
/// Mozilla roots) and a client certificate when configured.
pub fn tls_config(s: &HttpSettings) -> Result<Arc<rustls::ClientConfig>, FetchError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let tls = |key: &'static str, path: &std::path::Path, message: String| FetchError::Tls {
        key,
        path: path.to_path_buf(),
        message,
    };
    let mut roots = rustls::RootCertStore::empty();
    match &s.ca_file {
        Some(path) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect())
                .map_err(|e| tls("ca_file", path, e.to_string()))?;
            if certs.is_empty() {
                return Err(tls("ca_file", path, "holds no PEM certificate".into()));
            }
            for c in certs {
                roots
                    .add(c)
                    .map_err(|e| tls("ca_file", path, e.to_string()))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| FetchError::Protocol {
            url: String::new(),
            message: format!("TLS set-up: {e}"),
        })?
        .with_root_certificates(roots);
    let config = match (&s.client_cert, &s.client_key) {
        (None, None) => builder.with_no_client_auth(),
        (Some(cert), Some(key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .and_then(|it| it.collect())
                .map_err(|e| tls("client_cert", cert, e.to_string()))?;
            let k = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| tls("client_key", key, e.to_string()))?;
            builder
                .with_client_auth_cert(chain, k)
                .map_err(|e| tls("client_cert", cert, e.to_string()))?
        }
        (Some(p), None) | (None, Some(p)) => {
            return Err(tls(
                "client_cert",
                p,
                "client_cert and client_key must be set together".into(),
            ))
        }
    };
    Ok(Arc::new(config))
}

/// Where a redirect from `from` to `location` leads; refuses schemes but
/// http(s) and the step down from https to http.
pub fn redirect_target(from: &str, location: &str) -> Result<String, String> {
    let base = url::Url::parse(from).map_err(|e| format!("bad URL: {e}"))?;
    let next = base
        .join(location)
        .map_err(|e| format!("bad redirect Location {:?}: {e}", redact(location)))?;
    match (base.scheme(), next.scheme()) {
        ("https", "http") => Err(format!(
            "refusing the redirect from https to plain http ({})",
            redact(next.as_str())
        )),
        (_, "http" | "https") => Ok(next.to_string()),
        (_, other) => Err(format!("refusing a redirect to a {other}: URL")),
    }
}

/// The HTTP client every transport uses: rustls with `[http]`'s CAs and
/// client certificate, the connect (DNS included) and stall timeouts, no
/// automatic redirects (each caller follows them by hand, see
/// [`redirect_target`]).
pub fn agent(s: &HttpSettings) -> Result<ureq::Agent, FetchError> {
    let connect = Duration::from_secs(s.connect_timeout_secs);
    Ok(ureq::AgentBuilder::new()
        .timeout_connect(connect)
        .timeout_read(Duration::from_secs(s.stall_timeout_secs))
        .timeout_write(Duration::from_secs(s.stall_timeout_secs))
        .redirects(0)
        .resolver(TimedResolver(connect))
        .tls_config(tls_config(s)?)
        .user_agent(concat!("tandem/", env!("CARGO_PKG_VERSION")))
        .build())
}

/// Whether `a` and `b` have the same scheme, host and port (where
/// credentials may go).
pub fn same_origin(a: &str, b: &str) -> bool {
    match (url::Url::parse(a), url::Url::parse(b)) {
        (Ok(a), Ok(b)) => a.origin() == b.origin(),
        _ => false,
    }
}

impl HttpReader {
    /// The whole resource, from byte 0.
    pub fn open(url: &str, s: &HttpSettings) -> Result<HttpReader, FetchError> {
        Self::open_with(url, s, Request::default())
    }

    /// Bytes `req.start..req.end` of the resource, with `req`'s credentials
    /// and headers.
    pub fn open_with(url: &str, s: &HttpSettings, req: Request) -> Result<HttpReader, FetchError> {
        Self::with_agent(agent(s)?, url, s, req)
    }

    /// [`open_with`](Self::open_with) on an existing client.
    pub fn with_agent(
        agent: ureq::Agent,
        url: &str,
        s: &HttpSettings,
        req: Request,
    ) -> Result<HttpReader, FetchError> {
        if req.end.is_some_and(|e| e < req.start) {
            return Err(FetchError::Protocol {
                url: redact(url),
                message: format!("bad range {}..{:?}", req.start, req.end),
            });
        }
        let mut r = HttpReader {
            agent,
            url: url.to_string(),
            shown: redact(url),
            start: req.start,
            end: req.end,
            credentials: req.credentials,
            headers: req.headers,
            renewed: false,
            pos: req.start,
            len: None,
            validator: None,
            body: None,
            failures: 0,
            slow: 0,
            max_retries: s.retries,
            stall_secs: s.stall_timeout_secs,
            started: Instant::now(),
            deadline_secs: s.deadline_secs,
            rate: (s.min_rate_bytes > 0).then(|| Rate {
                min_bytes: s.min_rate_bytes.saturating_mul(s.min_rate_window_secs),
                window: Duration::from_secs(s.min_rate_window_secs),
                since: Instant::now(),
                at_pos: req.start,
            }),
        };
        if r.end == Some(r.start) {
            return Ok(r); // an empty range: nothing to ask for
        }
        loop {
            match r.connect() {
                Ok(()) => return Ok(r),
                Err(Attempt::Fatal(e)) => return Err(e),
                Err(Attempt::Retry(msg)) => r.failed(msg)?,
            }
        }
    }

    fn check_deadline(&self) -> Result<(), FetchError> {
        if self.deadline_secs > 0 && self.started.elapsed().as_secs() >= self.deadline_secs {
            return Err(FetchError::Deadline {
                url: self.shown.clone(),
                offset: self.pos,
                secs: self.deadline_secs,
            });
        }
        Ok(())
    }

    /// Records a failed attempt; errors out once the retries are used up.
    fn failed(&mut self, last: String) -> Result<(), FetchError> {
        self.failures += 1;
        if self.failures > self.max_retries {
            return Err(FetchError::GaveUp {
                url: self.shown.clone(),
                offset: self.pos,
                attempts: self.failures,
                last,
            });
        }
        self.check_deadline()?;
        let wait = backoff(self.failures - 1);
        tracing::warn!(url = %self.shown, offset = self.pos, attempt = self.failures, "{last}; retrying in {wait:?}");
        std::thread::sleep(wait);
        if let Some(r) = &mut self.rate {
            r.since = Instant::now();
            r.at_pos = self.pos;
        }
        Ok(())
    }

    /// Whether this request asks for a range (not the whole resource).
    fn ranged(&self) -> bool {
        self.pos > 0 || self.end.is_some()
    }

    /// One GET, following redirects by hand.
    fn get(&mut self) -> Result<ureq::Response, Attempt> {
        let mut url = self.url.clone();
        for _ in 0..=MAX_REDIRECTS {
            let mut req = self.agent.get(&url);
            for (k, v) in &self.headers {
                req = req.set(k, v);
            }
            if let Some(c) = &self.credentials {
                if same_origin(&url, &self.url) {
                    if let Some(h) = c.header() {
                        req = req.set("Authorization", &h);
                    }
                }
            }
            if self.ranged() {
                let last = self.end.map(|e| (e - 1).to_string()).unwrap_or_default();
                req = req.set("Range", &format!("bytes={}-{last}", self.pos));
                if let Some(v) = &self.validator {
                    req = req.set("If-Range", v.value());
                }
            }
            let resp = match req.call() {
                Ok(r) => r,
                Err(ureq::Error::Status(401, resp)) if self.credentials.is_some() => {
                    if self.renewed {
                        return Err(self.status_error(401));
                    }
                    let challenge = resp.header("WWW-Authenticate").map(str::to_string);
                    let c = self.credentials.clone().expect("checked");
                    match c.renew(challenge.as_deref()) {
                        Ok(true) => {
                            self.renewed = true;
                            return Err(Attempt::Retry("credentials renewed".into()));
                        }
                        Ok(false) => return Err(self.status_error(401)),
                        Err(e) => return Err(Attempt::Fatal(e)),
                    }
                }
                Err(ureq::Error::Status(code, _)) => return Err(self.status_error(code)),
                Err(ureq::Error::Transport(t)) => {
                    return Err(Attempt::Retry(redact(&t.to_string())))
                }
            };
            if !(300..400).contains(&resp.status()) {
                return Ok(resp);
            }
            let Some(location) = resp.header("Location") else {
                return Err(self.fatal(format!("HTTP {} without a Location", resp.status())));
            };
            url = redirect_target(&url, location).map_err(|m| self.fatal(m))?;
        }
        Err(self.fatal(format!("more than {MAX_REDIRECTS} redirects")))
    }

    fn connect(&mut self) -> Result<(), Attempt> {
        let resp = self.get()?;
        let status = resp.status();
        let length: Option<u64> = resp.header("Content-Length").and_then(|v| v.parse().ok());
        let mut skip = 0;
        let first = self.pos == self.start && self.validator.is_none() && self.len.is_none();
        if !self.ranged() {
            if status != 200 {
                return Err(self.fatal(format!("unexpected HTTP {status} for a plain GET")));
            }
            self.len = length;
            self.validator = Validator::of(&resp);
        } else if status == 206 {
            self.check_resumed(&resp)?;
            if first {
                self.validator = Validator::of(&resp);
            }
        } else if status == 200 && first {
            // A server that answers ranges with the whole body: skip to
            // where this range starts.
            self.len = length;
            self.validator = Validator::of(&resp);
            if self.pos > 0 {
                tracing::debug!(url = %self.shown, "server ignored Range; skipping {} bytes", self.pos);
            }
            skip = self.pos;
        } else if status == 200 {
            // The server ignored Range, or If-Range said the bundle changed.
            if let Some(v) = &self.validator {
                if let Some(new) = v.differs(&resp) {
                    return Err(self.changed(v.describe(), new));
                }
            }
            if let (Some(old), Some(new)) = (self.len, length) {
                if old != new {
                    return Err(self.changed(format!("{old} bytes"), format!("{new} bytes")));
                }
            }
            tracing::warn!(url = %self.shown, "server ignored Range; re-reading {} bytes", self.pos);
            skip = self.pos;
        } else {
            return Err(self.fatal(format!("unexpected HTTP {status} when resuming")));
        }
        // A range that asks past the end ends at the end.
        if let (Some(end), Some(len)) = (self.end, self.len) {
            if end > len {
                self.end = Some(len.max(self.pos));
            }
        }
        let mut body = resp.into_reader();
        if skip > 0 {
            let n = io::copy(&mut (&mut body).take(skip), &mut io::sink())
                .map_err(|e| Attempt::Retry(e.to_string()))?;
            if n < skip {
                return Err(Attempt::Retry("connection closed while skipping".into()));
            }
        }
        self.body = Some(body);
        Ok(())
    }

    /// A `206` must be the rest of the same bundle: start where asked, the
    /// same total length, the same validator.
    fn check_resumed(&mut self, resp: &ureq::Response) -> Result<(), Attempt> {
        let range = resp.header("Content-Range").unwrap_or_default();
        let parsed = parse_content_range(range);
        let Some((start, _end, total)) = parsed else {
            return Err(self.fatal(format!("a 206 with Content-Range {range:?}")));
        };
        if start != self.pos {
            return Err(self.fatal(format!(
                "asked to resume at byte {}, server sent range {range:?}",
                self.pos
            )));
        }
        if let (Some(len), Some(total)) = (self.len, total) {
            if len != total {
                return Err(self.changed(format!("{len} bytes"), format!("{total} bytes")));
            }
        }
        if let Some(v) = &self.validator {
            if let Some(new) = v.differs(resp) {
                return Err(self.changed(v.describe(), new));
            }
        }
        if self.len.is_none() {
            self.len = total;
        }
        Ok(())
    }

    /// The resource's total length, once a response has said it.
    pub fn total_len(&self) -> Option<u64> {
        self.len
    }

    fn changed(&self, old: String, new: String) -> Attempt {
        Attempt::Fatal(FetchError::Changed {
            url: self.shown.clone(),
            old,
            new,
        })
    }

    fn status_error(&self, code: u16) -> Attempt {
        match code {
            404 => Attempt::Fatal(FetchError::NotFound {
                url: self.shown.clone(),
            }),
            500..=599 => Attempt::Retry(format!("server answered HTTP {code}")),
            _ => Attempt::Fatal(FetchError::Status {
                url: self.shown.clone(),
                code,
                retried: self.failures,
            }),
        }
    }

    fn fatal(&self, message: String) -> Attempt {
        Attempt::Fatal(FetchError::Protocol {
            url: self.shown.clone(),
            message,
        })
    }

    /// At the end of each rate window: whether the transfer was slower
    /// than allowed (then why). Slow windows in a row count against the
    /// retries; a window at the minimum rate clears them.
    fn too_slow(&mut self) -> Option<String> {
        let r = self.rate.as_mut()?;
        if r.since.elapsed() < r.window {
            return None;
        }
        let got = self.pos - r.at_pos;
        let secs = r.since.elapsed().as_secs();
        r.since = Instant::now();
        r.at_pos = self.pos;
        if got >= r.min_bytes {
            self.slow = 0;
            return None;
        }
        self.slow += 1;
        Some(format!(
            "too slow: {got} bytes in {secs} s, below [http] min_rate_bytes = {} per second",
            r.min_bytes / r.window.as_secs().max(1)
        ))
    }
}

/// `bytes START-END/TOTAL` (TOTAL may be `*`).
fn parse_content_range(v: &str) -> Option<(u64, u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (span, total) = rest.split_once('/')?;
    let (a, b) = span.split_once('-')?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?, total))
}

enum Attempt {
    Retry(String),
    Fatal(FetchError),
}

impl Read for HttpReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let buf = match self.end {
            Some(end) if self.pos >= end => return Ok(0),
            Some(end) => {
                let n = buf
                    .len()
                    .min(usize::try_from(end - self.pos).unwrap_or(usize::MAX));
                &mut buf[..n]
            }
            None => buf,
        };
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            self.check_deadline().map_err(io::Error::other)?;
            if self.body.is_none() {
                match self.connect() {
                    Ok(()) => {}
                    Err(Attempt::Fatal(e)) => return Err(io::Error::other(e)),
                    Err(Attempt::Retry(msg)) => {
                        self.failed(msg).map_err(io::Error::other)?;
                        continue;
                    }
                }
            }
            let body = self.body.as_mut().expect("connected");
            let err = match body.read(buf) {
                Ok(0) if self.end.is_none() && self.len.is_none_or(|l| self.pos >= l) => {
                    return Ok(0)
                }
                Ok(0) => format!(
                    "connection closed at byte {} of {}",
                    self.pos,
                    self.end.or(self.len).unwrap_or(0)
                ),
                Ok(n) => {
                    self.pos += n as u64;
                    self.failures = 0;
                    self.renewed = false;
                    if let Some(why) = self.too_slow() {
                        // Keep what came; drop the connection, try again
                        // (perhaps another server behind the name).
                        self.body = None;
                        self.failures = self.slow.saturating_sub(1);
                        self.failed(why).map_err(io::Error::other)?;
                    }
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                    ) =>
                {
                    format!("stalled: no data for {} s", self.stall_secs)
                }
                Err(e) => e.to_string(),
            };
            self.body = None;
            self.failed(err).map_err(io::Error::other)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(0), Duration::from_millis(250));
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(10), BACKOFF_MAX);
    }

    #[test]
    fn content_ranges() {
        assert_eq!(parse_content_range("bytes 5-9/10"), Some((5, 9, Some(10))));
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, 9, None)));
        for bad in [
            "",
            "bytes 5-9",
            "items 5-9/10",
            "bytes a-9/10",
            "bytes 5-9/x",
        ] {
            assert_eq!(parse_content_range(bad), None, "{bad}");
        }
    }

    #[test]
    fn redirects() {
        let ok = |from: &str, to: &str| redirect_target(from, to).unwrap();
        assert_eq!(ok("http://h/a/b.tnd", "c.tnd"), "http://h/a/c.tnd");
        assert_eq!(
            ok("https://h/b.tnd", "https://cdn/x?sig=1"),
            "https://cdn/x?sig=1"
        );
        assert_eq!(ok("http://h/b.tnd", "https://cdn/x"), "https://cdn/x");
        let e = redirect_target("https://h/b.tnd", "http://cdn/x?sig=secret").unwrap_err();
        assert!(
            e.contains("https to plain http") && !e.contains("secret"),
            "{e}"
        );
        assert!(redirect_target("https://h/b", "file:///etc/shadow").is_err());
    }
}

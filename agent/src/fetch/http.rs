//! HTTP(S) source: a byte stream that survives dropped connections.
//!
//! TLS is rustls (no OpenSSL) with the Mozilla roots. A dropped or stalled
//! connection is resumed with a `Range` request from the last byte received
//! (with `If-Range` when the server gave an ETag); consecutive failures are
//! bounded and backed off; 404 and other 4xx fail at once; 5xx is retried a
//! bounded number of times, then fails.

use std::io::{self, Read};
use std::time::Duration;

use super::FetchError;
use crate::config::HttpSettings;

const BACKOFF_START: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(8);

pub struct HttpReader {
    agent: ureq::Agent,
    url: String,
    pos: u64,
    len: Option<u64>,
    etag: Option<String>,
    body: Option<Box<dyn Read + Send + Sync>>,
    /// Consecutive failures without progress.
    failures: u32,
    max_retries: u32,
    stall_secs: u64,
}

fn backoff(failures: u32) -> Duration {
    BACKOFF_START
        .saturating_mul(1u32 << failures.min(6))
        .min(BACKOFF_MAX)
}

impl HttpReader {
    pub fn open(url: &str, s: &HttpSettings) -> Result<HttpReader, FetchError> {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(s.connect_timeout_secs))
            .timeout_read(Duration::from_secs(s.stall_timeout_secs))
            .timeout_write(Duration::from_secs(s.stall_timeout_secs))
            .user_agent(concat!("tandem/", env!("CARGO_PKG_VERSION")))
            .build();
        let mut r = HttpReader {
            agent,
            url: url.to_string(),
            pos: 0,
            len: None,
            etag: None,
            body: None,
            failures: 0,
            max_retries: s.retries,
            stall_secs: s.stall_timeout_secs,
        };
        loop {
            match r.connect() {
                Ok(()) => return Ok(r),
                Err(Attempt::Fatal(e)) => return Err(e),
                Err(Attempt::Retry(msg)) => r.failed(msg)?,
            }
        }
    }

    /// Records a failed attempt; errors out once the retries are used up.
    fn failed(&mut self, last: String) -> Result<(), FetchError> {
        self.failures += 1;
        if self.failures > self.max_retries {
            return Err(FetchError::GaveUp {
                url: self.url.clone(),
                offset: self.pos,
                attempts: self.failures,
                last,
            });
        }
        let wait = backoff(self.failures - 1);
        tracing::warn!(url = %self.url, offset = self.pos, attempt = self.failures, "{last}; retrying in {wait:?}");
        std::thread::sleep(wait);
        Ok(())
    }

    fn connect(&mut self) -> Result<(), Attempt> {
        let mut req = self.agent.get(&self.url);
        if self.pos > 0 {
            req = req.set("Range", &format!("bytes={}-", self.pos));
            if let Some(tag) = &self.etag {
                req = req.set("If-Range", tag);
            }
        }
        let resp = match req.call() {
            Ok(r) => r,
            Err(ureq::Error::Status(code, _)) => return Err(self.status_error(code)),
            Err(ureq::Error::Transport(t)) => return Err(Attempt::Retry(t.to_string())),
        };
        let etag = resp.header("ETag").map(str::to_string);
        let status = resp.status();
        let length: Option<u64> = resp.header("Content-Length").and_then(|v| v.parse().ok());
        let mut skip = 0;
        if self.pos == 0 {
            if status != 200 {
                return Err(self.fatal(format!("unexpected HTTP {status} for a plain GET")));
            }
            self.len = length;
            self.etag = etag;
        } else if status == 206 {
            let range = resp.header("Content-Range").unwrap_or_default();
            if !range.starts_with(&format!("bytes {}-", self.pos)) {
                return Err(self.fatal(format!(
                    "asked to resume at byte {}, server sent range {range:?}",
                    self.pos
                )));
            }
        } else if status == 200 {
            if let (Some(old), Some(new)) = (&self.etag, &etag) {
                if old != new {
                    return Err(Attempt::Fatal(FetchError::Changed {
                        url: self.url.clone(),
                        old: old.clone(),
                        new: new.clone(),
                    }));
                }
            }
            // No range support: read again from the start, discarding.
            tracing::warn!(url = %self.url, "server ignored Range; re-reading {} bytes", self.pos);
            skip = self.pos;
        } else {
            return Err(self.fatal(format!("unexpected HTTP {status} when resuming")));
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

    fn status_error(&self, code: u16) -> Attempt {
        match code {
            404 => Attempt::Fatal(FetchError::NotFound {
                url: self.url.clone(),
            }),
            500..=599 => Attempt::Retry(format!("server answered HTTP {code}")),
            _ => Attempt::Fatal(FetchError::Status {
                url: self.url.clone(),
                code,
                retried: self.failures,
            }),
        }
    }

    fn fatal(&self, message: String) -> Attempt {
        Attempt::Fatal(FetchError::Protocol {
            url: self.url.clone(),
            message,
        })
    }
}

enum Attempt {
    Retry(String),
    Fatal(FetchError),
}

impl Read for HttpReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
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
                Ok(0) if self.len.is_none_or(|l| self.pos >= l) => return Ok(0),
                Ok(0) => format!(
                    "connection closed at byte {} of {}",
                    self.pos,
                    self.len.unwrap_or(0)
                ),
                Ok(n) => {
                    self.pos += n as u64;
                    self.failures = 0;
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
}

//! [`HttpFetcher`]: metadata and targets over HTTP(S) with the project's
//! client (rustls, `[http]` CAs and client certificate, timeouts), reading
//! at most the limit the client gives, following redirects by hand.
//!
//! A server that trickles (TUF's slow-retrieval attack) is bounded as the
//! bundle source bounds it: by `[http]`'s `deadline_secs` for the whole
//! fetch and `min_rate_bytes` per `min_rate_window_secs`, besides the
//! stall timeout of each read.

use std::io::Read;
use std::time::{Duration, Instant};

use super::client::Fetcher;
use super::TufError;
use crate::config::HttpSettings;
use crate::fetch::http::{agent, redirect_target, MAX_REDIRECTS};
use crate::fetch::redact;

/// Fetches by URL with one HTTP agent.
pub struct HttpFetcher {
    agent: ureq::Agent,
    /// The whole fetch; `None` = no limit.
    deadline: Option<Duration>,
    /// At least this many bytes per window, unless the body ends first.
    min_rate: Option<(u64, Duration)>,
}

impl HttpFetcher {
    pub fn new(settings: &HttpSettings) -> Result<HttpFetcher, TufError> {
        let agent = agent(settings).map_err(|e| TufError::Fetch {
            url: "(HTTP client)".into(),
            reason: e.to_string(),
        })?;
        let deadline =
            (settings.deadline_secs > 0).then(|| Duration::from_secs(settings.deadline_secs));
        let min_rate =
            (settings.min_rate_bytes > 0 && settings.min_rate_window_secs > 0).then(|| {
                (
                    settings.min_rate_bytes,
                    Duration::from_secs(settings.min_rate_window_secs),
                )
            });
        Ok(HttpFetcher {
            agent,
            deadline,
            min_rate,
        })
    }

    /// The body, at most `max_len + 1` bytes, within the time bounds.
    fn read_body(
        &self,
        mut body: impl Read,
        max_len: u64,
        started: Instant,
    ) -> Result<Vec<u8>, String> {
        let mut data = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        let (mut window_start, mut window_bytes) = (Instant::now(), 0u64);
        while data.len() as u64 <= max_len {
            let left = max_len.saturating_add(1) - data.len() as u64;
            let want = left.min(buf.len() as u64) as usize;
            let n = body
                .read(&mut buf[..want])
                .map_err(|e| format!("reading the body: {e}"))?;
            if n == 0 {
                break;
            }
            data.extend_from_slice(&buf[..n]);
            window_bytes += n as u64;
            if self.deadline.is_some_and(|d| started.elapsed() > d) {
                return Err(format!(
                    "not done after {} s",
                    self.deadline.unwrap_or_default().as_secs()
                ));
            }
            if let Some((min, window)) = self.min_rate {
                if window_start.elapsed() >= window {
                    if window_bytes < min {
                        return Err(format!(
                            "too slow: {window_bytes} bytes in {} s (minimum {min})",
                            window.as_secs()
                        ));
                    }
                    (window_start, window_bytes) = (Instant::now(), 0);
                }
            }
        }
        Ok(data)
    }
}

impl Fetcher for HttpFetcher {
    fn fetch(&self, url: &str, max_len: u64) -> Result<Vec<u8>, TufError> {
        let shown = redact(url);
        let fail = |reason: String| TufError::Fetch {
            url: shown.clone(),
            reason,
        };
        let started = Instant::now();
        let mut current = url.to_string();
        let mut redirects = 0;
        let resp = loop {
            let resp = match self.agent.get(&current).call() {
                Ok(r) => r,
                Err(ureq::Error::Status(403 | 404, _)) => {
                    return Err(TufError::NotFound { url: shown });
                }
                Err(ureq::Error::Status(code, r)) => {
                    return Err(fail(format!("HTTP {code} {}", r.status_text())));
                }
                Err(e) => return Err(fail(e.to_string())),
            };
            if !(300..400).contains(&resp.status()) {
                break resp;
            }
            redirects += 1;
            if redirects > MAX_REDIRECTS {
                return Err(fail(format!("more than {MAX_REDIRECTS} redirects")));
            }
            let location = resp
                .header("Location")
                .ok_or_else(|| fail(format!("HTTP {} without Location", resp.status())))?;
            current = redirect_target(&current, location).map_err(fail)?;
        };
        if let Some(len) = resp
            .header("Content-Length")
            .and_then(|v| v.parse::<u64>().ok())
        {
            if len > max_len {
                return Err(TufError::TooLong {
                    url: shown,
                    limit: max_len,
                });
            }
        }
        let data = self
            .read_body(resp.into_reader(), max_len, started)
            .map_err(fail)?;
        if data.len() as u64 > max_len {
            return Err(TufError::TooLong {
                url: shown,
                limit: max_len,
            });
        }
        Ok(data)
    }
}

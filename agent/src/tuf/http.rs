//! [`HttpFetcher`]: metadata and targets over HTTP(S) with the project's
//! client (rustls, `[http]` CAs and client certificate, timeouts), reading
//! at most the limit the client gives, following redirects by hand.

use std::io::Read;

use super::client::Fetcher;
use super::TufError;
use crate::config::HttpSettings;
use crate::fetch::http::{agent, redirect_target, MAX_REDIRECTS};
use crate::fetch::redact;

/// Fetches by URL with one HTTP agent.
pub struct HttpFetcher {
    agent: ureq::Agent,
}

impl HttpFetcher {
    pub fn new(settings: &HttpSettings) -> Result<HttpFetcher, TufError> {
        let agent = agent(settings).map_err(|e| TufError::Fetch {
            url: "(HTTP client)".into(),
            reason: e.to_string(),
        })?;
        Ok(HttpFetcher { agent })
    }
}

impl Fetcher for HttpFetcher {
    fn fetch(&self, url: &str, max_len: u64) -> Result<Vec<u8>, TufError> {
        let shown = redact(url);
        let fail = |reason: String| TufError::Fetch {
            url: shown.clone(),
            reason,
        };
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
        let mut data = Vec::new();
        resp.into_reader()
            .take(max_len.saturating_add(1))
            .read_to_end(&mut data)
            .map_err(|e| fail(format!("reading the body: {e}")))?;
        if data.len() as u64 > max_len {
            return Err(TufError::TooLong {
                url: shown,
                limit: max_len,
            });
        }
        Ok(data)
    }
}

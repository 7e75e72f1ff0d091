//! The DDI client: the controller resource, its deployment and cancel
//! links, feedback and configData, over the agent's HTTP stack (`[http]`
//! CAs, client certificate, timeouts). The token goes to the configured
//! server's origin only: never to a link or redirect elsewhere.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;

use super::ddi::{self, CancelAction, DeploymentBase, Feedback, Root};
use super::{FleetError, Poll, Server, Target};
use crate::config::{HawkbitSettings, HttpSettings, Secret, Token};
use crate::fetch::http::{self, Credentials};
use crate::fetch::{redact, BundleSource, FetchError, HttpSource};

/// The most a DDI JSON answer may be: a hostile server cannot make the
/// agent buffer more.
const MAX_JSON: u64 = 1 << 20;

pub struct Ddi {
    agent: ureq::Agent,
    http: HttpSettings,
    /// `{server}/{tenant}/controller/v1/{controllerId}`.
    controller: String,
    auth: Option<Arc<Header>>,
}

/// A fixed `Authorization` value (DDI tokens do not expire mid-download).
struct Header(String);

impl Credentials for Header {
    fn header(&self) -> Option<String> {
        Some(self.0.clone())
    }
    fn renew(&self, _: Option<&str>) -> Result<bool, FetchError> {
        Ok(false)
    }
}

/// The `Authorization` value for `token`, reading a token file.
pub fn auth_header(token: &Token) -> Result<Option<String>, FleetError> {
    let read = |s: &Secret| match s {
        Secret::Inline(t) => Ok(t.clone()),
        Secret::File(p) => {
            check_private(p);
            std::fs::read_to_string(p)
                .map(|t| t.trim().to_string())
                .map_err(|source| FleetError::Token {
                    path: p.clone(),
                    source,
                })
        }
    };
    Ok(match token {
        Token::Target(s) => Some(format!("TargetToken {}", read(s)?)),
        Token::Gateway(s) => Some(format!("GatewayToken {}", read(s)?)),
        Token::None => None,
    })
}

fn check_private(p: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::metadata(p) {
        if m.permissions().mode() & 0o004 != 0 {
            tracing::warn!(path = %p.display(), "the hawkBit token file is readable by everyone; chmod 600 it");
        }
    }
}

impl Ddi {
    /// A client for `h`; `controller_id` is the configured one or the
    /// machine's id (the caller reads it at the edge).
    pub fn new(
        h: &HawkbitSettings,
        http_settings: &HttpSettings,
        controller_id: &str,
    ) -> Result<Ddi, FleetError> {
        let agent = http::agent(http_settings).map_err(|e| FleetError::Config(e.to_string()))?;
        let auth = auth_header(&h.token)?.map(|v| Arc::new(Header(v)));
        Ok(Ddi {
            agent,
            http: http_settings.clone(),
            controller: format!("{}/{}/controller/v1/{controller_id}", h.server, h.tenant),
            auth,
        })
    }

    fn request(&self, method: &str, url: &str) -> ureq::Request {
        let mut r = self
            .agent
            .request(method, url)
            .set("Accept", "application/hal+json, application/json");
        if let Some(a) = &self.auth {
            if http::same_origin(url, &self.controller) {
                r = r.set("Authorization", &a.0);
            }
        }
        r
    }

    fn call(&self, method: &str, url: &str, body: Option<&[u8]>) -> Result<Vec<u8>, FleetError> {
        let shown = redact(url);
        let r = self.request(method, url);
        let resp = match body {
            Some(b) => r.set("Content-Type", "application/json").send_bytes(b),
            None => r.call(),
        };
        let resp = resp.map_err(|e| match e {
            ureq::Error::Status(code, _) => FleetError::Status {
                url: shown.clone(),
                code,
                hint: match code {
                    401 | 403 => " (check [hawkbit] target_token or gateway_token)",
                    404 => " (check [hawkbit] server, tenant and controller_id)",
                    _ => "",
                },
            },
            ureq::Error::Transport(t) => FleetError::Http {
                url: shown.clone(),
                message: redact(&t.to_string()),
            },
        })?;
        let mut out = Vec::new();
        resp.into_reader()
            .take(MAX_JSON + 1)
            .read_to_end(&mut out)
            .map_err(|e| FleetError::Http {
                url: shown.clone(),
                message: e.to_string(),
            })?;
        if out.len() as u64 > MAX_JSON {
            return Err(FleetError::Http {
                url: shown,
                message: format!("answer larger than {MAX_JSON} bytes"),
            });
        }
        Ok(out)
    }

    fn feedback_url(&self, target: Target<'_>) -> Result<String, FleetError> {
        let (kind, id) = match target {
            Target::Deployment(id) => ("deploymentBase", id),
            Target::Cancel(id) => ("cancelAction", id),
        };
        check_id(id)?;
        Ok(format!("{}/{kind}/{id}/feedback", self.controller))
    }
}

/// Action ids go into URL paths.
fn check_id(id: &str) -> Result<(), FleetError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(FleetError::BadId(id.chars().take(64).collect()))
    }
}

impl Server for Ddi {
    fn controller(&self) -> &str {
        &self.controller
    }

    fn poll(&self) -> Result<Poll, FleetError> {
        let root = Root::parse(&self.call("GET", &self.controller, None)?)?;
        let mut poll = Poll {
            sleep: root.sleep()?,
            wants_config: root.links.config_data.is_some(),
            ..Default::default()
        };
        if let Some(l) = &root.links.cancel_action {
            let c = CancelAction::parse(&self.call("GET", &l.href, None)?)?;
            check_id(&c.id)?;
            check_id(&c.cancel.stop_id)?;
            poll.cancel = Some(c);
        }
        if let Some(l) = &root.links.deployment_base {
            let d = DeploymentBase::parse(&self.call("GET", &l.href, None)?)?;
            check_id(&d.id)?;
            poll.deployment = Some(d);
        }
        Ok(poll)
    }

    fn send_config(&self, attributes: &BTreeMap<String, String>) -> Result<(), FleetError> {
        let url = format!("{}/configData", self.controller);
        self.call("PUT", &url, Some(&ddi::config_data(attributes)))
            .map(drop)
    }

    fn feedback(&self, target: Target<'_>, f: &Feedback) -> Result<(), FleetError> {
        let id = match target {
            Target::Deployment(id) | Target::Cancel(id) => id,
        };
        let url = self.feedback_url(target)?;
        self.call("POST", &url, Some(&f.to_bytes(id))).map(drop)
    }

    fn bundle_source(&self, url: &str) -> Result<Box<dyn BundleSource>, FetchError> {
        let src = match &self.auth {
            Some(a) => HttpSource::with_credentials(url, &self.http, a.clone())?,
            None => HttpSource::new(url, &self.http)?,
        };
        Ok(Box::new(src))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_path_safe() {
        for ok in ["7", "a-b_C9"] {
            assert!(check_id(ok).is_ok());
        }
        for bad in ["", "../x", "7?x", "7/feedback", &"1".repeat(65)] {
            assert!(check_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tokens_become_headers() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("t");
        std::fs::write(&f, "abc\n").unwrap();
        assert_eq!(
            auth_header(&Token::Target(Secret::File(f))).unwrap(),
            Some("TargetToken abc".into())
        );
        assert_eq!(
            auth_header(&Token::Gateway(Secret::Inline("g".into()))).unwrap(),
            Some("GatewayToken g".into())
        );
        assert!(matches!(
            auth_header(&Token::Target(Secret::File(dir.path().join("none")))),
            Err(FleetError::Token { .. })
        ));
    }
}

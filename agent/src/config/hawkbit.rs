//! `[hawkbit]`: a fleet server speaking hawkBit's Direct Device Integration
//! API (docs/fleet.md). Validated here, without I/O: token files and the
//! machine id are read when the client starts.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHawkbit {
    server: Option<String>,
    tenant: Option<String>,
    controller_id: Option<String>,
    target_token: Option<String>,
    target_token_file: Option<PathBuf>,
    gateway_token: Option<String>,
    gateway_token_file: Option<PathBuf>,
    reboot: Option<bool>,
    attributes: Option<BTreeMap<String, String>>,
}

/// How the device authenticates to the server.
#[derive(Clone, PartialEq, Eq)]
pub enum Token {
    /// `Authorization: TargetToken …` (this device's own token).
    Target(Secret),
    /// `Authorization: GatewayToken …` (the tenant's gateway token).
    Gateway(Secret),
    /// No header: a server with device authentication off.
    None,
}

/// A token, or the file it is read from (so that it need not sit in a
/// config file others may read).
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    Inline(String),
    File(PathBuf),
}

impl std::fmt::Debug for Token {
    /// Never prints a token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = |s: &Secret| match s {
            Secret::Inline(_) => "inline ***".to_string(),
            Secret::File(p) => format!("file {}", p.display()),
        };
        match self {
            Token::Target(x) => write!(f, "TargetToken({})", s(x)),
            Token::Gateway(x) => write!(f, "GatewayToken({})", s(x)),
            Token::None => f.write_str("None"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HawkbitSettings {
    /// `https://host[:port]`, without the tenant.
    pub server: String,
    pub tenant: String,
    /// `None`: /etc/machine-id, else the host name.
    pub controller_id: Option<String>,
    pub token: Token,
    /// Reboot into the new group once it is armed (default true).
    pub reboot: bool,
    /// Extra configData attributes sent to the server.
    pub attributes: BTreeMap<String, String>,
}

/// The validated table, or (key, message).
pub(super) fn validate(raw: RawHawkbit) -> Result<HawkbitSettings, (String, String)> {
    let bad = |k: &str, m: &str| (format!("hawkbit.{k}"), m.to_string());
    let server = raw
        .server
        .ok_or_else(|| bad("server", "must be set (https://host[:port])"))?;
    let url = url::Url::parse(&server).map_err(|e| bad("server", &e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(bad("server", "must be an http:// or https:// URL"));
    }
    if url.query().is_some() || url.username() != "" || url.password().is_some() {
        return Err(bad(
            "server",
            "must not carry credentials or a query; use target_token_file",
        ));
    }
    let tenant = raw.tenant.unwrap_or_else(|| "DEFAULT".into());
    let path_safe = |s: &str| {
        !s.is_empty()
            && s.len() <= 128
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
    };
    if !path_safe(&tenant) {
        return Err(bad("tenant", "must be 1-128 of A-Z a-z 0-9 - _ . :"));
    }
    if let Some(id) = &raw.controller_id {
        if !path_safe(id) {
            return Err(bad("controller_id", "must be 1-128 of A-Z a-z 0-9 - _ . :"));
        }
    }
    let token =
        match (
            raw.target_token,
            raw.target_token_file,
            raw.gateway_token,
            raw.gateway_token_file,
        ) {
            (None, None, None, None) => Token::None,
            (Some(t), None, None, None) => Token::Target(Secret::Inline(t)),
            (None, Some(p), None, None) => Token::Target(Secret::File(p)),
            (None, None, Some(t), None) => Token::Gateway(Secret::Inline(t)),
            (None, None, None, Some(p)) => Token::Gateway(Secret::File(p)),
            _ => return Err(bad(
                "target_token",
                "give one of target_token, target_token_file, gateway_token, gateway_token_file",
            )),
        };
    if let Token::Target(Secret::Inline(t)) | Token::Gateway(Secret::Inline(t)) = &token {
        if t.is_empty() || t.contains(['\r', '\n']) {
            return Err(bad("target_token", "must be one non-empty line"));
        }
    }
    Ok(HawkbitSettings {
        server: server.trim_end_matches('/').to_string(),
        tenant,
        controller_id: raw.controller_id,
        token,
        reboot: raw.reboot.unwrap_or(true),
        attributes: raw.attributes.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> Result<HawkbitSettings, (String, String)> {
        validate(toml::from_str::<RawHawkbit>(t).unwrap())
    }

    #[test]
    fn defaults_and_tokens() {
        let s = parse("server = \"https://hb.example:8443/\"").unwrap();
        assert_eq!(s.server, "https://hb.example:8443");
        assert_eq!((s.tenant.as_str(), s.reboot), ("DEFAULT", true));
        assert_eq!(s.token, Token::None);
        let s = parse("server = \"http://h\"\ntarget_token_file = \"/etc/t\"").unwrap();
        assert_eq!(s.token, Token::Target(Secret::File("/etc/t".into())));
        assert_eq!(
            format!(
                "{:?}",
                parse("server = \"http://h\"\ngateway_token = \"s3cret\"").unwrap()
            ),
            format!(
                "{:?}",
                HawkbitSettings {
                    server: "http://h".into(),
                    tenant: "DEFAULT".into(),
                    controller_id: None,
                    token: Token::Gateway(Secret::Inline("x".into())),
                    reboot: true,
                    attributes: BTreeMap::new(),
                }
            ),
            "the token is never printed"
        );
    }

    #[test]
    fn refusals_name_the_key() {
        for (t, key) in [
            ("tenant = \"x\"", "hawkbit.server"),
            ("server = \"ftp://h\"", "hawkbit.server"),
            ("server = \"https://u:p@h\"", "hawkbit.server"),
            ("server = \"https://h\"\ntenant = \"a/b\"", "hawkbit.tenant"),
            (
                "server = \"https://h\"\ncontroller_id = \"../x\"",
                "hawkbit.controller_id",
            ),
            (
                "server = \"https://h\"\ntarget_token = \"a\"\ngateway_token = \"b\"",
                "hawkbit.target_token",
            ),
        ] {
            assert_eq!(parse(t).unwrap_err().0, key, "{t}");
        }
        assert!(toml::from_str::<RawHawkbit>("server = \"h\"\npoll = 1").is_err());
    }
}

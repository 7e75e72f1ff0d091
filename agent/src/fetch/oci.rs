//! OCI registry transport: a bundle travels as an OCI artifact (an image
//! manifest whose one layer is the bundle file, byte for byte), so it can
//! be pushed to, mirrored between and pulled from any registry that speaks
//! the OCI distribution API, and read by blob `Range` requests.
//!
//! The registry is transport, not trust: what proves a bundle is still its
//! signature. Every byte streamed is still checked against the blob digest
//! the manifest names (and the manifest against the digest a reference
//! pins), so a registry or mirror that serves other bytes is caught at the
//! end of the stream.
//!
//! Auth: anonymous; HTTP basic; the registry token flow (a 401 with
//! `WWW-Authenticate: Bearer realm=…,service=…,scope=…` → a token from the
//! realm, with the basic credentials if there are any). Credentials come
//! from a containers `auth.json` or a docker `config.json` (same shape).
//! TLS is `[http]`'s: its CA file and client certificate.
//!
//! The mapping is documented in docs/bundle-format.md ("In an OCI registry").

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::http::{self, Credentials, HttpReader};
use super::{redact, BundleSource, FetchError, BUF};
use crate::config::{HttpSettings, OciSettings};

/// The artifact type of a Tandem bundle (manifest `artifactType`).
pub const ARTIFACT_TYPE: &str = "application/vnd.tandem.bundle.v1";
/// The media type of the layer that is the bundle file.
pub const BUNDLE_MEDIA_TYPE: &str = "application/vnd.tandem.bundle.v1.tar";
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
/// OCI 1.1's empty config: the two bytes `{}`.
pub const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
const EMPTY_CONFIG: &[u8] = b"{}";
/// Largest manifest read (the distribution spec suggests 4 MiB).
pub const MAX_MANIFEST: u64 = 4 << 20;
/// Largest token response read.
const MAX_TOKEN: u64 = 1 << 20;

/// `HOST[:PORT]/REPOSITORY[:TAG][@sha256:DIGEST]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

fn bad_ref(s: &str, why: &str) -> FetchError {
    FetchError::Reference {
        shown: redact(&format!("oci://{s}")),
        message: why.to_string(),
    }
}

fn valid_component(c: &str) -> bool {
    // [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*
    let b = c.as_bytes();
    if b.is_empty() || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return false;
    }
    let mut prev_sep = String::new();
    for &ch in b {
        if ch.is_ascii_lowercase() || ch.is_ascii_digit() {
            if !prev_sep.is_empty()
                && !matches!(prev_sep.as_str(), "." | "_" | "__")
                && !prev_sep.bytes().all(|x| x == b'-')
            {
                return false;
            }
            prev_sep.clear();
        } else if matches!(ch, b'.' | b'_' | b'-') {
            prev_sep.push(ch as char);
        } else {
            return false;
        }
    }
    true
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// Whether `d` is `sha256:` and 64 lowercase hex digits.
pub fn valid_digest(d: &str) -> bool {
    d.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    })
}

impl Reference {
    /// Parses what follows `oci://`. Without a tag or digest the tag is
    /// `latest`.
    pub fn parse(s: &str) -> Result<Reference, FetchError> {
        let (registry, rest) = s
            .split_once('/')
            .ok_or_else(|| bad_ref(s, "expected HOST[:PORT]/REPOSITORY[:TAG]"))?;
        if registry.is_empty()
            || registry.contains('@')
            || !registry
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b':' | b'[' | b']'))
        {
            return Err(bad_ref(s, "the registry must be HOST or HOST:PORT"));
        }
        let (name, digest) = match rest.split_once('@') {
            Some((n, d)) => {
                if !valid_digest(d) {
                    return Err(bad_ref(
                        s,
                        "a digest must be sha256: and 64 lowercase hex digits",
                    ));
                }
                (n, Some(d.to_string()))
            }
            None => (rest, None),
        };
        let (repository, tag) = match name.rsplit_once(':') {
            Some((r, t)) if !t.contains('/') => {
                if !valid_tag(t) {
                    return Err(bad_ref(s, "a tag is [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"));
                }
                (r, Some(t.to_string()))
            }
            _ => (name, None),
        };
        if repository.len() > 255 || !repository.split('/').all(valid_component) {
            return Err(bad_ref(
                s,
                "a repository is lowercase letters, digits and . _ - between /",
            ));
        }
        let tag = match (&tag, &digest) {
            (None, None) => Some("latest".to_string()),
            _ => tag,
        };
        Ok(Reference {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag,
            digest,
        })
    }

    /// What `/v2/<name>/manifests/<reference>` takes: the digest if pinned.
    pub fn manifest_ref(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .expect("a tag or a digest")
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- auth

/// User name and password for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Basic {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Basic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Basic({}, ***)", self.user)
    }
}

/// The credential files looked at when `[oci] auth_file` is not set, in
/// order: `$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`,
/// `/run/containers/UID/auth.json` (podman, skopeo), `$DOCKER_CONFIG/config.json`
/// or `~/.docker/config.json` (docker).
pub fn auth_files() -> Vec<PathBuf> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let mut v = Vec::new();
    if let Some(p) = env("REGISTRY_AUTH_FILE") {
        v.push(p);
    }
    if let Some(d) = env("XDG_RUNTIME_DIR") {
        v.push(d.join("containers/auth.json"));
    }
    v.push(PathBuf::from(format!(
        "/run/containers/{}/auth.json",
        crate::sys::euid()
    )));
    match env("DOCKER_CONFIG") {
        Some(d) => v.push(d.join("config.json")),
        None => {
            if let Some(h) = env("HOME") {
                v.push(h.join(".docker/config.json"));
            }
        }
    }
    v
}

#[derive(Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: std::collections::BTreeMap<String, AuthEntry>,
}

#[derive(Deserialize)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

/// The registry an `auths` key names: `HOST[:PORT]`, also written as a URL
/// (`https://index.docker.io/v1/`) or with a repository path.
fn auth_key_registry(key: &str) -> &str {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    k.split('/').next().unwrap_or(k)
}

/// The credentials for `registry` in an auth file's text (`Ok(None)`: no
/// entry). `path` is for errors.
pub fn parse_auth_file(
    text: &str,
    registry: &str,
    path: &Path,
) -> Result<Option<Basic>, FetchError> {
    let bad = |m: String| FetchError::Credentials {
        path: path.to_path_buf(),
        message: m,
    };
    let f: AuthFile = serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let Some((_, e)) = f
        .auths
        .iter()
        .find(|(k, _)| auth_key_registry(k) == registry)
    else {
        return Ok(None);
    };
    if let (Some(u), Some(p)) = (&e.username, &e.password) {
        return Ok(Some(Basic {
            user: u.clone(),
            password: p.clone(),
        }));
    }
    let Some(a) = &e.auth else {
        return Ok(None);
    };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(a.trim())
        .map_err(|_| bad(format!("the \"auth\" of {registry} is not base64")))?;
    let s = String::from_utf8(raw)
        .map_err(|_| bad(format!("the \"auth\" of {registry} is not UTF-8")))?;
    let (u, p) = s
        .split_once(':')
        .ok_or_else(|| bad(format!("the \"auth\" of {registry} is not USER:PASSWORD")))?;
    Ok(Some(Basic {
        user: u.to_string(),
        password: p.to_string(),
    }))
}

/// The credentials for `registry`: from `[oci] auth_file` if set (which
/// must then exist), else from the first of [`auth_files`] that has an
/// entry for it.
pub fn credentials_for(registry: &str, oci: &OciSettings) -> Result<Option<Basic>, FetchError> {
    let read = |p: &Path| -> Result<Option<String>, FetchError> {
        match std::fs::read_to_string(p) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(FetchError::Credentials {
                path: p.to_path_buf(),
                message: e.to_string(),
            }),
        }
    };
    if let Some(p) = &oci.auth_file {
        let text = read(p)?.ok_or_else(|| FetchError::Credentials {
            path: p.clone(),
            message: "[oci] auth_file does not exist".into(),
        })?;
        return parse_auth_file(&text, registry, p);
    }
    for p in auth_files() {
        if let Some(text) = read(&p)? {
            if let Some(b) = parse_auth_file(&text, registry, &p)? {
                return Ok(Some(b));
            }
        }
    }
    Ok(None)
}

/// `Bearer realm="…",service="…"` → ("bearer", {realm, service}).
pub fn parse_challenge(h: &str) -> Option<(String, Vec<(String, String)>)> {
    let h = h.trim();
    let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
    let mut params = Vec::new();
    let mut it = rest.chars().peekable();
    loop {
        while it.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            it.next();
        }
        let key: String = std::iter::from_fn(|| it.next_if(|c| *c != '=' && *c != ',')).collect();
        if key.is_empty() {
            break;
        }
        if it.next() != Some('=') {
            return None;
        }
        let mut val = String::new();
        if it.peek() == Some(&'"') {
            it.next();
            loop {
                match it.next()? {
                    '"' => break,
                    '\\' => val.push(it.next()?),
                    c => val.push(c),
                }
            }
        } else {
            val = std::iter::from_fn(|| it.next_if(|c| *c != ',')).collect();
        }
        params.push((key.trim().to_ascii_lowercase(), val.trim().to_string()));
    }
    Some((scheme.to_ascii_lowercase(), params))
}

/// Registry credentials as the HTTP layer uses them: nothing until the
/// registry asks; then basic, or a bearer token from the realm it names.
pub struct RegistryAuth {
    agent: ureq::Agent,
    /// The registry's base URL (`https://host:port`).
    base: String,
    basic: Option<Basic>,
    /// The scope to ask a token for (`repository:REPO:pull`).
    scope: String,
    header: Mutex<Option<String>>,
}

#[derive(Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
}

impl RegistryAuth {
    pub fn new(
        agent: ureq::Agent,
        base: &str,
        basic: Option<Basic>,
        scope: String,
    ) -> RegistryAuth {
        RegistryAuth {
            agent,
            base: base.to_string(),
            basic,
            scope,
            header: Mutex::new(None),
        }
    }

    fn basic_header(b: &Basic) -> String {
        let raw = format!("{}:{}", b.user, b.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }

    fn error(&self, message: String) -> FetchError {
        FetchError::Auth {
            url: redact(&self.base),
            message,
        }
    }

    fn token(&self, params: &[(String, String)]) -> Result<String, FetchError> {
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let realm =
            get("realm").ok_or_else(|| self.error("a Bearer challenge without a realm".into()))?;
        let mut url = url::Url::parse(realm)
            .map_err(|e| self.error(format!("bad token realm {:?}: {e}", redact(realm))))?;
        match (self.base.starts_with("https:"), url.scheme()) {
            (_, "https") | (false, "http") => {}
            (true, "http") => {
                return Err(self.error(format!(
                    "refusing a plain-http token realm ({}) for an https registry",
                    redact(realm)
                )))
            }
            (_, other) => return Err(self.error(format!("refusing a {other}: token realm"))),
        }
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = get("service") {
                q.append_pair("service", s);
            }
            q.append_pair("scope", get("scope").unwrap_or(&self.scope));
        }
        let mut req = self.agent.get(url.as_str());
        if let Some(b) = &self.basic {
            req = req.set("Authorization", &Self::basic_header(b));
        }
        let resp = req.call().map_err(|e| match e {
            ureq::Error::Status(code, _) => self.error(format!(
                "the token service {} answered HTTP {code}{}",
                redact(realm),
                if self.basic.is_none() {
                    " (no credentials configured)"
                } else {
                    ""
                }
            )),
            ureq::Error::Transport(t) => self.error(format!(
                "token service {}: {}",
                redact(realm),
                redact(&t.to_string())
            )),
        })?;
        let mut body = Vec::new();
        resp.into_reader()
            .take(MAX_TOKEN + 1)
            .read_to_end(&mut body)
            .map_err(|e| self.error(format!("reading the token: {e}")))?;
        if body.len() as u64 > MAX_TOKEN {
            return Err(self.error("the token response is over 1 MiB".into()));
        }
        let t: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| self.error(format!("the token response is not JSON: {e}")))?;
        t.token
            .or(t.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| self.error("the token response holds no token".into()))
    }
}

impl Credentials for RegistryAuth {
    fn header(&self) -> Option<String> {
        self.header.lock().expect("no panics while held").clone()
    }

    fn renew(&self, challenge: Option<&str>) -> Result<bool, FetchError> {
        let Some((scheme, params)) = challenge.and_then(parse_challenge) else {
            return Err(self.error("HTTP 401 without a usable WWW-Authenticate".into()));
        };
        let new = match scheme.as_str() {
            "basic" => match &self.basic {
                Some(b) => Self::basic_header(b),
                None => {
                    return Err(self.error(
                        "the registry wants a user name and password, and no credentials are configured (see [oci] auth_file)"
                            .into(),
                    ))
                }
            },
            "bearer" => format!("Bearer {}", self.token(&params)?),
            other => return Err(self.error(format!("unsupported auth scheme {other:?}"))),
        };
        let mut h = self.header.lock().expect("no panics while held");
        if h.as_deref() == Some(new.as_str()) && scheme == "basic" {
            // The same password once more would fail the same way.
            return Err(self.error("the registry refused the configured credentials".into()));
        }
        *h = Some(new);
        Ok(true)
    }
}

// ---------------------------------------------------------------- client

/// One repository on one registry.
pub struct Registry {
    agent: ureq::Agent,
    settings: HttpSettings,
    base: String,
    repository: String,
    auth: Arc<RegistryAuth>,
}

/// A request body.
enum Body<'a> {
    Empty,
    Bytes(&'a [u8], &'a str),
}

impl Registry {
    /// `push` asks for push rights as well as pull.
    pub fn new(
        r: &Reference,
        http: &HttpSettings,
        oci: &OciSettings,
        push: bool,
    ) -> Result<Registry, FetchError> {
        let scheme = if oci.insecure_registries.contains(&r.registry) {
            "http"
        } else {
            "https"
        };
        let base = format!("{scheme}://{}", r.registry);
        let agent = http::agent(http)?;
        let basic = credentials_for(&r.registry, oci)?;
        let scope = format!(
            "repository:{}:{}",
            r.repository,
            if push { "pull,push" } else { "pull" }
        );
        Ok(Registry {
            auth: Arc::new(RegistryAuth::new(agent.clone(), &base, basic, scope)),
            agent,
            settings: http.clone(),
            base,
            repository: r.repository.clone(),
        })
    }

    fn url(&self, tail: &str) -> String {
        format!("{}/v2/{}/{tail}", self.base, self.repository)
    }

    /// An absolute URL for a `Location` the registry returned.
    fn resolve(&self, from: &str, location: &str) -> Result<String, FetchError> {
        http::redirect_target(from, location).map_err(|m| self.protocol(from, m))
    }

    fn protocol(&self, url: &str, message: String) -> FetchError {
        FetchError::Protocol {
            url: redact(url),
            message,
        }
    }

    /// One request with credentials (renewed once on a 401), redirects
    /// followed by hand for GET and HEAD; credentials go to the registry
    /// only.
    fn call(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Body<'_>,
    ) -> Result<ureq::Response, FetchError> {
        let mut url = url.to_string();
        let mut renewed = false;
        let mut redirects = 0;
        loop {
            let mut req = self.agent.request(method, &url);
            for (k, v) in headers {
                req = req.set(k, v);
            }
            if http::same_origin(&url, &self.base) {
                if let Some(h) = self.auth.header() {
                    req = req.set("Authorization", &h);
                }
            }
            let r = match &body {
                Body::Empty => req.call(),
                Body::Bytes(b, ct) => req.set("Content-Type", ct).send_bytes(b),
            };
            match r {
                Ok(resp)
                    if (300..400).contains(&resp.status()) && matches!(method, "GET" | "HEAD") =>
                {
                    redirects += 1;
                    if redirects > http::MAX_REDIRECTS {
                        return Err(self.protocol(&url, "too many redirects".into()));
                    }
                    let loc = resp
                        .header("Location")
                        .ok_or_else(|| self.protocol(&url, "a redirect without a Location".into()))?
                        .to_string();
                    url = self.resolve(&url, &loc)?;
                }
                Ok(resp) => return Ok(resp),
                Err(ureq::Error::Status(401, resp)) => {
                    if renewed {
                        return Err(self.auth.error(if self.auth.basic.is_some() {
                            "the registry refused the configured credentials".into()
                        } else {
                            "the registry refused anonymous access".into()
                        }));
                    }
                    renewed = true;
                    self.auth.renew(resp.header("WWW-Authenticate"))?;
                }
                Err(ureq::Error::Status(404, _)) => {
                    return Err(FetchError::NotFound { url: redact(&url) })
                }
                Err(ureq::Error::Status(code, resp)) => {
                    return Err(FetchError::Status {
                        url: redact(&url),
                        code,
                        retried: 0,
                    })
                    .map_err(|e| with_registry_error(e, resp))
                }
                Err(ureq::Error::Transport(t)) => {
                    let mut last = redact(&t.to_string());
                    if url.starts_with("https:") && last.contains("InvalidContentType") {
                        last += " (a plain-HTTP registry? list it in [oci] insecure_registries)";
                    }
                    return Err(FetchError::GaveUp {
                        url: redact(&url),
                        offset: 0,
                        attempts: 1,
                        last,
                    });
                }
            }
        }
    }

    /// Fetches and parses the manifest `reference` names; checks it against
    /// a pinned digest. Returns the manifest and its digest.
    pub fn manifest(&self, r: &Reference) -> Result<(Manifest, String), FetchError> {
        let url = self.url(&format!("manifests/{}", r.manifest_ref()));
        let accept = format!("{MANIFEST_MEDIA_TYPE}, {INDEX_MEDIA_TYPE}");
        let resp = self.call("GET", &url, &[("Accept", &accept)], Body::Empty)?;
        let ct = resp.header("Content-Type").unwrap_or_default().to_string();
        let mut body = Vec::new();
        resp.into_reader()
            .take(MAX_MANIFEST + 1)
            .read_to_end(&mut body)
            .map_err(|e| self.protocol(&url, format!("reading the manifest: {e}")))?;
        if body.len() as u64 > MAX_MANIFEST {
            return Err(self.protocol(&url, "the manifest is over 4 MiB".into()));
        }
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&body)));
        if let Some(want) = &r.digest {
            if *want != digest {
                return Err(FetchError::Digest {
                    url: redact(&url),
                    what: "manifest",
                    expected: want.clone(),
                    actual: digest,
                });
            }
        }
        let m = Manifest::parse(&body, &ct).map_err(|m| self.protocol(&url, m))?;
        Ok((m, digest))
    }

    fn blob_url(&self, digest: &str) -> String {
        self.url(&format!("blobs/{digest}"))
    }

    /// Whether the repository has the blob (a cross-repository mount is
    /// not tried).
    fn has_blob(&self, digest: &str) -> Result<bool, FetchError> {
        match self.call("HEAD", &self.blob_url(digest), &[], Body::Empty) {
            Ok(r) => Ok(r.status() == 200),
            Err(FetchError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Uploads a blob in one PUT (monolithic upload), streaming `data`.
    fn put_blob(&self, digest: &str, size: u64, data: impl Read + Send) -> Result<(), FetchError> {
        if self.has_blob(digest)? {
            return Ok(());
        }
        let start = self.url("blobs/uploads/");
        let resp = self.call("POST", &start, &[("Content-Length", "0")], Body::Empty)?;
        if resp.status() != 202 {
            return Err(self.protocol(
                &start,
                format!("starting an upload: HTTP {}", resp.status()),
            ));
        }
        let loc = resp
            .header("Location")
            .ok_or_else(|| self.protocol(&start, "an upload without a Location".into()))?
            .to_string();
        let mut put = url::Url::parse(&self.resolve(&start, &loc)?)
            .map_err(|e| self.protocol(&start, e.to_string()))?;
        put.query_pairs_mut().append_pair("digest", digest);
        let put = put.to_string();
        // The body streams once: a 401 here cannot be retried, so the POST
        // above (same scope) has already settled the credentials.
        let mut req = self
            .agent
            .put(&put)
            .set("Content-Type", "application/octet-stream")
            .set("Content-Length", &size.to_string());
        if http::same_origin(&put, &self.base) {
            if let Some(h) = self.auth.header() {
                req = req.set("Authorization", &h);
            }
        }
        match req.send(data) {
            Ok(r) if r.status() == 201 => Ok(()),
            Ok(r) => Err(self.protocol(&put, format!("uploading: HTTP {}", r.status()))),
            Err(ureq::Error::Status(code, resp)) => Err(with_registry_error(
                FetchError::Status {
                    url: redact(&put),
                    code,
                    retried: 0,
                },
                resp,
            )),
            Err(ureq::Error::Transport(t)) => Err(FetchError::GaveUp {
                url: redact(&put),
                offset: 0,
                attempts: 1,
                last: redact(&t.to_string()),
            }),
        }
    }

    fn put_manifest(&self, tag: &str, body: &[u8]) -> Result<String, FetchError> {
        let url = self.url(&format!("manifests/{tag}"));
        let resp = self.call("PUT", &url, &[], Body::Bytes(body, MANIFEST_MEDIA_TYPE))?;
        if resp.status() != 201 {
            return Err(self.protocol(
                &url,
                format!("storing the manifest: HTTP {}", resp.status()),
            ));
        }
        Ok(format!("sha256:{}", hex::encode(Sha256::digest(body))))
    }
}

/// Adds the first message of a registry's JSON error body (`{"errors":
/// [{"code","message"}]}`) to a status error.
fn with_registry_error(e: FetchError, resp: ureq::Response) -> FetchError {
    #[derive(Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(Deserialize)]
    struct ErrorEntry {
        code: Option<String>,
        message: Option<String>,
    }
    let mut body = Vec::new();
    let _ = resp.into_reader().take(64 << 10).read_to_end(&mut body);
    let Ok(errs) = serde_json::from_slice::<Errors>(&body) else {
        return e;
    };
    let Some(first) = errs.errors.first() else {
        return e;
    };
    let FetchError::Status { url, code, .. } = &e else {
        return e;
    };
    FetchError::Protocol {
        url: url.clone(),
        message: format!(
            "HTTP {code}: {} {}",
            crate::status::printable(first.code.as_deref().unwrap_or("")),
            crate::status::printable(first.message.as_deref().unwrap_or(""))
        ),
    }
}

// ---------------------------------------------------------------- manifest

/// A content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

/// The parts of an OCI image manifest a bundle pull needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub artifact_type: Option<String>,
    pub config: Descriptor,
    /// The one layer that is the bundle.
    pub bundle: Descriptor,
}

impl Manifest {
    /// Parses a manifest (`content_type` is the response's); refuses
    /// indexes, other manifest kinds, and anything but exactly one bundle
    /// layer.
    pub fn parse(body: &[u8], content_type: &str) -> Result<Manifest, String> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Raw {
            schema_version: u32,
            media_type: Option<String>,
            artifact_type: Option<String>,
            config: Descriptor,
            #[serde(default)]
            layers: Vec<Descriptor>,
        }
        let ct = content_type.split(';').next().unwrap_or("").trim();
        if ct == INDEX_MEDIA_TYPE {
            return Err("the reference names an image index, not a bundle artifact".into());
        }
        let raw: Raw = serde_json::from_slice(body)
            .map_err(|e| format!("the manifest is not an OCI image manifest: {e}"))?;
        if raw.schema_version != 2 {
            return Err(format!(
                "manifest schemaVersion {} (expected 2)",
                raw.schema_version
            ));
        }
        if let Some(mt) = &raw.media_type {
            if mt != MANIFEST_MEDIA_TYPE {
                return Err(format!(
                    "manifest mediaType {:?} (expected {MANIFEST_MEDIA_TYPE})",
                    crate::status::printable(mt)
                ));
            }
        }
        if let Some(at) = &raw.artifact_type {
            if at != ARTIFACT_TYPE {
                return Err(format!(
                    "artifactType {:?} is not a Tandem bundle ({ARTIFACT_TYPE})",
                    crate::status::printable(at)
                ));
            }
        }
        let mut bundles = raw
            .layers
            .iter()
            .filter(|l| l.media_type == BUNDLE_MEDIA_TYPE);
        let bundle = match (bundles.next(), bundles.next()) {
            (Some(b), None) => b.clone(),
            (None, _) => {
                return Err(format!(
                    "no layer of media type {BUNDLE_MEDIA_TYPE}: not a Tandem bundle artifact"
                ))
            }
            (Some(_), Some(_)) => return Err(format!("more than one {BUNDLE_MEDIA_TYPE} layer")),
        };
        for d in raw.layers.iter().chain([&raw.config]) {
            if !valid_digest(&d.digest) {
                return Err(format!(
                    "descriptor digest {:?} is not sha256",
                    crate::status::printable(&d.digest)
                ));
            }
        }
        Ok(Manifest {
            artifact_type: raw.artifact_type,
            config: raw.config,
            bundle,
        })
    }
}

/// The manifest `tandem bundle push` stores.
pub fn artifact_manifest(
    blob_digest: &str,
    blob_size: u64,
    title: &str,
    annotations: &[(&str, &str)],
) -> Vec<u8> {
    let mut ann = serde_json::Map::new();
    for (k, v) in annotations {
        ann.insert((*k).into(), (*v).into());
    }
    let m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "artifactType": ARTIFACT_TYPE,
        "config": {
            "mediaType": EMPTY_MEDIA_TYPE,
            "digest": format!("sha256:{}", hex::encode(Sha256::digest(EMPTY_CONFIG))),
            "size": EMPTY_CONFIG.len(),
            "data": base64::engine::general_purpose::STANDARD.encode(EMPTY_CONFIG),
        },
        "layers": [{
            "mediaType": BUNDLE_MEDIA_TYPE,
            "digest": blob_digest,
            "size": blob_size,
            "annotations": { "org.opencontainers.image.title": title },
        }],
        "annotations": ann,
    });
    serde_json::to_vec(&m).expect("JSON")
}

// ---------------------------------------------------------------- pull

/// A bundle in a registry: resolved to its blob when opened.
pub struct OciSource {
    registry: Registry,
    shown: String,
    blob: Descriptor,
}

impl OciSource {
    pub fn open(
        r: &Reference,
        http: &HttpSettings,
        oci: &OciSettings,
    ) -> Result<OciSource, FetchError> {
        let registry = Registry::new(r, http, oci, false)?;
        let (m, digest) = registry.manifest(r)?;
        tracing::info!(reference = %r, manifest = %digest, blob = %m.bundle.digest, size = m.bundle.size, "resolved");
        Ok(OciSource {
            registry,
            shown: format!("oci://{r}"),
            blob: m.bundle,
        })
    }

    fn reader(&self, start: u64, end: u64) -> Result<HttpReader, FetchError> {
        HttpReader::with_agent(
            self.registry.agent.clone(),
            &self.registry.blob_url(&self.blob.digest),
            &self.registry.settings,
            http::Request {
                start,
                end: Some(end),
                credentials: Some(self.registry.auth.clone() as Arc<dyn Credentials>),
                headers: vec![],
            },
        )
    }
}

impl BundleSource for OciSource {
    fn shown(&self) -> String {
        self.shown.clone()
    }

    fn size(&mut self) -> Result<u64, FetchError> {
        Ok(self.blob.size)
    }

    fn remote(&self) -> bool {
        true
    }

    fn digest(&self) -> Option<String> {
        Some(self.blob.digest.clone())
    }

    fn range(&mut self, start: u64, end: u64) -> Result<Box<dyn Read + Send>, FetchError> {
        let end = end.min(self.blob.size);
        Ok(Box::new(io::BufReader::with_capacity(
            BUF,
            self.reader(start.min(end), end)?,
        )))
    }

    fn stream(&mut self) -> Result<Box<dyn Read + Send>, FetchError> {
        let inner = self.reader(0, self.blob.size)?;
        Ok(Box::new(io::BufReader::with_capacity(
            BUF,
            Checked::new(
                inner,
                &redact(&self.registry.blob_url(&self.blob.digest)),
                &self.blob.digest,
                self.blob.size,
            ),
        )))
    }
}

/// A whole blob, checked against its digest and size at its end: the last
/// read fails if the bytes were not the ones the manifest names.
pub struct Checked<R> {
    inner: R,
    url: String,
    expected: String,
    size: u64,
    pos: u64,
    hash: Sha256,
    done: bool,
}

impl<R> Checked<R> {
    pub fn new(inner: R, url: &str, expected: &str, size: u64) -> Checked<R> {
        Checked {
            inner,
            url: url.to_string(),
            expected: expected.to_string(),
            size,
            pos: 0,
            hash: Sha256::new(),
            done: false,
        }
    }
}

impl<R: Read> Read for Checked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        self.pos += n as u64;
        self.hash.update(&buf[..n]);
        if n > 0 && self.pos <= self.size {
            return Ok(n);
        }
        self.done = true;
        let actual = format!("sha256:{}", hex::encode(self.hash.clone().finalize()));
        if self.pos != self.size || actual != self.expected {
            return Err(io::Error::other(FetchError::Digest {
                url: self.url.clone(),
                what: "bundle blob",
                expected: format!("{} ({} bytes)", self.expected, self.size),
                actual: format!("{actual} ({} bytes)", self.pos),
            }));
        }
        Ok(n)
    }
}

// ---------------------------------------------------------------- push

/// What a push stored.
#[derive(Debug, Clone)]
pub struct Pushed {
    pub manifest_digest: String,
    pub blob_digest: String,
    pub size: u64,
}

/// Pushes the bundle file at `path` to `r` (which must have a tag) as a
/// bundle artifact. The file is read twice (digest, then upload); nothing
/// is copied. `annotations` go on the manifest.
pub fn push(
    path: &Path,
    r: &Reference,
    http: &HttpSettings,
    oci: &OciSettings,
    annotations: &[(&str, &str)],
) -> Result<Pushed, FetchError> {
    let Some(tag) = &r.tag else {
        return Err(bad_ref(&r.to_string(), "a push needs a tag (REPO:TAG)"));
    };
    let file_err = |source| FetchError::File {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::File::open(path).map_err(file_err)?;
    let mut h = Sha256::new();
    let size = io::copy(&mut f, &mut h).map_err(file_err)?;
    let blob_digest = format!("sha256:{}", hex::encode(h.finalize()));
    let registry = Registry::new(r, http, oci, true)?;
    let empty = format!("sha256:{}", hex::encode(Sha256::digest(EMPTY_CONFIG)));
    registry.put_blob(&empty, EMPTY_CONFIG.len() as u64, EMPTY_CONFIG)?;
    let f = std::fs::File::open(path).map_err(file_err)?;
    registry.put_blob(&blob_digest, size, io::BufReader::with_capacity(BUF, f))?;
    let title = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "bundle.tnd".into());
    let body = artifact_manifest(&blob_digest, size, &title, annotations);
    let manifest_digest = registry.put_manifest(tag, &body)?;
    Ok(Pushed {
        manifest_digest,
        blob_digest,
        size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        let r = Reference::parse("127.0.0.1:5000/fleet/gw:1.2.0").unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "fleet/gw");
        assert_eq!(r.tag.as_deref(), Some("1.2.0"));
        assert_eq!(r.manifest_ref(), "1.2.0");
        assert_eq!(r.to_string(), "127.0.0.1:5000/fleet/gw:1.2.0");
        let d = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse(&format!("ghcr.io/acme/os@{d}")).unwrap();
        assert_eq!((r.tag.as_deref(), r.manifest_ref()), (None, d.as_str()));
        let r = Reference::parse("reg.example/os").unwrap();
        assert_eq!(r.tag.as_deref(), Some("latest"));
        let r = Reference::parse(&format!("h:1/a_b/c-d.e:v1@{d}")).unwrap();
        assert_eq!(r.manifest_ref(), d);
        for bad in [
            "noslash",
            "/repo:tag",
            "h/Upper:tag",
            "h/repo:bad tag",
            "h/repo@sha256:abc",
            "h/repo@md5:0123",
            "h/-repo",
            "h/re..po",
            "u:p@h/repo",
            "h/repo:",
            "h//repo",
        ] {
            assert!(
                matches!(Reference::parse(bad), Err(FetchError::Reference { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn challenges() {
        let (s, p) = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(s, "bearer");
        assert_eq!(
            p,
            vec![
                ("realm".into(), "https://auth.example/token".into()),
                ("service".into(), "registry.example".into()),
                ("scope".into(), "repository:a/b:pull,push".into()),
            ]
        );
        let (s, p) = parse_challenge(r#"Basic realm="Registry Realm""#).unwrap();
        assert_eq!((s.as_str(), p.len()), ("basic", 1));
        assert!(parse_challenge(r#"Bearer realm="unterminated"#).is_none());
    }

    #[test]
    fn auth_files_of_both_kinds() {
        let p = Path::new("/x/auth.json");
        let podman = r#"{"auths":{"127.0.0.1:5000":{"auth":"dXNlcjpwYTpzcw=="}}}"#;
        assert_eq!(
            parse_auth_file(podman, "127.0.0.1:5000", p).unwrap(),
            Some(Basic {
                user: "user".into(),
                password: "pa:ss".into()
            })
        );
        assert_eq!(parse_auth_file(podman, "127.0.0.1:5001", p).unwrap(), None);
        let docker = r#"{"auths":{"https://reg.example/v1/":{"username":"u","password":"p"}},"credsStore":"desktop"}"#;
        assert_eq!(
            parse_auth_file(docker, "reg.example", p)
                .unwrap()
                .unwrap()
                .user,
            "u"
        );
        let e = parse_auth_file(r#"{"auths":{"h":{"auth":"!!"}}}"#, "h", p).unwrap_err();
        assert!(
            e.to_string().contains("/x/auth.json") && e.to_string().contains("base64"),
            "{e}"
        );
        assert!(parse_auth_file("nope", "h", p).is_err());
    }

    #[test]
    fn manifests_we_push_parse_back() {
        let d = format!("sha256:{}", "b".repeat(64));
        let body = artifact_manifest(
            &d,
            1234,
            "x.tnd",
            &[("org.opencontainers.image.version", "1.0.0")],
        );
        let m = Manifest::parse(&body, MANIFEST_MEDIA_TYPE).unwrap();
        assert_eq!(
            m.bundle,
            Descriptor {
                media_type: BUNDLE_MEDIA_TYPE.into(),
                digest: d.clone(),
                size: 1234
            }
        );
        assert_eq!(m.artifact_type.as_deref(), Some(ARTIFACT_TYPE));
        assert_eq!(m.config.media_type, EMPTY_MEDIA_TYPE);
        // An artifact pushed by another client: no artifactType, another
        // config; our layer is what counts.
        let other = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.unknown.config.v1+json","digest":"{d}","size":2}},"layers":[{{"mediaType":"{BUNDLE_MEDIA_TYPE}","digest":"{d}","size":9}}]}}"#
        );
        assert_eq!(
            Manifest::parse(other.as_bytes(), "").unwrap().bundle.size,
            9
        );
        for (body, ct, want) in [
            (other.replace(BUNDLE_MEDIA_TYPE, "application/vnd.oci.image.layer.v1.tar"), "", "no layer"),
            (other.clone(), INDEX_MEDIA_TYPE, "image index"),
            (other.replace("\"schemaVersion\":2", "\"schemaVersion\":1"), "", "schemaVersion"),
            (other.replace(&d, "sha256:short"), "", "not sha256"),
            (other.replace("\"layers\":[", &format!("\"layers\":[{{\"mediaType\":\"{BUNDLE_MEDIA_TYPE}\",\"digest\":\"{d}\",\"size\":1}},")), "", "more than one"),
            (other.replace("{\"schemaVersion\":2,", "{\"schemaVersion\":2,\"artifactType\":\"application/x-other\","), "", "artifactType"),
        ] {
            let e = Manifest::parse(body.as_bytes(), ct).unwrap_err();
            assert!(e.contains(want), "{want}: {e}");
        }
    }

    #[test]
    fn checked_streams_fail_at_the_end_on_other_bytes() {
        let data = b"bundle bytes".to_vec();
        let good = format!("sha256:{}", hex::encode(Sha256::digest(&data)));
        let mut out = Vec::new();
        Checked::new(&data[..], "u", &good, data.len() as u64)
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, data);
        let mut tampered = data.clone();
        tampered[0] ^= 1;
        let e = Checked::new(&tampered[..], "u", &good, data.len() as u64)
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        let f = e.get_ref().unwrap().downcast_ref::<FetchError>().unwrap();
        assert!(matches!(f, FetchError::Digest { .. }), "{f}");
        // Longer than the descriptor says.
        let mut longer = data.clone();
        longer.push(b'!');
        assert!(Checked::new(&longer[..], "u", &good, data.len() as u64)
            .read_to_end(&mut Vec::new())
            .is_err());
        // Shorter.
        assert!(Checked::new(&data[..4], "u", &good, data.len() as u64)
            .read_to_end(&mut Vec::new())
            .is_err());
    }
}

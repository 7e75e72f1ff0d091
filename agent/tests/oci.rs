//! The OCI registry transport against the real thing: Debian's
//! `docker-registry` (CNCF distribution 2.8) started on 127.0.0.1 for each
//! test — plain, with htpasswd basic auth, with TLS, and with token auth
//! (the registry verifying tokens that a token service in this test signs
//! with a key the test makes). Bundles are pushed with `tandem bundle push`
//! and installed with `tandem::ops::install("oci://…")`; a mirror made by
//! `skopeo copy` installs too.
//!
//! Without `docker-registry` the tests skip, unless
//! TANDEM_TEST_REQUIRE_TOOLS=1 (CI), where a missing tool is a failure.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use common::tls::{openssl, pki};
use common::*;
use tandem::bundle::manifest::Compression;
use tandem::install::Options;
use tandem::slot::SlotGroup;

fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found && std::env::var("TANDEM_TEST_REQUIRE_TOOLS").as_deref() == Ok("1") {
        panic!("{tool} is required (TANDEM_TEST_REQUIRE_TOOLS=1); scripts/setup.sh installs it");
    }
    if !found {
        eprintln!("skipped: {tool} not installed");
    }
    found
}

fn wait_for(port: u16, what: &str) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{what} did not start on port {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

enum Auth {
    None,
    Htpasswd(PathBuf),
    /// realm URL, certificate bundle the registry trusts.
    Token(String, PathBuf),
}

struct Registry {
    child: Child,
    port: u16,
    root: PathBuf,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Registry {
    /// `tls`: (certificate, key) to serve HTTPS with.
    fn start(dir: &Path, auth: Auth, tls: Option<(PathBuf, PathBuf)>) -> Registry {
        let port = free_port();
        let root = dir.join(format!("registry-{port}"));
        std::fs::create_dir_all(&root).unwrap();
        let mut cfg = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: tandem-test\n",
            root.display()
        );
        if let Some((cert, key)) = &tls {
            cfg += &format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            );
        }
        match &auth {
            Auth::None => {}
            Auth::Htpasswd(p) => {
                cfg += &format!(
                    "auth:\n  htpasswd:\n    realm: tandem-test\n    path: {}\n",
                    p.display()
                )
            }
            Auth::Token(realm, bundle) => {
                cfg += &format!(
                    "auth:\n  token:\n    realm: {realm}\n    service: tandem-test-registry\n    issuer: tandem-test-issuer\n    rootcertbundle: {}\n",
                    bundle.display()
                )
            }
        }
        let cfg_path = root.join("config.yml");
        std::fs::write(&cfg_path, cfg).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for(port, "docker-registry");
        Registry { child, port, root }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The file the registry keeps a blob in.
    fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.root.join(format!(
            "docker/registry/v2/blobs/sha256/{}/{hex}/data",
            &hex[..2]
        ))
    }
}

/// `tandem bundle push`; returns the pushed manifest digest.
fn push(bundle: &Path, reference: &str, extra: &[&str]) -> Result<String, String> {
    let o = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(["bundle", "push"])
        .arg(bundle)
        .arg(reference)
        .args(extra)
        .env("HOME", "/nonexistent")
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("DOCKER_CONFIG")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    if !o.status.success() {
        return Err(format!("exit {:?}: {err}", o.status.code()));
    }
    let digest = out
        .split('@')
        .nth(1)
        .and_then(|s| s.split(':').take(2).collect::<Vec<_>>().join(":").into())
        .unwrap();
    Ok(digest)
}

fn install(fx: &Fx, source: &str) -> Result<tandem::install::Report, tandem::ops::Error> {
    tandem::ops::install(
        &fx.settings(),
        source,
        &Options {
            force: true,
            ..Options::default()
        },
        &mut |_| {},
    )
}

fn fixture() -> (Fx, Vec<u8>, PathBuf) {
    let fx = Fx::new(&["rootfs"]);
    let img = pattern(3 << 20, 9);
    let b = fx.bundle("u.tnd", "1.1.0", &[("rootfs", &img, Compression::Zstd)]);
    (fx, img, b)
}

/// Writes credentials for `registry` to `p`, as docker's config.json or
/// as a containers auth.json.
fn auth_json(p: &Path, registry: &str, user: &str, pass: &str, docker_style: bool) -> PathBuf {
    let p = p.to_path_buf();
    let text = if docker_style {
        format!(
            r#"{{"auths":{{"https://{registry}/v1/":{{"username":"{user}","password":"{pass}"}}}}}}"#
        )
    } else {
        let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        format!(r#"{{"auths":{{"{registry}":{{"auth":"{b}"}}}}}}"#)
    };
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn push_then_install_by_tag_and_by_digest() {
    if !have("docker-registry") {
        return;
    }
    let (mut fx, img, bundle) = fixture();
    let reg = Registry::start(fx.dir.path(), Auth::None, None);
    let r = format!("oci://{}/fleet/gateway:1.1.0", reg.host());
    let digest = push(&bundle, &r, &["--plain-http"]).unwrap();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    // Pushing again is idempotent (the blob is already there).
    assert_eq!(push(&bundle, &r, &["--plain-http"]).unwrap(), digest);

    // Without insecure_registries the agent speaks HTTPS and fails.
    let e = install(&fx, &r).unwrap_err();
    assert_eq!(e.exit_code(), 6, "{e}");
    fx.extra_config = format!("[oci]\ninsecure_registries = [\"{}\"]\n", reg.host());
    let rep = install(&fx, &r).unwrap();
    assert_eq!(rep.target, SlotGroup::B);
    assert_eq!(&fx.slot(SlotGroup::B, "rootfs")[..img.len()], &img[..]);
    let st = fx.state();
    assert_eq!(
        st.last_operation.as_ref().unwrap().source,
        r,
        "the reference is what the record shows"
    );

    // By digest: the same manifest.
    let pinned = format!("oci://{}/fleet/gateway@{digest}", reg.host());
    install(&fx, &pinned).unwrap();
    // A digest that is not this manifest's: not found (the registry has no
    // such manifest), exit 6; a tag that does not exist: also 6.
    let other = format!(
        "oci://{}/fleet/gateway@sha256:{}",
        reg.host(),
        "0".repeat(64)
    );
    assert_eq!(install(&fx, &other).unwrap_err().exit_code(), 6);
    let missing = format!("oci://{}/fleet/gateway:9.9.9", reg.host());
    let e = install(&fx, &missing).unwrap_err();
    assert!(e.to_string().contains("not found"), "{e}");
    // A bad reference is a usage error.
    assert_eq!(
        install(&fx, &format!("oci://{}/Fleet:1", reg.host()))
            .unwrap_err()
            .exit_code(),
        2
    );
}

#[test]
fn a_tampered_blob_is_refused_and_nothing_is_armed() {
    if !have("docker-registry") {
        return;
    }
    let (mut fx, _img, bundle) = fixture();
    let reg = Registry::start(fx.dir.path(), Auth::None, None);
    let r = format!("oci://{}/os:1.1.0", reg.host());
    push(&bundle, &r, &["--plain-http"]).unwrap();
    fx.extra_config = format!("[oci]\ninsecure_registries = [\"{}\"]\n", reg.host());
    let data = std::fs::read(&bundle).unwrap();
    let blob = reg.blob_file(&format!("sha256:{}", sha(&data)));
    // Flip one byte late in the payload, where the stored blob lives.
    let mut bad = data.clone();
    let at = bad.len() - 5000;
    bad[at] ^= 0x40;
    std::fs::write(&blob, &bad).unwrap();
    let before = fx.snapshot();
    let e = install(&fx, &r).unwrap_err();
    assert_eq!(e.exit_code(), 4, "{e}");
    let st = fx.state();
    assert!(
        !st.slots[&SlotGroup::B].armed && st.slots[&SlotGroup::B].version.is_none(),
        "{st:?}"
    );
    // The booted group is untouched.
    assert_eq!(before[0], fx.snapshot()[0]);
}

/// Forwards to 127.0.0.1:`to`; the first response to a blob GET is cut
/// after `cut` bytes (a dropped connection in the middle of the bundle).
/// Also returns the Range header of each blob GET.
fn cutting_proxy(to: u16, cut: usize) -> (u16, Arc<std::sync::Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let cuts = Arc::new(std::sync::Mutex::new(Vec::new()));
    let c = cuts.clone();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut client) = conn else { return };
            let c = c.clone();
            std::thread::spawn(move || {
                let Ok(mut up) = TcpStream::connect(("127.0.0.1", to)) else {
                    return;
                };
                // Read the request head to see what it is.
                let mut r = BufReader::new(client.try_clone().unwrap());
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    head.push_str(&line);
                    if line == "\r\n" {
                        break;
                    }
                }
                let blob_get = head.starts_with("GET ") && head.contains("/blobs/sha256:");
                let mut limit = usize::MAX;
                if blob_get {
                    let range = head
                        .lines()
                        .find_map(|l| l.strip_prefix("Range: "))
                        .unwrap_or("")
                        .to_string();
                    let mut seen = c.lock().unwrap();
                    // The first blob GET is the head; cut the second.
                    if seen.len() == 1 {
                        limit = cut;
                    }
                    seen.push(range);
                }
                // One request per connection, so each is seen here.
                let head: String = head
                    .lines()
                    .filter(|l| !l.is_empty() && !l.to_ascii_lowercase().starts_with("connection:"))
                    .map(|l| format!("{l}\r\n"))
                    .collect::<String>()
                    + "Connection: close\r\n\r\n";
                up.write_all(head.as_bytes()).unwrap();
                let mut up_r = up.try_clone().unwrap();
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut r, &mut up_r);
                });
                let mut sent = 0usize;
                let mut buf = [0u8; 16384];
                loop {
                    let n = match up.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let n = n.min(limit - sent);
                    if client.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    sent += n;
                    if sent >= limit {
                        break;
                    }
                }
                let _ = client.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    (port, cuts)
}

#[test]
fn a_dropped_blob_download_resumes_with_range() {
    if !have("docker-registry") {
        return;
    }
    let (mut fx, img, bundle) = fixture();
    let reg = Registry::start(fx.dir.path(), Auth::None, None);
    let repo = format!("{}/os:1.1.0", reg.host());
    push(&bundle, &format!("oci://{repo}"), &["--plain-http"]).unwrap();
    let len = std::fs::metadata(&bundle).unwrap().len() as usize;
    let (port, cuts) = cutting_proxy(reg.port, len / 2);
    let via = format!("127.0.0.1:{port}");
    fx.extra_config = format!("[oci]\ninsecure_registries = [\"{via}\"]\n");
    install(&fx, &format!("oci://{via}/os:1.1.0")).unwrap();
    assert_eq!(&fx.slot(SlotGroup::B, "rootfs")[..img.len()], &img[..]);
    // The head, the rest of the blob, then resumed where the cut was (the
    // cut counted the response head too, so a little before it).
    let ranges = cuts.lock().unwrap().clone();
    assert_eq!(ranges.len(), 3, "{ranges:?}");
    assert_eq!(ranges[0], "bytes=0-16383");
    assert_eq!(ranges[1], format!("bytes=16384-{}", len - 1));
    let resumed: usize = ranges[2]
        .strip_prefix("bytes=")
        .and_then(|r| r.strip_suffix(&format!("-{}", len - 1)))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("{ranges:?}"));
    let cut_at = 16384 + len / 2;
    assert!(resumed > cut_at - 4096 && resumed <= cut_at, "{ranges:?}");
}

#[test]
fn basic_auth_with_an_auth_json() {
    if !have("docker-registry") || !have("htpasswd") {
        return;
    }
    let (mut fx, img, bundle) = fixture();
    let o = Command::new("htpasswd")
        .args(["-Bbn", "builder", "s3cret"])
        .output()
        .unwrap();
    assert!(o.status.success());
    let htpasswd = fx.path("htpasswd");
    std::fs::write(&htpasswd, &o.stdout).unwrap();
    let reg = Registry::start(fx.dir.path(), Auth::Htpasswd(htpasswd), None);
    let r = format!("oci://{}/os:1.1.0", reg.host());
    // No credentials: a clear error, exit 6.
    let e = push(&bundle, &r, &["--plain-http"]).unwrap_err();
    assert!(
        e.contains("no credentials are configured") && e.contains("exit Some(6)"),
        "{e}"
    );
    let wrong = auth_json(
        &fx.path("wrong.json"),
        &reg.host(),
        "builder",
        "nope",
        false,
    );
    let e = push(
        &bundle,
        &r,
        &["--plain-http", "--auth-file", wrong.to_str().unwrap()],
    )
    .unwrap_err();
    assert!(e.contains("refused the configured credentials"), "{e}");
    let good = auth_json(
        &fx.path("auth.json"),
        &reg.host(),
        "builder",
        "s3cret",
        false,
    );
    push(
        &bundle,
        &r,
        &["--plain-http", "--auth-file", good.to_str().unwrap()],
    )
    .unwrap();

    fx.extra_config = format!("[oci]\ninsecure_registries = [\"{}\"]\n", reg.host());
    let e = install(&fx, &r).unwrap_err();
    assert_eq!(e.exit_code(), 6, "{e}");
    fx.extra_config += &format!("auth_file = \"{}\"\n", good.display());
    install(&fx, &r).unwrap();
    assert_eq!(&fx.slot(SlotGroup::B, "rootfs")[..img.len()], &img[..]);
    // The password is nowhere in what is stored.
    let state = std::fs::read_to_string(fx.path("state/state.json")).unwrap_or_default();
    assert!(!state.contains("s3cret"));
}

#[test]
fn tls_with_the_http_ca_file() {
    if !have("docker-registry") {
        return;
    }
    let (mut fx, img, bundle) = fixture();
    let pki_dir = fx.path("pki");
    std::fs::create_dir(&pki_dir).unwrap();
    pki(&pki_dir);
    let reg = Registry::start(
        fx.dir.path(),
        Auth::None,
        Some((pki_dir.join("server.pem"), pki_dir.join("server.key"))),
    );
    let r = format!("oci://{}/os:1.1.0", reg.host());
    let e = push(&bundle, &r, &[]).unwrap_err();
    assert!(
        e.contains("certificate") || e.contains("UnknownIssuer"),
        "{e}"
    );
    let ca = pki_dir.join("ca.pem");
    push(&bundle, &r, &["--ca-file", ca.to_str().unwrap()]).unwrap();
    fx.extra_config = format!("[http]\nca_file = \"{}\"\n", ca.display());
    install(&fx, &r).unwrap();
    assert_eq!(&fx.slot(SlotGroup::B, "rootfs")[..img.len()], &img[..]);
}

/// A token service: checks basic credentials, answers `{"token": JWT}`
/// with the access the scope asks for, RS256-signed with `key` and the
/// certificate in the `x5c` header (which the registry trusts).
fn token_service(pki: PathBuf, user: &'static str, pass: &'static str) -> (u16, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let issued = Arc::new(AtomicUsize::new(0));
    let count = issued.clone();
    let b64 = |d: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d);
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { return };
            let mut r = BufReader::new(c.try_clone().unwrap());
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            let mut authz = String::new();
            loop {
                let mut h = String::new();
                r.read_line(&mut h).unwrap();
                if h.trim().is_empty() {
                    break;
                }
                if let Some(v) = h.strip_prefix("Authorization: ") {
                    authz = v.trim().to_string();
                }
            }
            let want = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
            );
            if authz != want {
                let _ = c.write_all(
                    b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
                continue;
            }
            let target = line.split_whitespace().nth(1).unwrap_or("");
            let url = url::Url::parse(&format!("http://x{target}")).unwrap();
            let scope = url
                .query_pairs()
                .find(|(k, _)| k == "scope")
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            let mut parts = scope.splitn(3, ':');
            let (_, name, actions) = (
                parts.next(),
                parts.next().unwrap_or(""),
                parts.next().unwrap_or(""),
            );
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            let cert_der = {
                let o = Command::new("openssl")
                    .args(["x509", "-outform", "DER", "-in"])
                    .arg(pki.join("token.pem"))
                    .output()
                    .unwrap();
                base64::engine::general_purpose::STANDARD.encode(o.stdout)
            };
            let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [cert_der]});
            let actions: Vec<&str> = actions.split(',').filter(|a| !a.is_empty()).collect();
            let claims = serde_json::json!({
                "iss": "tandem-test-issuer", "sub": user, "aud": "tandem-test-registry",
                "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("t{now}"),
                "access": [{"type": "repository", "name": name, "actions": actions}],
            });
            let signing_input = format!(
                "{}.{}",
                b64(header.to_string().as_bytes()),
                b64(claims.to_string().as_bytes())
            );
            let mut child = Command::new("openssl")
                .args(["dgst", "-sha256", "-sign"])
                .arg(pki.join("token.key"))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(signing_input.as_bytes())
                .unwrap();
            let sig = child.wait_with_output().unwrap().stdout;
            let jwt = format!("{signing_input}.{}", b64(&sig));
            let body = serde_json::json!({"token": jwt, "expires_in": 300}).to_string();
            count.fetch_add(1, Ordering::SeqCst);
            let _ = write!(
                c,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, issued)
}

#[test]
fn the_registry_token_flow() {
    if !have("docker-registry") {
        return;
    }
    let (mut fx, img, bundle) = fixture();
    let pki_dir = fx.path("pki");
    std::fs::create_dir(&pki_dir).unwrap();
    openssl(
        &pki_dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=tandem test token signer",
            "-keyout",
            "token.key",
            "-out",
            "token.pem",
        ],
    );
    let (tport, issued) = token_service(pki_dir.clone(), "device", "fleet-pw");
    let realm = format!("http://127.0.0.1:{tport}/token");
    let reg = Registry::start(
        fx.dir.path(),
        Auth::Token(realm, pki_dir.join("token.pem")),
        None,
    );
    let r = format!("oci://{}/fleet/os:1.1.0", reg.host());
    // Docker's config.json format this time.
    let creds = auth_json(
        &fx.path("config.json"),
        &reg.host(),
        "device",
        "fleet-pw",
        true,
    );
    push(
        &bundle,
        &r,
        &["--plain-http", "--auth-file", creds.to_str().unwrap()],
    )
    .unwrap();
    let after_push = issued.load(Ordering::SeqCst);
    assert!(after_push >= 1, "a token was asked for");

    fx.extra_config = format!(
        "[oci]\ninsecure_registries = [\"{}\"]\nauth_file = \"{}\"\n",
        reg.host(),
        creds.display()
    );
    install(&fx, &r).unwrap();
    assert_eq!(&fx.slot(SlotGroup::B, "rootfs")[..img.len()], &img[..]);
    assert!(issued.load(Ordering::SeqCst) > after_push);
    // Wrong credentials: the token service says no, and the error says who.
    let bad = auth_json(&fx.path("bad.json"), &reg.host(), "device", "wrong", false);
    fx.extra_config = format!(
        "[oci]\ninsecure_registries = [\"{}\"]\nauth_file = \"{}\"\n",
        reg.host(),
        bad.display()
    );
    let e = install(&fx, &r).unwrap_err().to_string();
    assert!(e.contains("token service") && e.contains("401"), "{e}");
}

#[test]
fn a_skopeo_mirror_installs() {
    if !have("docker-registry") || !have("skopeo") {
        return;
    }
    let (mut fx, img, bundle) = fixture();
    let reg = Registry::start(fx.dir.path(), Auth::None, None);
    let mirror = Registry::start(fx.dir.path(), Auth::None, None);
    push(
        &bundle,
        &format!("oci://{}/os:1.1.0", reg.host()),
        &["--plain-http"],
    )
    .unwrap();
    let o = Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false", "--dest-tls-verify=false"])
        .arg(format!("docker://{}/os:1.1.0", reg.host()))
        .arg(format!("docker://{}/mirror/os:1.1.0", mirror.host()))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "skopeo copy: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    fx.extra_config = format!("[oci]\ninsecure_registries = [\"{}\"]\n", mirror.host());
    install(&fx, &format!("oci://{}/mirror/os:1.1.0", mirror.host())).unwrap();
    assert_eq!(&fx.slot(SlotGroup::B, "rootfs")[..img.len()], &img[..]);
}

/// An artifact pushed by another client (oras-py, from PyPI) with our
/// media types installs: no artifactType, oras's own config.
#[test]
fn an_artifact_pushed_by_oras_installs() {
    if !have("docker-registry") {
        return;
    }
    let ok = Command::new("python3")
        .args(["-c", "import oras.client"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        if std::env::var("TANDEM_TEST_REQUIRE_TOOLS").as_deref() == Ok("1") {
            panic!(
                "PyPI oras is required (TANDEM_TEST_REQUIRE_TOOLS=1); scripts/setup.sh installs it"
            );
        }
        eprintln!("skipped: PyPI oras not installed");
        return;
    }
    let (mut fx, img, bundle) = fixture();
    let reg = Registry::start(fx.dir.path(), Auth::None, None);
    let script = format!(
        "import oras.client\nc = oras.client.OrasClient(hostname='{h}', insecure=True)\nr = c.push(target='{h}/other/os:1.1.0', files=['u.tnd:{mt}'])\nassert r.status_code == 201, r.status_code\n",
        h = reg.host(),
        mt = tandem::fetch::oci::BUNDLE_MEDIA_TYPE
    );
    let o = Command::new("python3")
        .args(["-c", &script])
        .current_dir(bundle.parent().unwrap())
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "oras push: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    fx.extra_config = format!("[oci]\ninsecure_registries = [\"{}\"]\n", reg.host());
    install(&fx, &format!("oci://{}/other/os:1.1.0", reg.host())).unwrap();
    assert_eq!(&fx.slot(SlotGroup::B, "rootfs")[..img.len()], &img[..]);
}

/// An adaptive install over blob ranges: a device running v1 fetches only
/// what v2 adds, from the same artifact a full install streams.
#[test]
fn an_adaptive_install_from_a_registry_fetches_only_what_changed() {
    if !have("docker-registry") {
        return;
    }
    let mut fx = Fx::new(&["rootfs"]);
    fx.cdc = Some(tandem::bundle::cdc::DEFAULT);
    let v1 = pattern(3 << 20, 21);
    let mut v2 = v1.clone();
    v2[1_000_000..1_100_000].copy_from_slice(&pattern(100_000, 22));
    let mut slot = v1.clone();
    slot.resize(SLOT_SIZE as usize, 0);
    std::fs::write(fx.path("rootfs-a.img"), slot).unwrap();
    let bundle = fx.bundle("u.tnd", "1.1.0", &[("rootfs", &v2, Compression::Zstd)]);
    let reg = Registry::start(fx.dir.path(), Auth::None, None);
    let r = format!("oci://{}/os:1.1.0", reg.host());
    push(&bundle, &r, &["--plain-http"]).unwrap();
    let len = std::fs::metadata(&bundle).unwrap().len();
    let (port, seen) = cutting_proxy(reg.port, usize::MAX);
    let via = format!("127.0.0.1:{port}");
    fx.extra_config = format!("[oci]\ninsecure_registries = [\"{via}\"]\n");
    let rep = install(&fx, &format!("oci://{via}/os:1.1.0")).unwrap();
    assert_eq!(&fx.slot(SlotGroup::B, "rootfs")[..v2.len()], &v2[..]);
    let t = rep.transfer.expect("adaptive");
    assert!(!t.full && t.reused > 2 << 20, "{t:?}");
    assert!(t.fetched < len / 3, "{t:?} of {len}");
    // Every blob request was a range.
    let ranges = seen.lock().unwrap().clone();
    assert!(ranges.iter().all(|r| r.starts_with("bytes=")), "{ranges:?}");
}

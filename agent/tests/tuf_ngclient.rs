//! python-tuf's ngclient consumes a repository made by `tandem repo`:
//! a delegated channel target after init and add, then again after a root
//! rotation and a re-signed timestamp; a withdrawn target is gone; a
//! tampered bundle on the server is refused.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::channel::repo;
use common::*;
use tandem::bundle::manifest::Compression;

fn ngclient(venv: &Path, srv: &http::Server, root: &Path, work: &Path, target: &str) -> Output {
    Command::new(venv.join("bin/python"))
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tuf/ngclient.py"))
        .arg(&srv.url)
        .arg(format!("{}/targets", srv.url))
        .arg(root)
        .arg(work)
        .arg(target)
        .output()
        .unwrap()
}

#[test]
fn python_tuf_consumes_a_tandem_repo() {
    let Some(venv) = pytuf::venv() else {
        return tools::skip(
            "python_tuf_consumes_a_tandem_repo",
            &format!(
                "python-tuf in a venv (TANDEM_PYTUF_VENV, default {})",
                pytuf::DEFAULT_VENV
            ),
        );
    };
    let d = tempfile::tempdir().unwrap();
    let r = d.path().join("repo");
    let rs = r.to_str().unwrap();
    repo(&["init", rs, "--channel", "stable", "--channel", "beta"]);
    let fx = Fx::new(&["rootfs"]);
    let b = fx.bundle(
        "os-1.1.0.tnd",
        "1.1.0",
        &[("rootfs", &pattern(50_000, 9), Compression::Zstd)],
    );
    repo(&[
        "add",
        rs,
        "--channel",
        "stable",
        b.to_str().unwrap(),
        "--wave",
        "50@0",
        "--wave",
        "100@1",
    ]);
    // The same version again under another name: refused, nothing copied.
    let again = d.path().join("os-1.1.0-again.tnd");
    std::fs::copy(&b, &again).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(["repo", "add", rs, "--channel", "stable"])
        .arg(&again)
        .output()
        .unwrap();
    assert!(
        !o.status.success() && text(&o).contains("already publishes 1.1.0"),
        "{}",
        text(&o)
    );
    let stored = std::fs::read_dir(r.join("repository/targets/stable"))
        .unwrap()
        .count();
    assert_eq!(stored, 1, "the refused bundle was not copied");
    let srv = http::serve_dir(&r.join("repository"));
    let root = r.join("repository/1.root.json");
    let work = d.path().join("client");

    let o = ngclient(&venv, &srv, &root, &work, "stable/os-1.1.0.tnd");
    assert!(o.status.success(), "{}", text(&o));
    let len = std::fs::metadata(&b).unwrap().len();
    assert_eq!(text(&o).trim(), format!("ok 1 {len} 1.1.0"));

    // Root rotation and a new timestamp: the client follows the chain.
    repo(&["rotate-root", rs]);
    repo(&["timestamp", rs]);
    let o = ngclient(&venv, &srv, &root, &work, "stable/os-1.1.0.tnd");
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).starts_with("ok 2 "), "{}", text(&o));

    // A target the beta role does not list is not found there.
    let o = ngclient(&venv, &srv, &root, &work, "beta/os-1.1.0.tnd");
    assert!(
        !o.status.success() && text(&o).contains("no target"),
        "{}",
        text(&o)
    );

    // Tampered bytes on the server: refused.
    let stored = std::fs::read_dir(r.join("repository/targets/stable"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".os-1.1.0.tnd"))
        .unwrap();
    let mut bytes = std::fs::read(&stored).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&stored, &bytes).unwrap();
    let fresh = d.path().join("client2");
    let o = ngclient(&venv, &srv, &root, &fresh, "stable/os-1.1.0.tnd");
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("hash") || text(&o).contains("Length"),
        "{}",
        text(&o)
    );

    // Withdrawn: gone for every client.
    repo(&["remove", rs, "--channel", "stable", "os-1.1.0.tnd"]);
    let o = ngclient(&venv, &srv, &root, &work, "stable/os-1.1.0.tnd");
    assert!(
        !o.status.success() && text(&o).contains("no target"),
        "{}",
        text(&o)
    );
}

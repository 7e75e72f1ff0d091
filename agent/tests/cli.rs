//! The `tandem` binary: commands, output and documented exit codes.

mod common;

use std::process::{Command, Output};

use common::*;
use tandem::bundle::manifest::Compression;

fn tandem(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn keygen_create_verify_install_status() {
    let fx = Fx::new(&["rootfs"]);
    let cfg = fx.write_config();
    let cfg = cfg.to_str().unwrap();
    let root = fx.dir.path().to_str().unwrap();
    let prefix = fx.path("k2");
    let o = tandem(&["keygen", "-o", prefix.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(fx.path("k2.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "secret key is private");
    // keygen refuses to overwrite a key.
    assert!(!tandem(&["keygen", "-o", prefix.to_str().unwrap()])
        .status
        .success());
    std::fs::copy(fx.path("k2.pub"), fx.path("keys/k2.pub")).unwrap();

    let img = fx.write_image("root.img", &pattern(2 << 20, 3));
    let bundle = fx.path("u.tnd");
    let o = tandem(&[
        "bundle",
        "create",
        "-o",
        bundle.to_str().unwrap(),
        "--version",
        "1.2.0",
        "--compatible",
        "tandem-test",
        "--image",
        &format!("rootfs={}", img.display()),
        "--compression",
        "zstd",
        "--key",
        fx.path("k2.key").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));

    let o = tandem(&["bundle", "info", "--json", bundle.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["manifest"]["version"], "1.2.0");
    assert_eq!(v["verified"], false);

    let o = tandem(&[
        "--root",
        root,
        "--config",
        cfg,
        "bundle",
        "verify",
        bundle.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("bundle OK"));

    let o = tandem(&[
        "--root",
        root,
        "--config",
        cfg,
        "install",
        bundle.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let o = tandem(&["--root", root, "--config", cfg, "status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["status_version"], 1);
    assert_eq!(v["slots"][1]["state"], "installed");
    assert_eq!(v["slots"][1]["version"], "1.2.0");
    assert_eq!(v["last_operation"]["result"], "succeeded");
}

#[test]
fn exit_codes() {
    let fx = Fx::new(&["rootfs"]);
    let cfg = fx.write_config();
    let cfg = cfg.to_str().unwrap();
    let root = fx.dir.path().to_str().unwrap();
    // 4: bundle refused (downgrade).
    let old = fx.bundle(
        "old.tnd",
        "0.1.0",
        &[("rootfs", &pattern(100, 1), Compression::None)],
    );
    let o = tandem(&[
        "--root",
        root,
        "--config",
        cfg,
        "install",
        old.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(
        text(&o).starts_with("error: bundle refused"),
        "{}",
        text(&o)
    );
    // 4: tampered bundle at `bundle verify` too.
    let payload = pattern(10_000, 1);
    let good = fx.bundle("g.tnd", "1.1.0", &[("rootfs", &payload, Compression::None)]);
    let mut b = std::fs::read(&good).unwrap();
    let at = b
        .windows(64)
        .position(|w| w == &payload[..64])
        .expect("the payload is stored as is");
    b[at + 5000] ^= 1;
    std::fs::write(&good, &b).unwrap();
    let o = tandem(&[
        "--root",
        root,
        "--config",
        cfg,
        "bundle",
        "verify",
        good.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    // 3: a configuration error names file and key.
    std::fs::create_dir_all(fx.path("etc/tandem/conf.d")).unwrap();
    std::fs::write(
        fx.path("etc/tandem/conf.d/10-typo.toml"),
        "[keyring]\ndirectroy = \"/x\"\n",
    )
    .unwrap();
    let o = tandem(&["--root", root, "--config", cfg, "status"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        text(&o).contains("10-typo.toml") && text(&o).contains("directroy"),
        "{}",
        text(&o)
    );
    std::fs::remove_file(fx.path("etc/tandem/conf.d/10-typo.toml")).unwrap();
    // 2: usage.
    assert_eq!(tandem(&["install"]).status.code(), Some(2));
    // 6: source unreachable.
    let o = tandem(&[
        "--root",
        root,
        "--config",
        cfg,
        "install",
        fx.path("nope.tnd").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(6), "{}", text(&o));
}

#[test]
fn shipped_default_config_parses() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/dist/config/tandem.toml"
    ))
    .unwrap();
    let s = tandem::config::parse(&[tandem::config::Source::local(
        "dist/config/tandem.toml",
        text,
    )])
    .unwrap();
    assert_eq!(s.boot_tries, 1);
    assert_eq!(s.slots.len(), 2);
}

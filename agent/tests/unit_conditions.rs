//! The boot check's unit conditions, judged by systemd itself
//! (`systemd-analyze condition`): it runs on a Tandem image, and is
//! skipped on a host where only the package is installed (its default
//! /etc/tandem/tandem.toml but no vendor key or image settings in /usr),
//! where it would otherwise fail boot-complete.target.
//!
//! systemd 252 ignores `--root` for conditions, so the test rewrites the
//! unit's absolute paths under a temporary directory.

mod common;

use std::path::Path;
use std::process::Command;

const UNIT: &str = include_str!("../dist/systemd/tandem-boot-check.service");

/// The unit's Condition*= lines with /etc and /usr moved under `root`.
fn conditions(root: &Path) -> Vec<String> {
    let r = root.display().to_string();
    UNIT.lines()
        .filter(|l| l.starts_with("Condition"))
        .map(|l| {
            l.replace("=/", &format!("={r}/"))
                .replace("=|/", &format!("=|{r}/"))
        })
        .collect()
}

fn holds(root: &Path) -> bool {
    let out = Command::new("systemd-analyze")
        .arg("condition")
        .args(conditions(root))
        .output()
        .unwrap();
    out.status.success()
}

fn touch(root: &Path, path: &str) {
    let p = root.join(path);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, "").unwrap();
}

#[test]
fn boot_check_runs_on_tandem_images_only() {
    if !common::tools::have("systemd-analyze") {
        return common::tools::skip("boot_check_runs_on_tandem_images_only", "systemd-analyze");
    }
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    assert!(
        conditions(root)
            .iter()
            .all(|c| c.contains(&*root.to_string_lossy())),
        "every condition names a path: {:?}",
        conditions(root)
    );
    assert!(!holds(root), "nothing installed");
    // What `dpkg -i tandem_*.deb` leaves on an ordinary host.
    touch(root, "etc/tandem/tandem.toml");
    std::fs::create_dir_all(root.join("usr/lib/tandem/keys")).unwrap();
    assert!(!holds(root), "package only: the boot check must not run");
    // A Tandem image: its vendor key in /usr.
    touch(root, "usr/lib/tandem/keys/vendor.pub");
    assert!(holds(root), "image with a vendor key");
    // ...or its settings (a keyring elsewhere, its version) in /usr.
    std::fs::remove_file(root.join("usr/lib/tandem/keys/vendor.pub")).unwrap();
    touch(root, "usr/lib/tandem/conf.d/00-image.toml");
    assert!(holds(root), "image with settings in /usr/lib/tandem/conf.d");
    // Without any configuration there is nothing to check either.
    std::fs::remove_file(root.join("etc/tandem/tandem.toml")).unwrap();
    assert!(!holds(root), "no /etc/tandem/tandem.toml");
}

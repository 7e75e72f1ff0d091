//! The state store is root's alone: another user can neither take the
//! operation lock (which would freeze updates and fail every trial) nor
//! read state.json (which names sources). Needs root to switch to
//! `nobody`; as another user it reports that it was skipped.

mod common;

use std::process::Command;

use common::*;
use tandem::bundle::manifest::Compression;

fn as_nobody(args: &[&str]) -> std::process::Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn nobody_cannot_take_the_lock_or_read_the_state() {
    if tandem::sys::euid() != 0 {
        eprintln!("skipped: needs root to run commands as nobody");
        return;
    }
    let fx = Fx::new(&["rootfs"]);
    // Like a real device: the fixture directory is world-searchable.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(fx.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let b = fx.bundle(
        "u.tnd",
        "1.1.0",
        &[("rootfs", &pattern(1000, 1), Compression::None)],
    );
    fx.install(&b).unwrap();
    let state = fx.path("state");
    let lock = state.join("lock");
    let json = state.join("state.json");
    assert!(lock.exists() && json.exists());
    for (what, args) in [
        (
            "take the lock",
            vec!["flock", "-n", lock.to_str().unwrap(), "true"],
        ),
        ("read the state", vec!["cat", json.to_str().unwrap()]),
    ] {
        let o = as_nobody(&args);
        assert!(
            !o.status.success(),
            "nobody could {what}: {}",
            String::from_utf8_lossy(&o.stdout)
        );
    }
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(&lock), 0o600);
    assert_eq!(mode(&json), 0o600);
    // And root still can, of course: the lock is free again.
    tandem::state::Store::new(&state).lock().unwrap();
}

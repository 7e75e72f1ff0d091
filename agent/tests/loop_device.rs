//! Installs into loop-device slots (block devices, O_DIRECT path). Needs
//! root and losetup; without them the test says so and passes, unless
//! TANDEM_TEST_REQUIRE_LOOP=1 (set in CI), where it fails.

mod common;

use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::Command;

use common::*;
use tandem::bundle::manifest::Compression;
use tandem::fsm::SlotState;
use tandem::slot::SlotGroup;

struct Loop(String);

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

fn attach(file: &PathBuf) -> Option<Loop> {
    let out = Command::new("losetup")
        .args(["-f", "--show"])
        .arg(file)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| Loop(String::from_utf8_lossy(&out.stdout).trim().to_string()))
}

/// Two loop devices of `size` bytes over files filled with `pattern(…,
/// 0xA)` and `pattern(…, 0xB)`; `None` (after saying so) where loop devices
/// cannot be had and are not required.
fn loop_pair(fx: &Fx, size: usize) -> Option<(Loop, Loop)> {
    let fa = fx.path("loop-a.img");
    let fb = fx.path("loop-b.img");
    std::fs::write(&fa, pattern(size, 0xA)).unwrap();
    std::fs::write(&fb, pattern(size, 0xB)).unwrap();
    match (attach(&fa), attach(&fb)) {
        (Some(a), Some(b)) => Some((a, b)),
        _ => {
            if std::env::var("TANDEM_TEST_REQUIRE_LOOP").as_deref() == Ok("1") {
                panic!("loop devices unavailable but TANDEM_TEST_REQUIRE_LOOP=1");
            }
            eprintln!("SKIPPED: cannot attach loop devices (needs root and losetup)");
            None
        }
    }
}

#[test]
fn install_into_loop_devices() {
    let fx = Fx::new(&["rootfs"]);
    let size = 24 << 20;
    let Some((la, lb)) = loop_pair(&fx, size) else {
        return;
    };
    // Slot devices are the loop devices; sizes come from the devices.
    let p = fx.dir.path().display().to_string();
    let cfg = format!(
        "compatible = \"tandem-test\"\n[keyring]\ndirectory = \"{p}/keys\"\n[state]\ndirectory = \"{p}/state\"\n[boot]\ncmdline = \"{p}/cmdline\"\n[slots.a.rootfs]\ndevice = \"{}\"\n[slots.b.rootfs]\ndevice = \"{}\"\n",
        la.0, lb.0
    );
    let settings = tandem::config::parse(&[tandem::config::Source::image("t.toml", cfg)]).unwrap();
    let before_a = std::fs::read(&la.0).unwrap();
    // An odd size exercises the unaligned tail after the O_DIRECT body.
    let img = pattern((9 << 20) + 777, 0x5);
    let bundle = fx.bundle("u.tnd", "1.1.0", &[("rootfs", &img, Compression::Zstd)]);
    let ctx = tandem::install::Context {
        settings: &settings,
        cmdline: "tandem.slot=a".into(),
        now: 0,
    };
    let src = tandem::fetch::Source::File(bundle.clone());
    let r = tandem::install::install(
        &ctx,
        "u.tnd",
        || tandem::fetch::open(&src, &settings.http, &Default::default()),
        &Default::default(),
        None,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(r.target, SlotGroup::B);
    let after_b = std::fs::read(&lb.0).unwrap();
    assert_eq!(after_b.len(), size);
    assert_eq!(&after_b[..img.len()], &img[..]);
    assert_eq!(
        &after_b[img.len()..],
        &pattern(size, 0xB)[img.len()..],
        "bytes past the image untouched"
    );
    assert_eq!(
        std::fs::read(&la.0).unwrap(),
        before_a,
        "booted device untouched"
    );
    let st = tandem::state::Store::new(&fx.path("state")).load().unwrap();
    assert_eq!(st.slot(SlotGroup::B).state, SlotState::Installed);

    // A bundle too large for the device is refused before writing.
    let big = pattern(size + 1, 1);
    let bundle = fx.bundle("big.tnd", "1.2.0", &[("rootfs", &big, Compression::Zstd)]);
    let src = tandem::fetch::Source::File(bundle);
    let e = tandem::install::install(
        &ctx,
        "big.tnd",
        || tandem::fetch::open(&src, &settings.http, &Default::default()),
        &Default::default(),
        None,
        &mut |_| {},
    )
    .unwrap_err();
    assert!(e.to_string().contains("larger than the target slot"), "{e}");
    assert_eq!(std::fs::read(&lb.0).unwrap(), after_b);
}

/// The booted group's device under another name, and a device someone
/// holds: neither is ever written, whatever the configuration says.
#[test]
fn the_booted_device_and_a_busy_one_are_refused() {
    let fx = Fx::new(&["rootfs"]);
    let size = 8 << 20;
    let Some((la, lb)) = loop_pair(&fx, size) else {
        return;
    };
    let p = fx.dir.path().display().to_string();
    let alias = fx.path("alias-of-a");
    // A second device node for the same device (a link would be resolved
    // by the configuration's own check; a node is only caught by number).
    use std::os::unix::fs::MetadataExt;
    let rdev = std::fs::metadata(&la.0).unwrap().rdev();
    let ok = Command::new("mknod")
        .arg(&alias)
        .arg("b")
        .arg(libc::major(rdev).to_string())
        .arg(libc::minor(rdev).to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok, "mknod");
    let settings = |b: &str| {
        let cfg = format!(
            "compatible = \"tandem-test\"\n[keyring]\ndirectory = \"{p}/keys\"\n[state]\ndirectory = \"{p}/state\"\n[boot]\ncmdline = \"{p}/cmdline\"\n[slots.a.rootfs]\ndevice = \"{}\"\n[slots.b.rootfs]\ndevice = \"{b}\"\n",
            la.0
        );
        tandem::config::parse(&[tandem::config::Source::image("t.toml", cfg)]).unwrap()
    };
    let bundle = fx.bundle(
        "u.tnd",
        "1.1.0",
        &[("rootfs", &pattern(100_000, 3), Compression::None)],
    );
    let src = tandem::fetch::Source::File(bundle);
    let run = |s: &tandem::config::Settings| {
        let ctx = tandem::install::Context {
            settings: s,
            cmdline: "tandem.slot=a".into(),
            now: 0,
        };
        tandem::install::install(
            &ctx,
            "u.tnd",
            || tandem::fetch::open(&src, &s.http, &Default::default()),
            &Default::default(),
            None,
            &mut |_| {},
        )
    };
    let e = run(&settings(&alias.display().to_string()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("part of the booted slot group"), "{e}");
    assert_eq!(std::fs::read(&la.0).unwrap(), pattern(size, 0xA));
    // b held exclusively by someone else (as a mount would): busy.
    let held = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_EXCL)
        .open(&lb.0)
        .unwrap();
    let e = run(&settings(&lb.0)).unwrap_err().to_string();
    assert!(e.contains("is busy"), "{e}");
    drop(held);
    assert_eq!(std::fs::read(&lb.0).unwrap(), pattern(size, 0xB));
    run(&settings(&lb.0)).unwrap();
}

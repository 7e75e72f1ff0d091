//! Every documented exit code (docs/cli.md) for every documented cause,
//! through the real `tandem` binary working directly (no daemon); 8 and 9
//! come from the daemon and are asserted in dbus.rs. Each case asserts the
//! exact code, not just a failure.

mod common;

use std::process::Output;

use common::http::{serve, Fault};
use common::*;
use tandem::bundle::manifest::Compression;

fn run(fx: &Fx, args: &[&str]) -> Output {
    fx.tandem().arg("--direct").args(args).output().unwrap()
}

/// Runs `args` and requires exit code `code` and `needle` in the output.
fn expect(fx: &Fx, args: &[&str], code: i32, needle: &str) {
    let o = run(fx, args);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(code), "{args:?}: {t}");
    assert!(t.contains(needle), "{args:?}: want {needle:?} in {t}");
}

fn device() -> Fx {
    let mut fx = Fx::new(&["rootfs"]);
    fx.extra_config =
        "[http]\nstall_timeout_secs = 1\nconnect_timeout_secs = 2\nretries = 2\n".into();
    fx.write_config();
    fx
}

fn good(fx: &Fx, version: &str) -> std::path::PathBuf {
    fx.bundle(
        &format!("{version}.tnd"),
        version,
        &[("rootfs", &pattern(200_000, 7), Compression::None)],
    )
}

#[test]
fn refused_bundles_exit_4() {
    let fx = device();
    let b = good(&fx, "1.1.0");
    let bytes = std::fs::read(&b).unwrap();
    let file = |name: &str, data: &[u8]| {
        let p = fx.path(name);
        std::fs::write(&p, data).unwrap();
        p.display().to_string()
    };
    // signature: a byte of the signed manifest changed
    let mut sig = bytes.clone();
    let at = sig.windows(7).position(|w| w == b"\"1.1.0\"").unwrap();
    sig[at + 1] = b'9';
    expect(&fx, &["install", &file("sig.tnd", &sig)], 4, "signature");
    // manifest: not a bundle at all
    expect(
        &fx,
        &["install", &file("junk.tnd", &[7u8; 4096])],
        4,
        "bundle refused",
    );
    // truncation
    let cut = file("cut.tnd", &bytes[..bytes.len() / 2]);
    expect(&fx, &["install", &cut], 4, "truncated");
    // hash: a payload byte flipped, at install and at `bundle verify`
    let mut flip = bytes.clone();
    let n = flip.len();
    flip[n - 4096] ^= 1;
    let flip = file("flip.tnd", &flip);
    expect(&fx, &["bundle", "verify", &flip], 4, "bundle refused");
    expect(
        &fx,
        &["install", &flip],
        4,
        "does not match the chunk index",
    );
    // compatible, epoch, size, version
    let other = fx.bundle_with(
        "other.tnd",
        "1.1.0",
        0,
        "someone-else",
        &[("rootfs", &pattern(100, 1), Compression::None)],
        std::slice::from_ref(&fx.key),
    );
    expect(&fx, &["install", other.to_str().unwrap()], 4, "compatible");
    let big = fx.bundle(
        "big.tnd",
        "1.1.0",
        &[(
            "rootfs",
            &pattern(SLOT_SIZE as usize + 4096, 1),
            Compression::None,
        )],
    );
    expect(
        &fx,
        &["install", big.to_str().unwrap()],
        4,
        "larger than the target slot",
    );
    let old = good(&fx, "0.9.0");
    expect(
        &fx,
        &["install", old.to_str().unwrap()],
        4,
        "older than the running",
    );
    // a replay of the running version
    let same = good(&fx, "1.0.0");
    expect(
        &fx,
        &["install", same.to_str().unwrap()],
        4,
        "already running",
    );
    // the security epoch floor
    let mut e = Fx::new(&["rootfs"]);
    e.extra_image_config = "[image]\nsecurity_epoch = 3\n".into();
    e.write_config();
    let low = e.bundle_with(
        "low.tnd",
        "2.0.0",
        2,
        "tandem-test",
        &[("rootfs", &pattern(100, 1), Compression::None)],
        std::slice::from_ref(&e.key),
    );
    expect(
        &e,
        &["install", low.to_str().unwrap()],
        4,
        "security epoch 2 is below",
    );
    // Nothing above was ever written into a slot.
    assert_eq!(
        fx.slot(tandem::slot::SlotGroup::A, "rootfs"),
        pattern(SLOT_SIZE as usize, 0xA0)
    );
}

#[test]
fn unreachable_sources_exit_6() {
    let fx = device();
    let b = good(&fx, "1.1.0");
    let bytes = std::fs::read(&b).unwrap();
    expect(
        &fx,
        &["install", fx.path("nope.tnd").to_str().unwrap()],
        6,
        "nope.tnd",
    );
    let s = serve(bytes.clone(), vec![Fault::Status(404)]);
    expect(&fx, &["install", &s.url], 6, "not found");
    let s = serve(bytes.clone(), vec![Fault::Status(503); 8]);
    expect(&fx, &["install", &s.url], 6, "503");
    // The network gives up in the middle of the manifest, and in the
    // middle of the payload: the source's fault either way, not the
    // bundle's.
    let payload_at = bytes.len() - 100_000;
    for (what, first) in [("manifest", 700), ("payload", payload_at)] {
        let mut faults = vec![Fault::DropAfter(first)];
        faults.extend(std::iter::repeat_n(Fault::DropAfter(0), 8));
        let s = serve(bytes.clone(), faults);
        let o = run(&fx, &["install", &s.url]);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(6), "give-up in the {what}: {t}");
        assert!(t.contains("giving up"), "{what}: {t}");
    }
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/b.tnd", dead.local_addr().unwrap());
    drop(dead);
    expect(&fx, &["install", &url], 6, "giving up");
}

#[test]
fn configuration_and_booted_slot_exit_3() {
    let fx = device();
    let b = good(&fx, "1.1.0");
    // The kernel command line does not say which slot runs.
    std::fs::write(fx.path("cmdline"), "console=ttyS0\n").unwrap();
    expect(&fx, &["install", b.to_str().unwrap()], 3, "tandem.slot");
    std::fs::write(fx.path("cmdline"), "tandem.slot=a\n").unwrap();
    // A typo names file and key.
    let dropin = fx.path("etc/tandem/conf.d/10-typo.toml");
    std::fs::create_dir_all(dropin.parent().unwrap()).unwrap();
    std::fs::write(&dropin, "[state]\ndirectroy = \"/x\"\n").unwrap();
    expect(&fx, &["status"], 3, "10-typo.toml");
    // A key only the image may set, in /etc.
    std::fs::write(&dropin, "[keyring]\ndirectory = \"/tmp\"\n").unwrap();
    expect(
        &fx,
        &["status"],
        3,
        "keyring.directory may only be set by the image",
    );
    std::fs::remove_file(&dropin).unwrap();
    // A keyring others may write to.
    use std::os::unix::fs::PermissionsExt;
    let key = fx.path("keys/vendor.pub");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o666)).unwrap();
    expect(
        &fx,
        &["install", b.to_str().unwrap()],
        3,
        "lets group or others write it",
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    expect(&fx, &["install", b.to_str().unwrap()], 0, "installed 1.1.0");
}

#[test]
fn busy_exits_5_and_usage_2_and_device_errors_1() {
    let fx = device();
    let b = good(&fx, "1.1.0");
    let store = tandem::state::Store::new(&fx.path("state"));
    let lock = store.lock().unwrap();
    expect(
        &fx,
        &["install", b.to_str().unwrap()],
        5,
        "another tandem operation",
    );
    expect(&fx, &["mark-good"], 5, "another tandem operation");
    drop(lock);
    expect(&fx, &["install"], 2, "SOURCE");
    expect(&fx, &["mark-bad", "c"], 2, "invalid");
    // A slot "device" that is a directory: an I/O problem, not the bundle's.
    let mut d = Fx::new(&["rootfs"]);
    d.extra_config = format!(
        "[slots.b.rootfs]\ndevice = \"{}\"\n",
        d.path("dir-slot").display()
    );
    std::fs::create_dir(d.path("dir-slot")).unwrap();
    d.write_config();
    let b = good(&d, "1.1.0");
    expect(&d, &["install", b.to_str().unwrap()], 1, "directory");
}

#[test]
fn slot_state_refusals_exit_7() {
    let fx = device();
    let b = good(&fx, "1.1.0");
    expect(&fx, &["install", b.to_str().unwrap()], 0, "installed 1.1.0");
    // b is installed, never tried: no rollback to it.
    expect(&fx, &["rollback"], 7, "never been booted");
    // Booted b on trial (installed, uncommitted): another install would
    // overwrite a, the only known-good slot.
    std::fs::write(fx.path("cmdline"), "tandem.slot=b\n").unwrap();
    let c = good(&fx, "1.2.0");
    expect(&fx, &["install", c.to_str().unwrap()], 7, "on trial");
    // a is invalid after a cut-off install: marking the booted b bad
    // would leave nothing to boot.
    std::fs::write(fx.path("cmdline"), "tandem.slot=a\n").unwrap();
    expect(&fx, &["mark-good"], 0, "committed");
    std::fs::write(fx.path("cmdline"), "tandem.slot=b\n").unwrap();
    let mut st = fx.state();
    st.apply(
        tandem::slot::SlotGroup::A,
        tandem::fsm::Event::InstallStarted,
    )
    .unwrap();
    tandem::state::Store::new(&fx.path("state"))
        .save(&st)
        .unwrap();
    expect(&fx, &["mark-bad"], 7, "would leave nothing to boot");
    expect(&fx, &["mark-bad", "--force"], 0, "marked bad");
}

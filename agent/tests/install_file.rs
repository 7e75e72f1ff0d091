//! Installs into file-backed slots through the library API.

mod common;

use common::*;
use tandem::bundle::manifest::Compression;
use tandem::fsm::SlotState;
use tandem::install::Options;
use tandem::slot::SlotGroup;
use tandem::state::OperationResult;

#[test]
fn installs_into_the_inactive_group_and_records_it() {
    let fx = Fx::new(&["rootfs", "boot"]);
    let root = pattern(3 << 20, 1);
    let boot = pattern(100_000, 2);
    let before_a = (
        fx.slot(SlotGroup::A, "rootfs"),
        fx.slot(SlotGroup::A, "boot"),
    );
    let b = fx.bundle(
        "u.tnd",
        "1.1.0",
        &[
            ("rootfs", &root, Compression::Zstd),
            ("boot", &boot, Compression::None),
        ],
    );
    let r = fx.install(&b).unwrap();
    assert_eq!(r.target, SlotGroup::B);
    assert_eq!(r.bytes, (root.len() + boot.len()) as u64);
    assert_eq!(&fx.slot(SlotGroup::B, "rootfs")[..root.len()], &root[..]);
    assert_eq!(&fx.slot(SlotGroup::B, "boot")[..boot.len()], &boot[..]);
    assert_eq!(
        (
            fx.slot(SlotGroup::A, "rootfs"),
            fx.slot(SlotGroup::A, "boot")
        ),
        before_a,
        "booted group untouched"
    );
    let st = fx.state();
    let rec = st.slot(SlotGroup::B);
    assert_eq!(rec.state, SlotState::Installed);
    assert_eq!(rec.version.as_ref().unwrap().to_string(), "1.1.0");
    assert_eq!(rec.images.len(), 2);
    assert_eq!(rec.images[0].sha256, sha(&root));
    assert_eq!(st.slot(SlotGroup::A).state, SlotState::Unknown);
    let op = st.last_operation.unwrap();
    assert_eq!(op.result, OperationResult::Succeeded);
    assert_eq!(op.target, Some(SlotGroup::B));
}

/// A class with one image per slot group (a unified kernel image whose
/// signed command line names its slot): each install writes the variant
/// for its target, and the other one is skipped unread.
#[test]
fn per_group_images_go_to_their_own_group() {
    let fx = Fx::new(&["rootfs", "uki"]);
    let root = pattern(1 << 20, 1);
    let (for_a, for_b) = (pattern(70_000, 2), pattern(90_000, 3));
    let images = [
        ("rootfs", &root[..], Compression::Zstd),
        ("uki@a", &for_a[..], Compression::Zstd),
        ("uki@b", &for_b[..], Compression::None),
    ];
    let b = fx.bundle("u.tnd", "1.1.0", &images);
    let m = tandem::bundle::UnverifiedBundle::open(std::fs::File::open(&b).unwrap())
        .unwrap()
        .manifest()
        .clone();
    assert_eq!(m.features, ["group-images"]);
    let uki_a = fx.slot(SlotGroup::A, "uki");
    let r = fx.install(&b).unwrap();
    assert_eq!((r.target, r.images), (SlotGroup::B, 2));
    assert_eq!(r.bytes, (root.len() + for_b.len()) as u64);
    assert_eq!(&fx.slot(SlotGroup::B, "uki")[..for_b.len()], &for_b[..]);
    assert_eq!(
        fx.slot(SlotGroup::A, "uki"),
        uki_a,
        "booted group untouched"
    );
    let rec = fx.state().slot(SlotGroup::B).images.clone();
    assert_eq!(rec[1].sha256, sha(&for_b));
    // On a device booted from b, the same bundle writes a's variant to a.
    let fx = Fx::new(&["rootfs", "uki"]);
    std::fs::write(fx.path("cmdline"), "tandem.slot=b").unwrap();
    let b = fx.bundle("u.tnd", "1.1.0", &images);
    let uki_b = fx.slot(SlotGroup::B, "uki");
    let r = fx.install(&b).unwrap();
    assert_eq!(r.target, SlotGroup::A);
    assert_eq!(&fx.slot(SlotGroup::A, "uki")[..for_a.len()], &for_a[..]);
    assert_eq!(
        fx.slot(SlotGroup::B, "uki"),
        uki_b,
        "booted group untouched"
    );
}

#[test]
fn booted_b_writes_a() {
    let fx = Fx::new(&["rootfs"]);
    std::fs::write(fx.path("cmdline"), "tandem.slot=b").unwrap();
    let before_b = fx.slot(SlotGroup::B, "rootfs");
    let img = pattern(5000, 3);
    let b = fx.bundle("u.tnd", "2.0.0", &[("rootfs", &img, Compression::None)]);
    assert_eq!(fx.install(&b).unwrap().target, SlotGroup::A);
    assert_eq!(&fx.slot(SlotGroup::A, "rootfs")[..5000], &img[..]);
    assert_eq!(fx.slot(SlotGroup::B, "rootfs"), before_b);
}

#[test]
fn unknown_booted_slot_refuses_to_write() {
    let fx = Fx::new(&["rootfs"]);
    std::fs::write(fx.path("cmdline"), "root=/dev/sda2").unwrap();
    let snap = fx.snapshot();
    let b = fx.bundle(
        "u.tnd",
        "2.0.0",
        &[("rootfs", &pattern(10, 1), Compression::None)],
    );
    let e = fx.install(&b).unwrap_err();
    assert!(e.to_string().contains("tandem.slot="), "{e}");
    assert_eq!(fx.snapshot(), snap);
}

#[test]
fn exact_slot_size_fits_and_the_running_version_installs_only_with_force() {
    let fx = Fx::new(&["rootfs"]);
    let img = pattern(SLOT_SIZE as usize, 9);
    let snap = fx.snapshot();
    // 1.0.0 is what runs: a replay of it is refused, nothing written.
    let b = fx.bundle("u.tnd", "1.0.0", &[("rootfs", &img, Compression::Zstd)]);
    let e = fx.install(&b).unwrap_err();
    assert!(e.to_string().contains("already running"), "{e}");
    assert_eq!(
        tandem::ops::install_outcome(&e),
        tandem::ops::Outcome::Refused
    );
    assert_eq!(fx.snapshot(), snap);
    let force = Options {
        force: true,
        ..Default::default()
    };
    fx.install_opts(&b, &force).unwrap();
    fx.install_opts(&b, &force).unwrap();
    assert_eq!(fx.slot(SlotGroup::B, "rootfs"), img);
}

#[test]
fn zstd_in_any_framing_with_or_without_a_chunk_index_installs_the_same_bytes() {
    use tandem::bundle::writer::{self, BundleMeta, ImageInput};
    use tandem::bundle::UnverifiedBundle;
    let fx = Fx::new(&["rootfs"]);
    // Three whole 1 MiB frames and a partial one.
    let img = pattern((3 << 20) + 12_345, 5);
    let path = fx.write_image("z.img", &img);
    let meta = BundleMeta {
        version: "1.1.0".parse().unwrap(),
        compatible: "tandem-test".into(),
        security_epoch: 0,
        created_unix: 1_795_651_200,
        description: None,
    };
    for (i, (frame_size, chunk_size)) in [
        (None, None),
        (None, Some(writer::CHUNK_SIZE)),
        (Some(4096), Some(4096)),
        (Some(64 << 10), Some(16 << 10)),
        (Some(writer::FRAME_SIZE), None),
        (Some(writer::FRAME_SIZE), Some(writer::CHUNK_SIZE)),
    ]
    .into_iter()
    .enumerate()
    {
        let out = fx.path(&format!("z{i}.tnd"));
        let input = ImageInput {
            slot_class: tandem::slot::SlotClass::new("rootfs").unwrap(),
            path: path.clone(),
            compression: Compression::Zstd,
            frame_size,
            chunk_size,
            cdc: None,
            verity: None,
            group: None,
        };
        writer::create(&out, &meta, &[input], std::slice::from_ref(&fx.key)).unwrap();
        let b = UnverifiedBundle::open(std::fs::File::open(&out).unwrap()).unwrap();
        assert_eq!(b.manifest().images[0].frame_size, frame_size);
        assert_eq!(
            b.manifest().images[0].chunks.as_ref().map(|c| c.size),
            chunk_size
        );
        std::fs::write(fx.path("z.img"), pattern(img.len(), 6)).unwrap(); // not read again
        fx.install(&out).unwrap();
        assert_eq!(
            &fx.slot(SlotGroup::B, "rootfs")[..img.len()],
            &img[..],
            "{frame_size:?}"
        );
        std::fs::write(&path, &img).unwrap();
    }
}

#[test]
fn threshold_two_with_two_signers() {
    let fx = Fx::two_trusted_keys_threshold_two();
    let img = pattern(1000, 4);
    let keys = [fx.key.clone(), fx.other_key.clone()];
    let b = fx.bundle_with(
        "u.tnd",
        "1.1.0",
        0,
        "tandem-test",
        &[("rootfs", &img, Compression::None)],
        &keys,
    );
    fx.install(&b).unwrap();
}

#[test]
fn a_second_install_while_one_runs_is_refused() {
    let fx = Fx::new(&["rootfs"]);
    let store = tandem::state::Store::new(&fx.path("state"));
    let _held = store.lock().unwrap();
    let b = fx.bundle(
        "u.tnd",
        "1.1.0",
        &[("rootfs", &pattern(10, 1), Compression::None)],
    );
    let e = fx.install(&b).unwrap_err();
    assert!(e.to_string().contains("another tandem operation"), "{e}");
}

#[test]
fn corrupt_state_is_reported_not_reset() {
    let fx = Fx::new(&["rootfs"]);
    std::fs::create_dir_all(fx.path("state")).unwrap();
    std::fs::write(fx.path("state/state.json"), "{\"schema\": 1, \"slo").unwrap();
    let snap = fx.snapshot();
    let b = fx.bundle(
        "u.tnd",
        "1.1.0",
        &[("rootfs", &pattern(10, 1), Compression::None)],
    );
    let e = fx.install(&b).unwrap_err().to_string();
    assert!(e.contains("corrupt") && e.contains("state.json"), "{e}");
    assert_eq!(
        std::fs::read_to_string(fx.path("state/state.json")).unwrap(),
        "{\"schema\": 1, \"slo"
    );
    assert_eq!(fx.snapshot(), snap);
}

#[test]
fn signing_later_with_bundle_sign() {
    let fx = Fx::new(&["rootfs"]);
    let img = pattern(70_000, 5);
    let unsigned = fx.bundle_with(
        "u.tnd",
        "1.1.0",
        0,
        "tandem-test",
        &[("rootfs", &img, Compression::Zstd)],
        &[],
    );
    assert!(fx
        .install(&unsigned)
        .unwrap_err()
        .to_string()
        .contains("no signature"));
    let signed = fx.path("signed.tnd");
    tandem::bundle::writer::sign(&unsigned, &signed, std::slice::from_ref(&fx.key)).unwrap();
    fx.install(&signed).unwrap();
    assert_eq!(&fx.slot(SlotGroup::B, "rootfs")[..img.len()], &img[..]);
    // Signing in place works too and keeps the payload bytes.
    tandem::bundle::writer::sign(&unsigned, &unsigned, std::slice::from_ref(&fx.key)).unwrap();
    assert_eq!(
        std::fs::read(&unsigned).unwrap(),
        std::fs::read(&signed).unwrap()
    );
}

#[test]
fn created_bundles_are_reproducible() {
    let fx = Fx::new(&["rootfs"]);
    let img = pattern(300_000, 6);
    let a = fx.bundle("a.tnd", "1.1.0", &[("rootfs", &img, Compression::Zstd)]);
    let b = fx.bundle("b.tnd", "1.1.0", &[("rootfs", &img, Compression::Zstd)]);
    assert_eq!(std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
}

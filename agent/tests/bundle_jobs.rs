//! `bundle create` compresses frames on several threads: the bundle must be
//! the same, byte for byte, whatever the number, and still verify.

mod common;

use common::text;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest, Sha256};
use tandem::bundle::chunks::ChunkCheck;
use tandem::bundle::keys::{self, keypair_from_seed, Keyring};
use tandem::bundle::manifest::Compression;
use tandem::bundle::writer::{self, BundleMeta, CreateOptions, ImageInput};
use tandem::bundle::UnverifiedBundle;
use tandem::slot::SlotClass;

/// An image that compresses like a filesystem: text-like runs, noise (which
/// zstd stores nearly raw) and zeros, in stretches that do not line up with
/// frames, so frames differ in size and cost and finish out of order.
fn image(len: usize, seed: u32) -> Vec<u8> {
    let mut x = 0x9E37_79B9 ^ seed;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    };
    let words: [&[u8]; 6] = [b"lib", b"usr ", b"share/", b"ELF\x7f", b"\n", b"doc "];
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let run = (next() % 300_000) as usize + 1;
        match next() % 3 {
            0 => {
                let end = out.len() + run;
                while out.len() < end {
                    out.extend_from_slice(words[(next() % 6) as usize]);
                }
            }
            1 => out.extend((0..run).map(|_| next() as u8)),
            _ => out.resize(out.len() + run, 0),
        }
    }
    out.truncate(len);
    out
}

fn meta() -> BundleMeta {
    BundleMeta {
        version: "1.4.0".parse().unwrap(),
        compatible: "tandem-test".into(),
        security_epoch: 0,
        created_unix: 1_795_651_200,
        description: None,
    }
}

/// The bundle's images, decoded, after checking its signature, every chunk
/// against the index and every image against its hash.
fn verified_images(bundle: &Path, key: &ed25519_dalek::SigningKey) -> Vec<Vec<u8>> {
    let mut ring = Keyring::default();
    ring.add(key.verifying_key(), "test").unwrap();
    let f = std::fs::File::open(bundle).unwrap();
    let mut b = UnverifiedBundle::open(f).unwrap().verify(&ring, 1).unwrap();
    let mut images = Vec::new();
    while let Some(next) = b.next_image().unwrap() {
        let img = next.image.clone();
        let mut data = Vec::new();
        tandem::bundle::decode(next.payload, &img)
            .unwrap()
            .read_to_end(&mut data)
            .unwrap();
        assert_eq!(data.len() as u64, img.size);
        assert_eq!(hex::encode(Sha256::digest(&data)), img.sha256);
        if let Some(list) = &next.chunks {
            let mut check = ChunkCheck::new(list);
            check.update(&data).unwrap();
            check.finish().unwrap();
        }
        images.push(data);
    }
    images
}

#[test]
fn one_three_and_four_jobs_make_the_same_bundle_and_it_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let key = keypair_from_seed([7; 32]);
    // Five whole 1 MiB frames and an odd tail; 37 frames of 64 KiB with
    // 16 KiB chunks and a tail; an uncompressed image; and content-defined
    // chunks, a zstd frame each.
    let root = image((5 << 20) + 12_345, 1);
    let usr = image((37 << 16) + 4097, 2);
    let boot = image(100_001, 3);
    let data = image((2 << 20) + 333, 5);
    let write = |name: &str, data: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, data).unwrap();
        p
    };
    let input = |class: &str, path: PathBuf, compression, frame, chunk| ImageInput {
        slot_class: SlotClass::new(class).unwrap(),
        path,
        compression,
        frame_size: frame,
        chunk_size: chunk,
        cdc: None,
        verity: None,
        group: None,
    };
    let inputs = [
        input(
            "rootfs",
            write("root.img", &root),
            Compression::Zstd,
            Some(writer::FRAME_SIZE),
            Some(writer::CHUNK_SIZE),
        ),
        input(
            "usr",
            write("usr.img", &usr),
            Compression::Zstd,
            Some(64 << 10),
            Some(16 << 10),
        ),
        input(
            "boot",
            write("boot.img", &boot),
            Compression::None,
            None,
            Some(writer::CHUNK_SIZE),
        ),
        ImageInput {
            cdc: Some(tandem::bundle::cdc::DEFAULT),
            ..input(
                "data",
                write("data.img", &data),
                Compression::Zstd,
                None,
                None,
            )
        },
    ];
    let build = |jobs: usize| {
        let out = dir.path().join(format!("j{jobs}.tnd"));
        let m = writer::create_with(
            &out,
            &meta(),
            &inputs,
            std::slice::from_ref(&key),
            &CreateOptions { jobs },
        )
        .unwrap();
        (std::fs::read(&out).unwrap(), m, out)
    };
    let (one, m1, one_path) = build(1);
    // The payloads really are many frames, so several threads had work.
    assert_eq!(m1.images[0].frame_size, Some(writer::FRAME_SIZE));
    assert_eq!(m1.images[1].frame_size, Some(64 << 10));
    assert!(m1.images[3].cdc.as_ref().unwrap().count > 100);
    for jobs in [3, 4] {
        let (many, m, _) = build(jobs);
        assert_eq!(m, m1, "jobs {jobs}: manifest");
        assert!(many == one, "jobs {jobs}: the bundle differs from jobs 1");
    }
    assert_eq!(verified_images(&one_path, &key), [root, usr, boot, data]);
}

fn tandem(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(args)
        .env("SOURCE_DATE_EPOCH", "1795651200")
        .output()
        .unwrap()
}

#[test]
fn bundle_create_jobs_gives_the_same_file_and_bundle_verify_accepts_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let key = keypair_from_seed([8; 32]);
    std::fs::write(d("vendor.key"), keys::format_secret(&key, "test")).unwrap();
    std::fs::create_dir(d("keys")).unwrap();
    std::fs::write(
        d("keys/vendor.pub"),
        keys::format_public(&key.verifying_key(), "test"),
    )
    .unwrap();
    // Three 1 MiB frames and an odd tail.
    let img = image((3 << 20) + 777, 4);
    std::fs::write(d("root.img"), &img).unwrap();
    let create = |out: &str, chunking: Option<&str>, jobs: Option<&str>| {
        let mut args = vec![
            "bundle".to_string(),
            "create".into(),
            "-o".into(),
            d(out),
            "--version".into(),
            "2.0.0".into(),
            "--compatible".into(),
            "tandem-test".into(),
            "--image".into(),
            format!("rootfs={}", d("root.img")),
            "--compression".into(),
            "zstd".into(),
            "--key".into(),
            d("vendor.key"),
        ];
        if let Some(c) = chunking {
            args.extend(["--chunking".into(), c.into()]);
        }
        if let Some(j) = jobs {
            args.extend(["--jobs".into(), j.into()]);
        }
        tandem(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    // 1 MiB frames (what --jobs parallelizes), then the default chunking
    // (content-defined): the same file for any --jobs.
    for (chunking, what) in [
        (Some("fixed"), "sha256 ok, 4 chunks ok\n"),
        (None, "sha256 ok"),
    ] {
        for (out, jobs) in [
            ("j1.tnd", Some("1")),
            ("j3.tnd", Some("3")),
            ("jd.tnd", None),
        ] {
            let o = create(out, chunking, jobs);
            assert!(
                o.status.success(),
                "{chunking:?} --jobs {jobs:?}: {}",
                text(&o)
            );
        }
        let one = std::fs::read(d("j1.tnd")).unwrap();
        assert!(
            one == std::fs::read(d("j3.tnd")).unwrap(),
            "{chunking:?} --jobs 3"
        );
        assert!(
            one == std::fs::read(d("jd.tnd")).unwrap(),
            "{chunking:?} default --jobs"
        );

        let o = tandem(&["bundle", "verify", "--keyring", &d("keys"), &d("j3.tnd")]);
        assert!(o.status.success(), "{chunking:?}: {}", text(&o));
        assert!(text(&o).contains(what), "{chunking:?}: {}", text(&o));
        assert!(verified_images(Path::new(&d("j3.tnd")), &key) == [img.clone()]);
    }

    let o = create("j0.tnd", None, Some("0"));
    assert_eq!(o.status.code(), Some(2), "--jobs 0: {}", text(&o));
    assert!(!Path::new(&d("j0.tnd")).exists());
}

//! OCI bases: layouts and docker archives this test writes itself (tar
//! crate + gzip/zstd), applied with whiteouts, digests and path confinement.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use sha2::{Digest, Sha256};
use tandem_image::oci;

enum E<'a> {
    File(&'a str, &'a [u8], u32),
    Dir(&'a str),
    Link(&'a str, &'a str),
    Hard(&'a str, &'a str),
}

fn layer_tar(entries: &[E<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        match e {
            E::File(p, data, mode) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(data.len() as u64);
                h.set_mode(*mode);
                b.append_data(&mut h, p, *data).unwrap();
            }
            E::Dir(p) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                h.set_mode(0o755);
                b.append_data(&mut h, p, &[][..]).unwrap();
            }
            E::Link(p, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                h.set_mode(0o777);
                b.append_link(&mut h, p, target).unwrap();
            }
            E::Hard(p, target) => {
                h.set_entry_type(tar::EntryType::Link);
                h.set_size(0);
                h.set_mode(0o644);
                b.append_link(&mut h, p, target).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn put_blob(dir: &Path, data: &[u8]) -> String {
    let hex = hex::encode(Sha256::digest(data));
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    std::fs::write(dir.join("blobs/sha256").join(&hex), data).unwrap();
    format!("sha256:{hex}")
}

/// An OCI image layout with one image per (name, layers) pair.
fn layout(dir: &Path, images: &[(&str, Vec<Vec<u8>>)]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let mut manifests = vec![];
    for (name, layers) in images {
        let config = put_blob(
            dir,
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#,
        );
        let layers: Vec<String> = layers
            .iter()
            .map(|l| {
                let media = if l.starts_with(&[0x1f, 0x8b]) {
                    "application/vnd.oci.image.layer.v1.tar+gzip"
                } else {
                    "application/vnd.oci.image.layer.v1.tar"
                };
                format!(
                    r#"{{"mediaType":"{media}","digest":"{}","size":{}}}"#,
                    put_blob(dir, l),
                    l.len()
                )
            })
            .collect();
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":1}},"layers":[{}]}}"#,
            layers.join(",")
        );
        let d = put_blob(dir, m.as_bytes());
        manifests.push(format!(
            r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{d}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"{name}"}}}}"#,
            m.len()
        ));
    }
    std::fs::write(
        dir.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{}]}}"#,
            manifests.join(",")
        ),
    )
    .unwrap();
}

/// Every path under `root` with a short description, for comparison.
fn tree(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap())
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.file_type().is_symlink() {
                out.insert(
                    rel,
                    format!("-> {}", std::fs::read_link(&p).unwrap().display()),
                );
            } else if m.is_dir() {
                out.insert(rel, "dir".into());
                walk(root, &p, out);
            } else {
                out.insert(
                    rel,
                    format!(
                        "{:o} {}",
                        m.permissions().mode() & 0o7777,
                        String::from_utf8_lossy(&std::fs::read(&p).unwrap())
                    ),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn base_layer() -> Vec<u8> {
    gzip(&layer_tar(&[
        E::Dir("etc"),
        E::File("etc/a", b"a1", 0o644),
        E::File("etc/b", b"b1", 0o644),
        E::File("etc/keep", b"k", 0o600),
        E::Dir("opt/dir/sub"),
        E::File("opt/dir/x", b"x1", 0o755),
        E::File("opt/dir/sub/deep", b"d", 0o644),
        E::Dir("usr/lib"),
        E::Link("lib", "usr/lib"),
        E::File("usr/lib/libfoo.so", b"foo", 0o644),
        E::Hard("usr/lib/libfoo.so.1", "usr/lib/libfoo.so"),
        E::Dir("var/cache/app"),
        E::File("var/cache/app/old", b"o", 0o644),
    ]))
}

#[test]
fn layers_apply_in_order_with_whiteouts() {
    let d = tempfile::tempdir().unwrap();
    // Layer 2: the opaque marker comes *after* a new entry in the same
    // directory, which must survive; whiteouts remove lower entries only.
    let top = layer_tar(&[
        E::File("opt/dir/y", b"y2", 0o644),
        E::File("opt/dir/.wh..wh..opq", b"", 0o644),
        E::Dir("opt/dir/sub"),
        E::File("etc/.wh.a", b"", 0o644),
        E::File("etc/b", b"b2", 0o640),
        E::File("lib/libbar.so", b"bar", 0o644),
        E::File("usr/lib/libfoo.so", b"foo2", 0o644),
        E::File("var/cache/.wh.app", b"", 0o644),
        E::Dir("var/cache/app"),
        E::File("var/cache/app/new", b"n", 0o644),
    ]);
    let img = d.path().join("img");
    layout(&img, &[("app:1", vec![base_layer(), top])]);
    let stage = d.path().join("stage");
    let a = oci::apply(&img, None, "amd64", &d.path().join("work"), &stage).unwrap();
    assert_eq!(a.layers.len(), 2);
    let t = tree(&stage);
    let want: BTreeMap<String, String> = [
        ("etc", "dir"),
        ("etc/b", "640 b2"),
        ("etc/keep", "600 k"),
        ("lib", "-> usr/lib"),
        ("opt", "dir"),
        ("opt/dir", "dir"),
        ("opt/dir/sub", "dir"),
        ("opt/dir/y", "644 y2"),
        ("usr", "dir"),
        ("usr/lib", "dir"),
        ("usr/lib/libbar.so", "644 bar"),
        ("usr/lib/libfoo.so", "644 foo2"),
        // The hard link kept the old content: the new file did not write through it.
        ("usr/lib/libfoo.so.1", "644 foo"),
        ("var", "dir"),
        ("var/cache", "dir"),
        ("var/cache/app", "dir"),
        ("var/cache/app/new", "644 n"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(t, want);
    assert!(a.removed >= 3, "{a:?}");
}

#[test]
fn docker_archives_and_zstd_layers() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("docker");
    std::fs::create_dir_all(dir.join("l1")).unwrap();
    std::fs::write(
        dir.join("l1/layer.tar"),
        layer_tar(&[E::File("bin/sh", b"sh", 0o755)]),
    )
    .unwrap();
    let z = zstd::encode_all(
        &layer_tar(&[E::File("etc/os-release", b"ID=test", 0o644)])[..],
        3,
    )
    .unwrap();
    let zd = put_blob(&dir, &z);
    let zpath = format!("blobs/sha256/{}", zd.trim_start_matches("sha256:"));
    std::fs::write(
        dir.join("manifest.json"),
        format!(r#"[{{"Config":"c.json","RepoTags":["other:1"],"Layers":["l1/layer.tar"]}},{{"Config":"c.json","RepoTags":["app:2"],"Layers":["l1/layer.tar","{zpath}"]}}]"#),
    )
    .unwrap();
    // As a tarball, the way `docker save` writes it.
    let mut b = tar::Builder::new(Vec::new());
    b.append_dir_all(".", &dir).unwrap();
    let archive = d.path().join("app.tar");
    std::fs::write(&archive, b.into_inner().unwrap()).unwrap();

    let stage = d.path().join("stage");
    let e = oci::apply(&archive, None, "amd64", &d.path().join("w"), &stage).unwrap_err();
    assert!(
        e.to_string().contains("2 images; pick one with oci_ref"),
        "{e}"
    );
    oci::apply(
        &archive,
        Some("app:2"),
        "amd64",
        &d.path().join("w"),
        &stage,
    )
    .unwrap();
    let t = tree(&stage);
    assert_eq!(t["bin/sh"], "755 sh");
    assert_eq!(t["etc/os-release"], "644 ID=test");
}

#[test]
fn bad_images_are_refused_with_the_reason() {
    let d = tempfile::tempdir().unwrap();
    let work = d.path().join("work");

    // A tampered layer blob.
    let img = d.path().join("tampered");
    layout(&img, &[("a", vec![base_layer()])]);
    let blobs: Vec<_> = std::fs::read_dir(img.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let layer = blobs
        .iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut data = std::fs::read(layer).unwrap();
    let n = data.len();
    data[n - 10] ^= 0xff;
    std::fs::write(layer, data).unwrap();
    let e = oci::apply(&img, None, "amd64", &work, &d.path().join("s1"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("tampered"), "{e}");

    // An entry that climbs out.
    let img = d.path().join("dotdot");
    let mut raw = layer_tar(&[E::File("aaaaaaaaaaaaaa", b"x", 0o644)]);
    raw[..14].copy_from_slice(b"../../escaped\0");
    // Fix the header checksum after editing the name.
    let mut h = tar::Header::from_byte_slice(&raw[..512]).clone();
    h.set_cksum();
    raw[..512].copy_from_slice(h.as_bytes());
    layout(&img, &[("a", vec![raw])]);
    let e = oci::apply(&img, None, "amd64", &work, &d.path().join("s2"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("leaves the image"), "{e}");
    assert!(!d.path().join("escaped").exists());

    // A symlink that points outside, then a write through it.
    let outside = d.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let img = d.path().join("symlink");
    let target = outside.display().to_string();
    layout(
        &img,
        &[(
            "a",
            vec![
                layer_tar(&[E::Link("evil", &target)]),
                layer_tar(&[E::File("evil/planted", b"x", 0o644)]),
            ],
        )],
    );
    let e = oci::apply(&img, None, "amd64", &work, &d.path().join("s3"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("outside"), "{e}");
    assert!(!outside.join("planted").exists());

    // Several images and no reference; an unknown reference.
    let img = d.path().join("two");
    layout(
        &img,
        &[("a", vec![base_layer()]), ("b", vec![base_layer()])],
    );
    let e = oci::apply(&img, None, "amd64", &work, &d.path().join("s4"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("pick one with oci_ref"), "{e}");
    let e = oci::apply(&img, Some("c"), "amd64", &work, &d.path().join("s4"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("no image named \"c\""), "{e}");

    // Not an image at all.
    let e = oci::apply(
        &work,
        None,
        "amd64",
        &d.path().join("w2"),
        &d.path().join("s5"),
    );
    assert!(e.is_err());
}

/// A whole build from an OCI base: the slot image holds the layers'
/// result (whiteouts applied, owners kept when building as root) plus the
/// agent, kernel and initramfs. Downloads the kernel package into the cache
/// unless it is there already.
#[test]
fn a_recipe_builds_a_slot_image_from_an_oci_base() {
    let tools = [
        "mksquashfs",
        "unsquashfs",
        "veritysetup",
        "apt-get",
        "dpkg-deb",
        "busybox",
    ];
    if !common::tools("oci base", &tools) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let busybox = std::fs::read("/bin/busybox").unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(busybox.len() as u64);
    h.set_mode(0o755);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    b.append_data(&mut h, "bin/busybox", &busybox[..]).unwrap();
    let mut add = |path: &str, data: &[u8], uid: u64| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(uid);
        h.set_gid(uid);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, path, data).unwrap();
    };
    add("etc/os-release", b"ID=base\n", 0);
    add("var/lib/app/state", b"s", 1000);
    let base = gzip(&b.into_inner().unwrap());
    let top = layer_tar(&[
        E::File("etc/.wh.os-release", b"", 0o644),
        E::File("etc/motd", b"from the top layer\n", 0o644),
        E::Link("sbin/init", "/bin/busybox"),
    ]);
    layout(&d.path().join("img"), &[("app:1", vec![base, top])]);
    std::fs::write(
        d.path().join("recipe.toml"),
        r#"name = "from-oci"
compatible = "tandem-test-oci"
version = "2.0.0"
[kernel]
package = "linux-image-amd64"
modules = ["squashfs"]
[rootfs]
base = "oci"
oci = "img"
filesystem = "squashfs"
"#,
    )
    .unwrap();
    let key = tandem::bundle::keys::keypair_from_seed([7; 32]);
    std::fs::write(
        d.path().join("k.key"),
        tandem::bundle::keys::format_secret(&key, "test"),
    )
    .unwrap();
    std::fs::write(d.path().join("agent"), b"#!/bin/sh\necho agent\n").unwrap();
    let cache = std::path::PathBuf::from(
        std::env::var("TANDEM_IMAGE_CACHE").unwrap_or_else(|_| "/var/cache/tandem-image".into()),
    );
    let cache = if std::fs::create_dir_all(&cache).is_ok() {
        cache
    } else {
        d.path().join("cache")
    };
    let recipe_path = d.path().join("recipe.toml");
    let r = tandem_image::recipe::Recipe::parse(
        &std::fs::read_to_string(&recipe_path).unwrap(),
        &recipe_path,
    )
    .unwrap();
    let o = tandem_image::BuildOptions {
        recipe_dir: d.path().to_path_buf(),
        out: d.path().join("out"),
        work: d.path().join("work"),
        cache,
        agent: tandem_image::options::Agent::Binary(d.path().join("agent")),
        signing_key: d.path().join("k.key"),
        make_disk: false,
        init: None,
        efi_signer: None,
    };
    let res = tandem_image::build(&r, &o).unwrap();
    assert!(res.verity_root_hash.is_some());
    let list = std::process::Command::new("unsquashfs")
        .args(["-lln", "-d", "/"])
        .arg(&res.slot_image)
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout).to_string();
    let has = |p: &str| {
        list.lines()
            .any(|l| l.ends_with(p) || l.contains(&format!("{p} -> ")))
    };
    for p in [
        "/bin/busybox",
        "/etc/motd",
        "/sbin/init",
        "/usr/bin/tandem",
        "/boot/vmlinuz",
        "/boot/initrd.img",
        "/etc/tandem/tandem.toml",
    ] {
        assert!(has(p), "{p} missing:\n{list}");
    }
    assert!(
        !has("/etc/os-release"),
        "the whiteout was not applied:\n{list}"
    );
    let state = list
        .lines()
        .find(|l| l.ends_with("/var/lib/app/state"))
        .unwrap();
    if tandem_image::is_root() {
        assert!(state.contains(" 1000/1000 "), "owner lost: {state}");
    }
}

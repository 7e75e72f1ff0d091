//! The OCI image layout and docker-archive readers of image-recipes
//! (oci::oci_layers over index.json and the blobs it points at,
//! oci::docker_layers over manifest.json): never panic, and every layer
//! they return lies inside the image directory (no `..`, no absolute
//! path), an OCI one under blobs/sha256/ with its digest to check.
//!
//! Input: a selector byte, then up to three parts separated by a line
//! `--`: the JSON document, then blobs. The target stores each blob under
//! its real digest and replaces `@1`/`@2` in the text with those digests,
//! so the fuzzer can point an index at a manifest it wrote.
#![no_main]

use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};
use tandem_image::oci;

fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        base.join(format!("tandem-fuzz-oci-{}", std::process::id()))
    })
}

fn split<'a>(mut s: &'a [u8], sep: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    while let Some(at) = s.windows(sep.len()).position(|w| w == sep) {
        out.push(&s[..at]);
        s = &s[at + sep.len()..];
    }
    out.push(s);
    out
}

fn replace(text: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let parts = split(text, from);
    parts.join(to)
}

fn confined(dir: &Path, p: &Path) -> bool {
    p.strip_prefix(dir)
        .is_ok_and(|rel| rel.components().all(|c| matches!(c, Component::Normal(_))))
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let parts = split(rest, b"\n--\n");
    let dir = scratch();
    let blobs = dir.join("blobs/sha256");
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(&blobs).unwrap();
    let mut doc = parts[0].to_vec();
    for (i, blob) in parts.iter().enumerate().skip(1).take(2) {
        let hex = hex::encode(Sha256::digest(blob));
        std::fs::write(blobs.join(&hex), blob).unwrap();
        doc = replace(
            &doc,
            format!("@{i}").as_bytes(),
            format!("sha256:{hex}").as_bytes(),
        );
    }
    let reference = (sel & 2 != 0).then_some("fuzz");
    if sel & 1 == 0 {
        std::fs::write(dir.join("index.json"), &doc).unwrap();
        if let Ok(layers) = oci::oci_layers(dir, reference, "amd64") {
            for (name, path, digest) in layers {
                assert!(confined(&blobs, &path), "{name}: {}", path.display());
                assert_eq!(digest.as_deref(), Some(name.as_str()));
            }
        }
    } else {
        std::fs::write(dir.join("manifest.json"), &doc).unwrap();
        if let Ok(layers) = oci::docker_layers(dir, reference) {
            for (name, path, _) in layers {
                assert!(confined(dir, &path), "{name}: {}", path.display());
            }
        }
    }
});

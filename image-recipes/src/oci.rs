//! A root filesystem base from an OCI image: an OCI image layout directory
//! (`index.json` + `blobs/`), or a `docker save` / `skopeo copy
//! docker-archive:` / `oci-archive:` tarball. The layers are applied in
//! order onto the staging directory, whiteouts honoured:
//!
//! - `DIR/.wh.NAME` removes `DIR/NAME` as the lower layers left it;
//! - `DIR/.wh..wh..opq` empties `DIR` of what the lower layers put there.
//!
//! Both only affect lower layers: an entry the same layer adds survives,
//! whatever the order of the entries in the tarball. Every blob is checked
//! against its sha256 digest; a layer may be plain tar, gzip or zstd.
//! Entry paths are confined to the staging directory (`..` and absolute
//! paths are refused, and nothing is written or removed through a symlink
//! that leads outside it). Owners are kept when building as root; as
//! another user the image is made with every file owned by root.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read};
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::tool::BuildError;

const OPAQUE: &str = ".wh..wh..opq";
const WHITEOUT: &str = ".wh.";
const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MEDIA_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// What was applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// Layer digests (or paths, for a docker archive without digests), in order.
    pub layers: Vec<String>,
    /// Entries written, and paths removed by whiteouts.
    pub entries: usize,
    pub removed: usize,
}

#[derive(Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Deserialize)]
struct Platform {
    architecture: String,
}

#[derive(Deserialize)]
struct Index {
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct Manifest {
    layers: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct DockerEntry {
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

fn step(msg: String) -> BuildError {
    BuildError::Step(msg)
}

/// Applies the image at `source` onto `stage`. `reference` picks one image
/// when the source holds several (OCI: the `org.opencontainers.image.ref.name`
/// annotation; docker: a repo tag); `arch` (Debian name) picks from a
/// multi-platform index. `work` is scratch space for unpacking an archive.
pub fn apply(
    source: &Path,
    reference: Option<&str>,
    arch: &str,
    work: &Path,
    stage: &Path,
) -> Result<Applied, BuildError> {
    let dir = if source.is_dir() {
        source.to_path_buf()
    } else {
        let d = work.join("oci-archive");
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).map_err(|e| BuildError::io(&d, e))?;
        let f = std::fs::File::open(source).map_err(|e| BuildError::io(source, e))?;
        let mut a = tar::Archive::new(BufReader::new(f));
        a.set_preserve_ownerships(false);
        a.unpack(&d).map_err(|e| {
            step(format!(
                "{}: cannot unpack the archive: {e}",
                source.display()
            ))
        })?;
        d
    };
    let stage = &prepare_stage(stage)?;
    let layers = if dir.join("index.json").exists() {
        oci_layers(&dir, reference, arch)?
    } else if dir.join("manifest.json").exists() {
        docker_layers(&dir, reference)?
    } else {
        return Err(step(format!(
            "{}: neither an OCI image layout (index.json) nor a docker archive (manifest.json)",
            source.display()
        )));
    };
    let mut applied = Applied::default();
    for (name, path, digest) in layers {
        apply_layer(&path, digest.as_deref(), stage, &mut applied)
            .map_err(|e| step(format!("layer {name}: {e}")))?;
        applied.layers.push(name);
    }
    Ok(applied)
}

/// Applies one root filesystem tarball (plain, gzip or zstd; e.g.
/// mmdebstrap's output) onto `stage`, with the same confinement and owner
/// handling as an image layer.
pub fn apply_tarball(path: &Path, stage: &Path) -> Result<Applied, BuildError> {
    let stage = &prepare_stage(stage)?;
    let mut applied = Applied::default();
    apply_layer(path, None, stage, &mut applied)
        .map_err(|e| step(format!("{}: {e}", path.display())))?;
    applied.layers.push(path.display().to_string());
    Ok(applied)
}

/// Creates the staging directory and resolves it once: every entry's
/// parent is checked against this canonical path.
fn prepare_stage(stage: &Path) -> Result<PathBuf, BuildError> {
    std::fs::create_dir_all(stage).map_err(|e| BuildError::io(stage, e))?;
    stage.canonicalize().map_err(|e| BuildError::io(stage, e))
}

/// Reads a blob, checking its digest.
fn blob(dir: &Path, digest: &str) -> Result<Vec<u8>, BuildError> {
    let path = blob_path(dir, digest)?;
    let data = std::fs::read(&path).map_err(|e| BuildError::io(&path, e))?;
    let got = hex::encode(Sha256::digest(&data));
    if !digest.ends_with(&got) {
        return Err(step(format!(
            "blob {digest}: content hashes to sha256:{got}; the image is damaged or tampered with"
        )));
    }
    Ok(data)
}

fn blob_path(dir: &Path, digest: &str) -> Result<PathBuf, BuildError> {
    let hex = digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| {
            step(format!(
                "unsupported digest {digest:?} (want sha256:<64 hex>)"
            ))
        })?;
    Ok(dir.join("blobs/sha256").join(hex))
}

type Layer = (String, PathBuf, Option<String>);

/// The layers of an OCI image layout directory (public for fuzz/).
pub fn oci_layers(
    dir: &Path,
    reference: Option<&str>,
    arch: &str,
) -> Result<Vec<Layer>, BuildError> {
    let p = dir.join("index.json");
    let text = std::fs::read(&p).map_err(|e| BuildError::io(&p, e))?;
    let mut index: Index =
        serde_json::from_slice(&text).map_err(|e| step(format!("{}: {e}", p.display())))?;
    let mut desc = pick(index.manifests, reference, &p)?;
    // A multi-platform index: choose this architecture.
    while desc.media_type == MEDIA_INDEX || desc.media_type == MEDIA_DOCKER_LIST {
        index = serde_json::from_slice(&blob(dir, &desc.digest)?)
            .map_err(|e| step(format!("index {}: {e}", desc.digest)))?;
        let n = index.manifests.len();
        desc = index
            .manifests
            .into_iter()
            .find(|m| m.platform.as_ref().is_some_and(|p| p.architecture == arch))
            .ok_or_else(|| {
                step(format!(
                    "index {}: none of its {n} images is for architecture {arch}",
                    desc.digest
                ))
            })?;
    }
    let m: Manifest = serde_json::from_slice(&blob(dir, &desc.digest)?)
        .map_err(|e| step(format!("manifest {}: {e}", desc.digest)))?;
    m.layers
        .into_iter()
        .map(|l| Ok((l.digest.clone(), blob_path(dir, &l.digest)?, Some(l.digest))))
        .collect()
}

fn pick(
    manifests: Vec<Descriptor>,
    reference: Option<&str>,
    index: &Path,
) -> Result<Descriptor, BuildError> {
    let names: Vec<String> = manifests
        .iter()
        .map(|m| m.annotations.get(REF_NAME).cloned().unwrap_or_default())
        .collect();
    match reference {
        Some(r) => manifests
            .into_iter()
            .find(|m| m.annotations.get(REF_NAME).map(String::as_str) == Some(r))
            .ok_or_else(|| {
                step(format!(
                    "{}: no image named {r:?} (names: {names:?})",
                    index.display()
                ))
            }),
        None if manifests.len() == 1 => Ok(manifests.into_iter().next().expect("one")),
        None => Err(step(format!(
            "{}: {} images; pick one with oci_ref (names: {names:?})",
            index.display(),
            manifests.len()
        ))),
    }
}

/// The layers of an unpacked docker archive (public for fuzz/).
pub fn docker_layers(dir: &Path, reference: Option<&str>) -> Result<Vec<Layer>, BuildError> {
    let p = dir.join("manifest.json");
    let text = std::fs::read(&p).map_err(|e| BuildError::io(&p, e))?;
    let entries: Vec<DockerEntry> =
        serde_json::from_slice(&text).map_err(|e| step(format!("{}: {e}", p.display())))?;
    let n = entries.len();
    let e = match reference {
        Some(r) => entries
            .into_iter()
            .find(|e| e.repo_tags.iter().flatten().any(|t| t == r))
            .ok_or_else(|| step(format!("{}: no image tagged {r:?}", p.display())))?,
        None if n == 1 => entries.into_iter().next().expect("one"),
        None => {
            return Err(step(format!(
                "{}: {n} images; pick one with oci_ref",
                p.display()
            )))
        }
    };
    e.layers
        .into_iter()
        .map(|l| {
            let rel = safe_rel(Path::new(&l))
                .ok_or_else(|| step(format!("layer path {l:?} leaves the archive")))?;
            // Newer docker archives name layers by digest: check those.
            let digest = l
                .strip_prefix("blobs/sha256/")
                .map(|h| format!("sha256:{h}"));
            Ok((l, dir.join(rel), digest))
        })
        .collect()
}

/// A relative path without `..`, `.` or a root; `None` if it would escape.
fn safe_rel(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// `stage`/`rel`, provided its parent resolves inside `stage` (a symlink
/// in the image may not lead a write or a removal outside). `stage` is
/// already canonical.
fn inside(stage: &Path, rel: &Path) -> Result<PathBuf, String> {
    let full = stage.join(rel);
    if let Some(parent) = full.parent() {
        if let Ok(real) = parent.canonicalize() {
            if !real.starts_with(stage) {
                return Err(format!(
                    "{}: a symlink leads outside the image",
                    rel.display()
                ));
            }
        }
    }
    Ok(full)
}

/// An error with its causes (the tar crate wraps the interesting part).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn remove_any(p: &Path) -> std::io::Result<bool> {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(p).map(|_| true),
        Ok(_) => std::fs::remove_file(p).map(|_| true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

fn apply_layer(
    path: &Path,
    digest: Option<&str>,
    stage: &Path,
    applied: &mut Applied,
) -> Result<(), String> {
    // Nothing of a damaged layer is applied: check the whole blob first.
    if let Some(d) = digest {
        let mut f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut h = Sha256::new();
        std::io::copy(&mut f, &mut h).map_err(|e| format!("{}: {e}", path.display()))?;
        let got = hex::encode(h.finalize());
        if !d.ends_with(&got) {
            return Err(format!(
                "content hashes to sha256:{got}, not {d}; the image is damaged or tampered with"
            ));
        }
    }
    let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut input = BufReader::with_capacity(1 << 20, f);
    // Sniff the compression from the first bytes.
    let magic = {
        let buf = input.fill_buf().map_err(|e| e.to_string())?;
        buf.get(..4).map(<[u8]>::to_vec).unwrap_or_default()
    };
    let reader: Box<dyn Read> = if magic.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::GzDecoder::new(input))
    } else if magic == [0x28, 0xb5, 0x2f, 0xfd] {
        Box::new(zstd::stream::read::Decoder::with_buffer(input).map_err(|e| e.to_string())?)
    } else {
        Box::new(input)
    };
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(false);
    archive.set_preserve_ownerships(crate::tool::is_root());
    archive.set_overwrite(true);

    // Paths this layer adds: whiteouts never remove them.
    let mut ours: HashSet<PathBuf> = HashSet::new();
    // Whiteouts seen, applied after the layer (see module docs).
    let mut whiteouts: Vec<PathBuf> = Vec::new();
    let mut opaque: Vec<PathBuf> = Vec::new();
    for entry in archive.entries().map_err(|e| e.to_string())? {
        let mut entry = entry.map_err(|e| format!("reading the tar stream: {e}"))?;
        let raw = entry.path().map_err(|e| e.to_string())?.into_owned();
        let rel =
            safe_rel(&raw).ok_or_else(|| format!("entry {} leaves the image", raw.display()))?;
        if rel.as_os_str().is_empty() {
            continue; // "./" itself
        }
        let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name == OPAQUE {
            opaque.push(rel.parent().unwrap_or(Path::new("")).to_path_buf());
            continue;
        }
        if let Some(target) = name.strip_prefix(WHITEOUT) {
            whiteouts.push(rel.with_file_name(target));
            continue;
        }
        // Before this layer writes a path, what lower layers had there
        // goes, so a file never writes through an old hard link or onto
        // a directory; directories merge.
        let full = inside(stage, &rel)?;
        let is_dir = entry.header().entry_type().is_dir();
        if let Ok(m) = std::fs::symlink_metadata(&full) {
            if !(is_dir && m.is_dir()) {
                remove_any(&full).map_err(|e| format!("{}: {e}", rel.display()))?;
            }
        }
        let ok = entry
            .unpack_in(stage)
            .map_err(|e| format!("{}: {}", rel.display(), chain(&e)))?;
        if !ok {
            return Err(format!("entry {} leaves the image", raw.display()));
        }
        ours.insert(rel);
        applied.entries += 1;
    }
    for dir in opaque {
        let full = inside(stage, &dir)?;
        let Ok(children) = std::fs::read_dir(&full) else {
            continue;
        };
        for c in children {
            let c = c.map_err(|e| e.to_string())?;
            let rel = dir.join(c.file_name());
            if ours.contains(&rel) {
                if std::fs::symlink_metadata(c.path()).is_ok_and(|m| m.is_dir()) {
                    // A directory this layer lists: keep only its own children.
                    remove_lower_children(stage, &rel, &ours, applied)?;
                }
                continue;
            }
            if remove_any(&c.path()).map_err(|e| format!("{}: {e}", rel.display()))? {
                applied.removed += 1;
            }
        }
    }
    for w in whiteouts {
        if ours.contains(&w) {
            // Removed below and re-created by this layer: only this
            // layer's contents remain.
            if std::fs::symlink_metadata(stage.join(&w)).is_ok_and(|m| m.is_dir()) {
                remove_lower_children(stage, &w, &ours, applied)?;
            }
            continue;
        }
        let full = inside(stage, &w)?;
        if remove_any(&full).map_err(|e| format!("{}: {e}", w.display()))? {
            applied.removed += 1;
        }
    }
    Ok(())
}

/// Under a directory this layer lists, removes what it does not list
/// (used for opaque directories).
fn remove_lower_children(
    stage: &Path,
    dir: &Path,
    ours: &HashSet<PathBuf>,
    applied: &mut Applied,
) -> Result<(), String> {
    let full = inside(stage, dir)?;
    for c in std::fs::read_dir(&full).map_err(|e| e.to_string())? {
        let c = c.map_err(|e| e.to_string())?;
        let rel = dir.join(c.file_name());
        if ours.contains(&rel) {
            if std::fs::symlink_metadata(c.path()).is_ok_and(|m| m.is_dir()) {
                remove_lower_children(stage, &rel, ours, applied)?;
            }
        } else if remove_any(&c.path()).map_err(|e| e.to_string())? {
            applied.removed += 1;
        }
    }
    Ok(())
}

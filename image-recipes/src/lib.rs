//! Builds bootable, signed Tandem images from recipes: the slot image (a
//! filesystem GRUB can read, with the kernel and initramfs inside, and a
//! dm-verity hash tree appended), a signed bundle of it, and whole GPT
//! disks for QEMU or flashing. See image-recipes/README.md.
//!
//! Builds are reproducible: timestamps come from SOURCE_DATE_EPOCH (or the
//! recipe's fixed default), owners are root, entries sorted, and every UUID
//! and salt is derived from the recipe's name and version.

pub mod cpio;
pub mod deb;
pub mod debian;
pub mod disk;
pub mod fsimage;
pub mod kernel;
pub mod oci;
pub mod recipe;
pub mod rootfs;
pub mod uboot;

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{command}` failed: {message}")]
    Tool { command: String, message: String },
    #[error("{0}")]
    Step(String),
    #[error(transparent)]
    Recipe(#[from] recipe::RecipeError),
    #[error("bundle: {0}")]
    Bundle(#[from] tandem::bundle::writer::WriteError),
}

impl BuildError {
    pub fn io(path: &Path, source: std::io::Error) -> BuildError {
        BuildError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Whether the builder runs as root (and can keep files' owners).
pub fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Runs a tool and returns its stdout; a failure carries its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String, BuildError> {
    run_env(None, program, args, &[])
}

pub fn run_in(dir: &Path, program: &str, args: &[&str]) -> Result<String, BuildError> {
    run_env(Some(dir), program, args, &[])
}

/// Like [`run`] with extra environment; an empty value removes the variable.
pub fn run_env(
    dir: Option<&Path>,
    program: &str,
    args: &[&str],
    env: &[(&str, String)],
) -> Result<String, BuildError> {
    let command = format!("{program} {}", args.join(" "));
    let mut c = Command::new(program);
    c.args(args);
    if let Some(d) = dir {
        c.current_dir(d);
    }
    for (k, v) in env {
        if v.is_empty() {
            c.env_remove(k);
        } else {
            c.env(k, v);
        }
    }
    let out = c.output().map_err(|e| BuildError::Tool {
        command: command.clone(),
        message: format!("cannot run: {e} (is it installed? see scripts/setup.sh)"),
    })?;
    if !out.status.success() {
        return Err(BuildError::Tool {
            command,
            message: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A stable identifier derived from the recipe: same inputs, same bytes.
pub fn derive(seed: &str, what: &str) -> [u8; 32] {
    Sha256::digest(format!("tandem-image\0{seed}\0{what}").as_bytes()).into()
}

/// A UUID string derived like [`derive`].
pub fn derive_uuid(seed: &str, what: &str) -> String {
    let d = derive(seed, what);
    let h = hex::encode(&d[..16]);
    format!(
        "{}-{}-4{}-8{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// Build time: SOURCE_DATE_EPOCH, else a fixed default (2026-01-01), so
/// builds without it are reproducible too.
pub fn build_epoch() -> u64 {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_767_225_600)
}

/// What a build produced.
#[derive(Debug, Clone)]
pub struct Outputs {
    pub slot_image: PathBuf,
    pub bundle: PathBuf,
    pub disk: Option<PathBuf>,
    /// With a U-Boot disk: the board environment for pflash unit 1.
    pub uboot_env: Option<PathBuf>,
    pub verity_root_hash: Option<String>,
}

/// Inputs besides the recipe.
pub struct BuildOptions {
    pub recipe_dir: PathBuf,
    pub out: PathBuf,
    pub work: PathBuf,
    pub cache: PathBuf,
    /// The tandem agent binary to install (statically linked).
    pub agent: PathBuf,
    pub signing_key: PathBuf,
    pub make_disk: bool,
    /// The initramfs `/init` (the static tandem-initramfs binary); without
    /// it, a busybox script is used.
    pub init: Option<PathBuf>,
}

/// Builds everything a recipe describes.
pub fn build(r: &recipe::Recipe, o: &BuildOptions) -> Result<Outputs, BuildError> {
    let epoch = build_epoch();
    let seed = format!("{}-{}", r.name, r.version);
    for d in [&o.out, &o.work, &o.cache] {
        std::fs::create_dir_all(d).map_err(|e| BuildError::io(d, e))?;
    }
    let key_text =
        std::fs::read_to_string(&o.signing_key).map_err(|e| BuildError::io(&o.signing_key, e))?;
    let key = tandem::bundle::keys::parse_secret(&key_text, &o.signing_key.display().to_string())
        .map_err(|e| BuildError::Step(e.to_string()))?;

    let pkg = kernel::resolve_package(&r.kernel.package, r.arch)?;
    let k = kernel::fetch(&pkg, &o.cache)?;
    let bb = rootfs::busybox(r.arch, &o.cache)?;
    let e2fsck = match &o.init {
        Some(_) => Some(rootfs::e2fsck(r.arch, &o.cache)?),
        None => None,
    };
    let init = o.init.as_deref().zip(e2fsck.as_deref());
    let initrd = rootfs::initramfs(r, &k, epoch, init, &bb.path)?;
    let stage = o.work.join(format!("{seed}.stage"));
    rootfs::stage(r, o, &k, &initrd, &key, &bb, &stage)?;
    let slot_image = o.out.join(format!("{}-{}.rootfs.img", r.name, r.version));
    let verity = fsimage::make(r, &stage, &slot_image, &seed, epoch)?;

    let bundle = o.out.join(format!("{}-{}.tnd", r.name, r.version));
    let meta = tandem::bundle::writer::BundleMeta {
        version: r.version.clone(),
        compatible: r.compatible.clone(),
        security_epoch: r.security_epoch,
        created_unix: epoch,
        description: Some(format!(
            "{} image built from recipe {}",
            r.name,
            o.recipe_dir.display()
        )),
    };
    let input = tandem::bundle::writer::ImageInput {
        slot_class: tandem::slot::SlotClass::new("rootfs").expect("valid class"),
        path: slot_image.clone(),
        compression: tandem::bundle::Compression::Zstd,
        frame_size: Some(tandem::bundle::writer::FRAME_SIZE),
        chunk_size: Some(tandem::bundle::writer::CHUNK_SIZE),
        verity: verity.clone(),
    };
    tandem::bundle::writer::create(&bundle, &meta, &[input], &[key])?;

    let chain = r.arch.boot_chain();
    let disk = match (&r.disk, o.make_disk) {
        (Some(spec), true) => {
            let path = o.out.join(format!("{}-{}.disk.img", r.name, r.version));
            // The one formatter the initramfs's validator agrees with;
            // parameters it would reject fail the build.
            let verity_args = match &verity {
                Some(v) => Some(
                    tandem_bootparams::kernel_args(
                        &v.root_hash,
                        v.hash_offset,
                        &v.salt,
                        v.data_block_size,
                        v.hash_block_size,
                        &v.hash_algorithm,
                    )
                    .map_err(|e| {
                        BuildError::Step(format!("slot image {}: {e}", slot_image.display()))
                    })?,
                ),
                None => None,
            };
            let slot = disk::SlotImage {
                path: &slot_image,
                verity_args,
            };
            disk::build(spec, chain, &slot, &o.work, &path, &seed, epoch)?;
            Some(path)
        }
        _ => None,
    };
    let uboot_env = match (chain, &disk) {
        (recipe::BootChain::UbootFile, Some(_)) => {
            let path = o
                .out
                .join(format!("{}-{}.uboot-env.img", r.name, r.version));
            uboot::env_image(&o.work, &path)?;
            Some(path)
        }
        _ => None,
    };
    Ok(Outputs {
        slot_image,
        bundle,
        disk,
        uboot_env,
        verity_root_hash: verity.map(|v| v.root_hash),
    })
}

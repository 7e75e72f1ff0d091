//! Builds bootable, signed Tandem images from recipes: the slot image (a
//! filesystem GRUB can read, with the kernel and initramfs inside, and a
//! dm-verity hash tree appended), a signed bundle of it, and whole GPT
//! disks for QEMU or flashing. See image-recipes/README.md.
//!
//! Builds are reproducible: timestamps come from SOURCE_DATE_EPOCH (or the
//! recipe's fixed default), owners are root, entries sorted, and every UUID
//! and salt is derived from the recipe's name and version.

pub mod base;
pub mod busybox;
pub mod cpio;
pub mod deb;
pub mod debian;
pub mod derive;
pub mod disk;
pub mod fsimage;
pub mod initramfs;
pub mod kernel;
pub mod oci;
pub mod options;
pub mod recipe;
pub mod rootfs;
pub mod stage;
pub mod tool;
pub mod uboot;
pub mod uki;

use std::path::PathBuf;

pub use derive::{build_epoch, derive, derive_uuid};
pub use options::BuildOptions;
pub use tool::{is_root, run, run_env, run_in, BuildError};

/// What a build produced.
#[derive(Debug, Clone)]
pub struct Outputs {
    pub slot_image: PathBuf,
    pub bundle: PathBuf,
    pub disk: Option<PathBuf>,
    /// With a U-Boot disk: the board environment for pflash unit 1.
    pub uboot_env: Option<PathBuf>,
    pub verity_root_hash: Option<String>,
    /// With `uki = true`: each slot group's unified kernel image.
    pub ukis: std::collections::BTreeMap<tandem::slot::SlotGroup, PathBuf>,
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
    let bb = busybox::busybox(r.arch, &o.cache)?;
    let e2fsck = match &o.init {
        Some(_) => Some(initramfs::e2fsck(r.arch, &o.cache)?),
        None => None,
    };
    let init = o.init.as_deref().zip(e2fsck.as_deref());
    let initrd = initramfs::build(r, &k, epoch, init, &bb.path)?;
    let stage = o.work.join(format!("{seed}.stage"));
    rootfs::stage(r, o, &k, &initrd, &key, &bb, &stage)?;
    let slot_image = o.out.join(format!("{}-{}.rootfs.img", r.name, r.version));
    let verity = fsimage::make(r, &stage, &slot_image, &seed, epoch)?;
    // The one formatter the initramfs's validator agrees with; parameters
    // it would reject fail the build.
    let verity_args =
        match &verity {
            Some(v) => Some(tandem::install::verity_kernel_args(v).map_err(|e| {
                BuildError::Step(format!("slot image {}: {e}", slot_image.display()))
            })?),
            None => None,
        };

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
        // Content-defined chunks, as `tandem bundle create` writes by
        // default: devices on an earlier image fetch only what changed.
        frame_size: None,
        chunk_size: None,
        cdc: Some(tandem::bundle::cdc::DEFAULT),
        verity: verity.clone(),
        group: None,
    };
    let chain = r.boot_chain();
    let mut inputs = vec![input];
    let initrd_path = o.work.join(format!("{seed}.initrd.img"));
    // One unified kernel image per slot group: its command line names the
    // slot and carries the root hash (uki.rs).
    let mut ukis = std::collections::BTreeMap::new();
    if chain == recipe::BootChain::SdBoot {
        std::fs::write(&initrd_path, &initrd).map_err(|e| BuildError::io(&initrd_path, e))?;
    }
    if r.uki {
        for g in tandem::slot::SlotGroup::ALL {
            let cmdline = [
                format!("tandem.slot={g}"),
                r.kernel.cmdline.clone(),
                verity_args.clone().unwrap_or_default(),
            ]
            .join(" ")
            .trim()
            .to_string();
            let path = o.out.join(format!("{}-{}.uki-{g}.efi", r.name, r.version));
            let parts = uki::Parts {
                kernel: &k.vmlinuz(),
                initrd: &initrd_path,
                cmdline: &cmdline,
                osrel: &uki::osrel(&r.version.to_string(), g.as_str()),
            };
            uki::build(&parts, &o.work, &path, epoch, o.efi_signer.as_ref())?;
            inputs.push(esp_image("uki", path.clone(), Some(g)));
            ukis.insert(g, path);
        }
    } else if chain == recipe::BootChain::SdBoot {
        // systemd-boot loads them from the ESP: the bundle carries them as
        // images of their own, which the agent writes to the other slot's
        // files there (rootfs::agent_config).
        for (class, path) in [("kernel", k.vmlinuz()), ("initrd", initrd_path.clone())] {
            inputs.push(esp_image(class, path, None));
        }
    }
    tandem::bundle::writer::create(&bundle, &meta, &inputs, &[key])?;

    let disk = match (&r.disk, o.make_disk) {
        (Some(spec), true) => {
            let path = o.out.join(format!("{}-{}.disk.img", r.name, r.version));
            let esp_boot = (chain == recipe::BootChain::SdBoot).then(|| disk::EspBoot {
                kernel: k.vmlinuz(),
                initrd: initrd_path.clone(),
                cmdline: r.kernel.cmdline.clone(),
                label: r.version.to_string(),
                uki: ukis.get(&tandem::slot::SlotGroup::A).cloned(),
                signer: o.efi_signer.clone(),
            });
            let slot = disk::SlotImage {
                path: &slot_image,
                verity_args: verity_args.clone(),
                esp_boot,
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
        ukis,
    })
}

/// A bundle image that the agent writes to a file on the ESP (kernel,
/// initrd, a slot's UKI): content-defined chunks, so a device fetches only
/// what changed.
fn esp_image(
    class: &str,
    path: PathBuf,
    group: Option<tandem::slot::SlotGroup>,
) -> tandem::bundle::writer::ImageInput {
    tandem::bundle::writer::ImageInput {
        slot_class: tandem::slot::SlotClass::new(class).expect("valid class"),
        path,
        compression: tandem::bundle::Compression::Zstd,
        frame_size: None,
        chunk_size: None,
        cdc: Some(tandem::bundle::cdc::DEFAULT),
        verity: None,
        group,
    }
}

//! The root filesystem tree of a slot: its base (crate::base), then the
//! Tandem layer every image carries (agent, config, key, version, kernel,
//! initramfs, the recipe's files).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::base::Base;
use crate::busybox::Busybox;
use crate::kernel::KernelTree;
use crate::options::{Agent, BuildOptions};
use crate::recipe::{BootChain, Recipe};
use crate::stage::{read, write};
use crate::tool::BuildError;

/// The most a slot's kernel or initrd file on the ESP may hold (the agent's
/// `size` for them; each file takes its image's length).
pub const ESP_KERNEL_MAX: &str = "32M";
pub const ESP_INITRD_MAX: &str = "64M";
/// The most a slot's unified kernel image on the ESP may hold.
pub const ESP_UKI_MAX: &str = "96M";

/// The agent configuration every image carries (the device's view).
pub fn agent_config(r: &Recipe) -> String {
    let chain = r.boot_chain();
    let mp = chain.mount_point();
    let boot = match chain {
        BootChain::Grub => format!("backend = \"grub\"\ngrubenv = \"{mp}/EFI/tandem/grubenv\""),
        BootChain::SdBoot if r.uki => format!(
            "backend = \"systemd-boot\"\nesp = \"{mp}\"\nuki = \"{}\"",
            crate::disk::UKI_PATH
        ),
        BootChain::SdBoot => format!(
            "backend = \"systemd-boot\"\nesp = \"{mp}\"\nkernel_options = \"{}\"",
            r.kernel.cmdline
        ),
        BootChain::UbootFile => format!(
            "backend = \"uboot-file\"\nuboot_env_file = \"{mp}/{}\"",
            tandem::boot::uboot_file::FILE_NAME
        ),
    };
    let mut slots = String::new();
    for g in ["a", "b"] {
        slots.push_str(&format!(
            "\n[slots.{g}.rootfs]\ndevice = \"/dev/tandem/root-{g}\"\n"
        ));
    }
    if chain == BootChain::SdBoot && r.uki {
        // One unified kernel image per slot, which the ESP entry boots.
        for g in ["a", "b"] {
            slots.push_str(&format!(
                "\n[slots.{g}.uki]\ndevice = \"{mp}{}\"\nsize = \"{ESP_UKI_MAX}\"\n",
                crate::disk::UKI_PATH.replace("{slot}", g)
            ));
        }
    } else if chain == BootChain::SdBoot {
        // systemd-boot loads kernel and initrd from the ESP, where
        // loader/entries/tandem-<g>.conf names them (docs/boot.md).
        for g in ["a", "b"] {
            slots.push_str(&format!(
                "\n[slots.{g}.kernel]\ndevice = \"{mp}/tandem/{g}/vmlinuz\"\nsize = \"{ESP_KERNEL_MAX}\"\n\
                 \n[slots.{g}.initrd]\ndevice = \"{mp}/tandem/{g}/initrd.img\"\nsize = \"{ESP_INITRD_MAX}\"\n"
            ));
        }
    }
    format!(
        r#"# Written by tandem-image for recipe {name}.
compatible = "{compatible}"
# The keyring is the image's own, /usr/lib/tandem/keys (docs/config.md).

[state]
directory = "/var/lib/tandem"

[boot]
{boot}
tries = 1

# The initramfs's links: the slots of the disk the bootloader booted
# from, never a same-named partition on another disk (a USB stick).
{slots}"#,
        name = r.name,
        compatible = r.compatible,
        slots = slots.trim_start(),
    )
}

/// The slot's own kernel arguments, in the bootloader's syntax: a GRUB
/// snippet `/boot/tandem.cfg` that grub.cfg sources, or a U-Boot text env
/// `/boot/tandem-args.env` whose `tandem_bootargs` boot.scr imports. None
/// for systemd-boot: its entries carry the command line (`kernel_options`).
pub fn boot_args_file(r: &Recipe) -> Option<(&'static str, String)> {
    match r.boot_chain() {
        BootChain::Grub => Some((
            "boot/tandem.cfg",
            format!("set tandem_cmdline=\"{}\"\n", r.kernel.cmdline),
        )),
        BootChain::UbootFile => Some((
            "boot/tandem-args.env",
            format!("tandem_bootargs={}\n", r.kernel.cmdline),
        )),
        BootChain::SdBoot => None,
    }
}

/// Lays out the slot's tree: the base (busybox userland, an OCI image's
/// layers, or a Debian made by mmdebstrap), the agent, its config and key, the kernel and
/// initramfs, and the recipe's files.
pub fn stage(
    r: &Recipe,
    o: &BuildOptions,
    k: &KernelTree,
    initrd: &[u8],
    key: &ed25519_dalek::SigningKey,
    bb: &Busybox,
    stage: &Path,
) -> Result<(), BuildError> {
    let _ = std::fs::remove_dir_all(stage);
    let base = Base::of(r, o, bb);
    base.apply(stage)?;
    crate::stage::dirs(
        stage,
        &[
            "bin",
            "sbin",
            "usr/bin",
            "usr/sbin",
            "etc",
            "proc",
            "sys",
            "dev",
            "run",
            "tmp",
            "var",
            "data",
            r.boot_chain().mount_point(),
            "root",
            "lib/modules",
        ],
    )?;
    match &o.agent {
        Agent::Binary(bin) => write(stage, "usr/bin/tandem", &read(bin)?, 0o755)?,
        Agent::Deb(deb) => base.install_package(stage, deb)?,
    }
    write(
        stage,
        "etc/tandem/tandem.toml",
        agent_config(r).as_bytes(),
        0o644,
    )?;
    write(
        stage,
        "usr/lib/tandem/keys/vendor.pub",
        tandem::bundle::keys::format_public(&key.verifying_key(), "image signing key").as_bytes(),
        0o644,
    )?;
    write(
        stage,
        "usr/lib/tandem/conf.d/00-image.toml",
        format!(
            "[image]\nversion = \"{}\"\nsecurity_epoch = {}\n",
            r.version, r.security_epoch
        )
        .as_bytes(),
        0o644,
    )?;
    write(
        stage,
        "usr/lib/tandem/version",
        format!("{}\n", r.version).as_bytes(),
        0o644,
    )?;
    // An OCI or Debian base brings its own users and name.
    for (path, text) in [
        ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n".to_string()),
        ("etc/group", "root:x:0:\n".to_string()),
        ("etc/hostname", format!("{}\n", r.name)),
    ] {
        if !(base.own_userland() && stage.join(path).exists()) {
            write(stage, path, text.as_bytes(), 0o644)?;
        }
    }
    // GRUB and U-Boot load them from the slot; systemd-boot from the ESP
    // (the bundle's kernel and initrd images).
    if let Some((args_path, args)) = boot_args_file(r) {
        write(stage, "boot/vmlinuz", &read(&k.vmlinuz())?, 0o644)?;
        write(stage, "boot/initrd.img", initrd, 0o644)?;
        write(stage, args_path, args.as_bytes(), 0o644)?;
    }
    base.integrate(stage, matches!(o.agent, Agent::Deb(_)))?;
    for (dest, src) in &r.files {
        let src = o.recipe_dir.join(src);
        let mode = std::fs::metadata(&src)
            .map_err(|e| BuildError::io(&src, e))?
            .permissions()
            .mode()
            & 0o777;
        write(stage, dest, &read(&src)?, mode)?;
    }
    if std::fs::symlink_metadata(stage.join("sbin/init")).is_err() {
        return Err(BuildError::Step(
            "the root filesystem has no /sbin/init: the OCI image must provide one, or add it under [files]".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem::config::{parse, BootConfig, Source};
    use tandem::slot::{SlotClass, SlotGroup};

    fn recipe(extra: &str) -> Recipe {
        let text = format!(
            "{extra}\nname = \"m\"\ncompatible = \"c\"\nversion = \"1.0.0\"\n\
             [kernel]\npackage = \"linux-image-amd64\"\nmodules = []\ncmdline = \"console=ttyS0 panic=5\"\n\
             [rootfs]\nbase = \"busybox\"\nfilesystem = \"squashfs\"\n"
        );
        Recipe::parse(&text, Path::new("r.toml")).unwrap()
    }

    /// The agent reads what the image build writes: backend, ESP, kernel
    /// options, and for systemd-boot the kernel and initrd file slots.
    #[test]
    fn the_agent_accepts_each_chains_config() {
        let grub = parse(&[Source::image("t.toml", agent_config(&recipe("")))]).unwrap();
        assert!(matches!(grub.boot, BootConfig::Grub { .. }));
        assert_eq!(grub.classes().count(), 1);
        assert!(boot_args_file(&recipe("")).is_some());

        let r = recipe("bootloader = \"systemd-boot\"");
        let s = parse(&[Source::image("t.toml", agent_config(&r))]).unwrap();
        match &s.boot {
            BootConfig::SystemdBoot {
                esp,
                kernel_options,
                ..
            } => {
                assert_eq!(esp, Path::new("/boot/efi"));
                assert_eq!(kernel_options, "console=ttyS0 panic=5");
            }
            other => panic!("{other:?}"),
        }
        let kernel = SlotClass::new("kernel").unwrap();
        let dev = s.slot(SlotGroup::B, &kernel).unwrap();
        assert_eq!(dev.device, Path::new("/boot/efi/tandem/b/vmlinuz"));
        assert_eq!(dev.size, Some(32 << 20));
        let initrd = SlotClass::new("initrd").unwrap();
        assert_eq!(
            s.slot(SlotGroup::A, &initrd).unwrap().device,
            Path::new("/boot/efi/tandem/a/initrd.img")
        );
        assert!(boot_args_file(&r).is_none());

        // Unified kernel images: one file slot per group, no options.
        let r = recipe("bootloader = \"systemd-boot\"\nuki = true");
        let s = parse(&[Source::image("t.toml", agent_config(&r))]).unwrap();
        match &s.boot {
            BootConfig::SystemdBoot {
                kernel_options,
                uki,
                ..
            } => {
                assert_eq!(uki.as_deref(), Some("/tandem/{slot}/tandem.efi"));
                assert_eq!(kernel_options, "");
            }
            other => panic!("{other:?}"),
        }
        let uki = SlotClass::new("uki").unwrap();
        let dev = s.slot(SlotGroup::B, &uki).unwrap();
        assert_eq!(dev.device, Path::new("/boot/efi/tandem/b/tandem.efi"));
        assert_eq!(s.classes().count(), 2, "rootfs and uki");
    }
}

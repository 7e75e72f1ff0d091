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

/// The agent configuration every image carries (the device's view).
pub fn agent_config(r: &Recipe) -> String {
    let chain = r.arch.boot_chain();
    let boot = match chain {
        BootChain::Grub => format!(
            "backend = \"grub\"\ngrubenv = \"{}/EFI/tandem/grubenv\"",
            chain.mount_point()
        ),
        BootChain::UbootFile => format!(
            "backend = \"uboot-file\"\nuboot_env_file = \"{}/{}\"",
            chain.mount_point(),
            tandem::boot::uboot_file::FILE_NAME
        ),
    };
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
[slots.a.rootfs]
device = "/dev/tandem/root-a"

[slots.b.rootfs]
device = "/dev/tandem/root-b"
"#,
        name = r.name,
        compatible = r.compatible
    )
}

/// The slot's own kernel arguments, in the bootloader's syntax: a GRUB
/// snippet `/boot/tandem.cfg` that grub.cfg sources, or a U-Boot text env
/// `/boot/tandem-args.env` whose `tandem_bootargs` boot.scr imports.
pub fn boot_args_file(r: &Recipe) -> (&'static str, String) {
    match r.arch.boot_chain() {
        BootChain::Grub => (
            "boot/tandem.cfg",
            format!("set tandem_cmdline=\"{}\"\n", r.kernel.cmdline),
        ),
        BootChain::UbootFile => (
            "boot/tandem-args.env",
            format!("tandem_bootargs={}\n", r.kernel.cmdline),
        ),
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
            r.arch.boot_chain().mount_point(),
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
    write(stage, "boot/vmlinuz", &read(&k.vmlinuz())?, 0o644)?;
    write(stage, "boot/initrd.img", initrd, 0o644)?;
    let (args_path, args) = boot_args_file(r);
    write(stage, args_path, args.as_bytes(), 0o644)?;
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

//! The root filesystem tree of a slot (busybox base) and its initramfs.

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::cpio::{self, Entry};
use crate::kernel::{self, KernelTree};
use crate::recipe::{Arch, Base, BootChain, Recipe};
use crate::{run, BuildError, BuildOptions};

const INITRAMFS_INIT: &str = include_str!("../assets/initramfs-init.sh");
const BUSYBOX_INIT: &str = include_str!("../assets/init-busybox.sh");
const BUSYBOX: &str = "/bin/busybox";

fn read(p: &Path) -> Result<Vec<u8>, BuildError> {
    std::fs::read(p).map_err(|e| BuildError::io(p, e))
}

/// The busybox an image carries and the applets it links to it.
pub struct Busybox {
    pub path: PathBuf,
    pub applets: Vec<String>,
}

/// The host's `/bin/busybox` for the host's architecture; otherwise
/// Debian's `busybox-static` for `arch` from the cache (`apt-get
/// download`), whose applets are read from the binary since it cannot run
/// here.
pub fn busybox(arch: Arch, cache: &Path) -> Result<Busybox, BuildError> {
    if arch.is_host() {
        let applets = run(BUSYBOX, &["--list"])?
            .lines()
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_string)
            .collect();
        return Ok(Busybox {
            path: BUSYBOX.into(),
            applets,
        });
    }
    let root = crate::deb::unpack(&arch.package("busybox-static"), cache)?;
    let path = root.join("bin/busybox");
    let applets = applet_names(&read(&path)?).ok_or_else(|| {
        BuildError::Step(format!(
            "{}: no applet name table found (not a busybox binary?)",
            path.display()
        ))
    })?;
    Ok(Busybox { path, applets })
}

/// The applet names compiled into a busybox binary: its `applet_names`
/// table, NUL-separated and sorted, which starts with `[` and `[[` and ends
/// at an empty name. Pure.
pub fn applet_names(binary: &[u8]) -> Option<Vec<String>> {
    const START: &[u8] = b"[\0[[\0";
    let at = binary.windows(START.len()).position(|w| w == START)?;
    let names: Vec<String> = binary[at..]
        .split(|&b| b == 0)
        .take_while(|n| !n.is_empty())
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect();
    let plausible = names.len() > 2
        && names.iter().all(|n| {
            n.len() < 64
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"[-_.".contains(&b))
        });
    plausible.then_some(names)
}

/// The static `e2fsck` the Rust init runs on a data partition that does
/// not mount: Debian's `e2fsck-static` for `arch`, from the cache.
pub fn e2fsck(arch: Arch, cache: &Path) -> Result<PathBuf, BuildError> {
    let root = crate::deb::unpack(&arch.package("e2fsck-static"), cache)?;
    Ok(root.join("sbin/e2fsck.static"))
}

/// The policy file of the Rust init (initramfs/src/policy.rs): dm-verity
/// required exactly when the recipe's images carry it.
pub fn initramfs_policy(r: &Recipe) -> String {
    tandem_initramfs::policy::Policy {
        require_verity: r.rootfs.verity,
    }
    .to_text(&format!(
        "Written by tandem-image for recipe {} {}.",
        r.name, r.version
    ))
}

/// The initramfs: `/init` (the static Rust init when given, with its
/// policy file and `e2fsck`; else the busybox script with busybox), and
/// the modules in load order.
pub fn initramfs(
    r: &Recipe,
    k: &KernelTree,
    epoch: u64,
    init: Option<(&Path, &Path)>,
    busybox: &Path,
) -> Result<Vec<u8>, BuildError> {
    let mdir = k.modules_dir();
    let dep =
        std::fs::read_to_string(mdir.join("modules.dep")).map_err(|e| BuildError::io(&mdir, e))?;
    let order = kernel::module_order(&dep, &r.kernel.modules)?;
    let mut e: Vec<(String, Entry)> = Vec::new();
    for d in [
        "bin",
        "dev",
        "etc",
        "lib",
        "lib/modules",
        "proc",
        "sys",
        "sysroot",
    ] {
        e.push((d.into(), Entry::Dir { mode: 0o755 }));
    }
    match init {
        Some((path, e2fsck)) => {
            e.push((
                "init".into(),
                Entry::File {
                    mode: 0o755,
                    data: read(path)?,
                },
            ));
            e.push(("etc/tandem".into(), Entry::Dir { mode: 0o755 }));
            e.push((
                tandem_initramfs::policy::PATH
                    .trim_start_matches('/')
                    .into(),
                Entry::File {
                    mode: 0o644,
                    data: initramfs_policy(r).into_bytes(),
                },
            ));
            e.push(("sbin".into(), Entry::Dir { mode: 0o755 }));
            e.push((
                tandem_initramfs::data::E2FSCK
                    .trim_start_matches('/')
                    .into(),
                Entry::File {
                    mode: 0o755,
                    data: read(e2fsck)?,
                },
            ));
        }
        None => {
            e.push((
                "bin/busybox".into(),
                Entry::File {
                    mode: 0o755,
                    data: read(busybox)?,
                },
            ));
            e.push((
                "init".into(),
                Entry::File {
                    mode: 0o755,
                    data: INITRAMFS_INIT.as_bytes().to_vec(),
                },
            ));
        }
    }
    let mut list = String::new();
    for rel in &order {
        let name = Path::new(rel)
            .file_name()
            .expect("module file")
            .to_string_lossy()
            .into_owned();
        e.push((
            format!("lib/modules/{name}"),
            Entry::File {
                mode: 0o644,
                data: read(&mdir.join(rel))?,
            },
        ));
        list += &name;
        list.push('\n');
    }
    e.push((
        "etc/modules-load".into(),
        Entry::File {
            mode: 0o644,
            data: list.into_bytes(),
        },
    ));
    let raw = cpio::build(&e, epoch);
    // gzip through the tool (deterministic with -n: no name, no time).
    let tmp = std::env::temp_dir().join(format!("tandem-initrd-{}.cpio", std::process::id()));
    std::fs::write(&tmp, &raw).map_err(|e| BuildError::io(&tmp, e))?;
    run("gzip", &["-n", "-9", "-f", &tmp.display().to_string()])?;
    let gz = PathBuf::from(format!("{}.gz", tmp.display()));
    let out = read(&gz)?;
    let _ = std::fs::remove_file(&gz);
    Ok(out)
}

/// Writes one file into the staged tree, creating its directories.
pub(crate) fn write(stage: &Path, rel: &str, data: &[u8], mode: u32) -> Result<(), BuildError> {
    let p = stage.join(rel.trim_start_matches('/'));
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).map_err(|e| BuildError::io(parent, e))?;
    }
    std::fs::write(&p, data).map_err(|e| BuildError::io(&p, e))?;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))
        .map_err(|e| BuildError::io(&p, e))
}

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
    let own_base = match (r.rootfs.base, &r.rootfs.oci) {
        (Base::Oci, Some(src)) => {
            let src = o.recipe_dir.join(src);
            let a = crate::oci::apply(
                &src,
                r.rootfs.oci_ref.as_deref(),
                r.arch.debian(),
                &o.work,
                stage,
            )?;
            eprintln!(
                "tandem-image: applied {} layer(s) of {} ({} entries, {} removed by whiteouts)",
                a.layers.len(),
                src.display(),
                a.entries,
                a.removed
            );
            true
        }
        (Base::Debian, _) => {
            crate::debian::apply(r, o, stage)?;
            true
        }
        _ => false,
    };
    for d in [
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
        r.arch.boot_chain().mount_point().trim_start_matches('/'),
        "root",
        "lib/modules",
    ] {
        let p = stage.join(d);
        std::fs::create_dir_all(&p).map_err(|e| BuildError::io(&p, e))?;
    }
    if !own_base {
        write(stage, "bin/busybox", &read(&bb.path)?, 0o755)?;
        for a in bb.applets.iter().filter(|a| *a != "busybox") {
            let link = stage.join("bin").join(a);
            if !link.exists() {
                symlink("busybox", &link).map_err(|e| BuildError::io(&link, e))?;
            }
        }
        write(stage, "sbin/init", BUSYBOX_INIT.as_bytes(), 0o755)?;
    }
    write(stage, "usr/bin/tandem", &read(&o.agent)?, 0o755)?;
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
        if !(own_base && stage.join(path).exists()) {
            write(stage, path, text.as_bytes(), 0o644)?;
        }
    }
    write(stage, "boot/vmlinuz", &read(&k.vmlinuz())?, 0o644)?;
    write(stage, "boot/initrd.img", initrd, 0o644)?;
    let (args_path, args) = boot_args_file(r);
    write(stage, args_path, args.as_bytes(), 0o644)?;
    if r.rootfs.base == Base::Debian {
        crate::debian::integrate(r, stage)?;
    }
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

    #[test]
    fn applet_table() {
        let mut bin = b"\x7fELF junk [ not this\0".to_vec();
        bin.extend_from_slice(b"[\0[[\0ash\0ls\0sh\0\0\x01\x02");
        assert_eq!(
            applet_names(&bin).unwrap(),
            vec!["[", "[[", "ash", "ls", "sh"]
        );
        assert_eq!(applet_names(b"no table here"), None);
    }

    #[test]
    fn applet_table_matches_busybox_list() {
        // The host's busybox, where there is one, lists the same applets.
        let Ok(bin) = std::fs::read(BUSYBOX) else {
            eprintln!("no {BUSYBOX}; skipped");
            return;
        };
        let Ok(list) = run(BUSYBOX, &["--list"]) else {
            return;
        };
        let want: Vec<&str> = list.lines().map(str::trim).collect();
        assert_eq!(applet_names(&bin).unwrap(), want);
    }
}

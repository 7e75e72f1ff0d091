//! The `debian` base: a minimal Debian made by `mmdebstrap --variant=minbase`
//! with systemd as init, then wired up for Tandem: the agent's systemd units
//! (the trial-boot check enabled, ordered before `boot-complete.target`; the
//! D-Bus daemon activatable), its bus policy, activation file and polkit
//! files, an fstab for the ESP and `/tmp`, DHCP with systemd-networkd, and
//! the serial-console hooks the QEMU rig drives (`TANDEM-BOOTED` /
//! `TANDEM-READY` markers and a root login on the console).
//!
//! Units are enabled with symlinks in the staged tree, as `systemctl
//! enable` would make them; nothing runs inside the image at build time.
//!
//! The mmdebstrap tarball is cached under the build's cache directory, keyed
//! by the mmdebstrap arguments (suite, mirror, packages, architecture), so
//! building the next version reuses the same packages: same tarball, same
//! slot image. A new download takes whatever the archive holds that day;
//! delete the cached tarball to refresh it.

use std::path::{Path, PathBuf};
use std::time::Instant;

use sha2::{Digest, Sha256};

use crate::recipe::{Arch, Recipe};
use crate::tool::BuildError;

pub const DEFAULT_SUITE: &str = "bookworm";
pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";

/// Always installed: systemd as PID 1, the system bus, udev (for
/// `/dev/disk/by-partlabel`), kmod, and `ip` for the operator.
const BASE_PACKAGES: &[&str] = &["systemd-sysv", "dbus", "udev", "kmod", "iproute2"];

/// No manuals, docs (copyright files stay) or translations in the image.
const DPKG_EXCLUDES: &[&str] = &[
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/lintian/*",
];

/// The agent's distribution files (agent/dist), installed verbatim:
/// (destination in the image, contents).
const DIST_FILES: &[(&str, &str)] = &[
    (
        "usr/lib/systemd/system/tandem-boot-check.service",
        include_str!("../../agent/dist/systemd/tandem-boot-check.service"),
    ),
    (
        "usr/lib/systemd/system/tandem.service",
        include_str!("../../agent/dist/systemd/tandem.service"),
    ),
    (
        "usr/share/dbus-1/system.d/dev.tandem.Agent1.conf",
        include_str!("../../agent/dist/dbus/dev.tandem.Agent1.conf"),
    ),
    (
        "usr/share/dbus-1/system-services/dev.tandem.Agent1.service",
        include_str!("../../agent/dist/dbus/dev.tandem.Agent1.service"),
    ),
    (
        "usr/share/polkit-1/actions/dev.tandem.policy",
        include_str!("../../agent/dist/polkit/dev.tandem.policy"),
    ),
    (
        "usr/share/polkit-1/rules.d/50-tandem.rules",
        include_str!("../../agent/dist/polkit/50-tandem.rules"),
    ),
];

/// What `systemctl enable tandem-boot-check.service` makes (its
/// [Install] section), under /etc/systemd/system: (link, unit).
const BOOT_CHECK_LINKS: &[(&str, &str)] = &[
    (
        "multi-user.target.wants/tandem-boot-check.service",
        "tandem-boot-check.service",
    ),
    (
        "boot-complete.target.requires/tandem-boot-check.service",
        "tandem-boot-check.service",
    ),
];

const MARKER: &str = include_str!("../assets/debian/console-marker.sh");
const BOOTED_UNIT: &str = include_str!("../assets/debian/tandem-console-booted.service");
const AUTOLOGIN: &str = include_str!("../assets/debian/50-tandem-autologin.conf");
const CONSOLE_PROFILE: &str = include_str!("../assets/debian/tandem-console.sh");
const NETWORK: &str = include_str!("../assets/debian/50-tandem-dhcp.network");
/// network-online.target (which the boot check wants) is reached when one
/// link is up, and at most 20 s late without any (not the default 2 min).
const WAIT_ONLINE: &str = "# Written by tandem-image: one link is enough, 20 s at most.\n\
[Service]\nExecStart=\nExecStart=/lib/systemd/systemd-networkd-wait-online --any --timeout=20\n";
const BOOT_CHECK_CONSOLE: &str =
    "# Written by tandem-image: the check's verdict on the console too.\n\
[Service]\nStandardOutput=journal+console\nStandardError=journal+console\n";

/// `/var` is the data partition's, bound by the initramfs before systemd
/// starts, so systemd knows `var.mount` only from mountinfo, and
/// `RequiresMountsFor=/var/log/journal` orders the journal flush after it
/// without stopping it with it: journald kept its file open and
/// `var.mount` failed to unmount at every shutdown ("Failed unmounting
/// var.mount", scenario 9). Stopped at shutdown, the unit's `ExecStop`
/// (`journalctl --smart-relinquish-var`) moves journald back to /run
/// before /var is unmounted (it is ordered after var.mount, so it stops
/// first).
const JOURNAL_FLUSH_STOP: &str = "# Written by tandem-image: leave /var before it is unmounted.\n\
[Unit]\nConflicts=umount.target\nBefore=umount.target\n";

/// The mmdebstrap arguments before the output path, for `r`'s
/// `[rootfs]` (suite, mirror, packages) and architecture. Pure.
pub fn mmdebstrap_args(r: &Recipe) -> Vec<String> {
    let suite = r.rootfs.suite.as_deref().unwrap_or(DEFAULT_SUITE);
    let mirror = r
        .rootfs
        .mirror
        .as_deref()
        .unwrap_or(DEFAULT_MIRROR)
        .trim_end_matches('/');
    let mut include: Vec<&str> = BASE_PACKAGES.to_vec();
    for p in &r.rootfs.packages {
        if !include.contains(&p.as_str()) {
            include.push(p);
        }
    }
    let mut a = vec![
        "--variant=minbase".to_string(),
        format!("--arch={}", r.arch.debian()),
        "--format=tar".into(),
        // /dev is a devtmpfs at run time; no device nodes in the image.
        "--skip=output/dev".into(),
        format!("--include={}", include.join(",")),
    ];
    a.extend(DPKG_EXCLUDES.iter().map(|o| format!("--dpkgopt={o}")));
    a.push(suite.to_string());
    a.push("-".into()); // the output path goes here
    a.push(format!("deb {mirror} {suite} main"));
    if !matches!(suite, "sid" | "unstable" | "experimental") && r.rootfs.updates != Some(false) {
        a.push(format!("deb {mirror} {suite}-updates main"));
        let security = match mirror.strip_suffix("/debian") {
            Some(host) => format!("{host}/debian-security"),
            None => "http://deb.debian.org/debian-security".into(),
        };
        a.push(format!("deb {security} {suite}-security main"));
    }
    a
}

/// The cache file name for these arguments.
pub fn cache_name(args: &[String]) -> String {
    let digest = Sha256::digest(args.join("\n").as_bytes());
    format!("mmdebstrap-{}.tar.zst", &hex::encode(digest)[..16])
}

/// The mmdebstrap tarball for `r`: from the cache, or made now (as root
/// with `--mode=root`, otherwise `--mode=unshare`).
pub fn tarball(r: &Recipe, cache: &Path, epoch: u64) -> Result<PathBuf, BuildError> {
    let args = mmdebstrap_args(r);
    let dir = cache.join("debian");
    let path = dir.join(cache_name(&args));
    if path.exists() {
        eprintln!(
            "tandem-image: debian base from the cache: {}",
            path.display()
        );
        return Ok(path);
    }
    std::fs::create_dir_all(&dir).map_err(|e| BuildError::io(&dir, e))?;
    let partial = dir.join(format!("partial-{}", cache_name(&args)));
    let out = partial.display().to_string();
    let mode = if crate::tool::is_root() {
        "--mode=root"
    } else {
        "--mode=unshare"
    };
    let mut full: Vec<&str> = vec!["--quiet", mode];
    full.extend(
        args.iter()
            .map(|a| if a == "-" { &out } else { a.as_str() }),
    );
    eprintln!("tandem-image: mmdebstrap {}", full.join(" "));
    let start = Instant::now();
    crate::tool::run_env(
        None,
        "mmdebstrap",
        &full,
        &[("SOURCE_DATE_EPOCH", epoch.to_string())],
    )?;
    std::fs::rename(&partial, &path).map_err(|e| BuildError::io(&path, e))?;
    eprintln!(
        "tandem-image: mmdebstrap took {:.0} s, {} MiB",
        start.elapsed().as_secs_f64(),
        std::fs::metadata(&path).map(|m| m.len() >> 20).unwrap_or(0)
    );
    Ok(path)
}

/// Unpacks the Debian base into `stage`.
pub fn apply(r: &Recipe, cache: &Path, stage: &Path) -> Result<(), BuildError> {
    let tar = tarball(r, cache, crate::derive::build_epoch())?;
    let a = crate::oci::apply_tarball(&tar, stage)?;
    eprintln!(
        "tandem-image: applied the debian base ({} entries)",
        a.entries
    );
    Ok(())
}

/// Installs the agent's Debian package `deb` into the Debian base in
/// `stage` with `dpkg --root`, as on any Debian system: dpkg checks its
/// dependencies against the base, unpacks it and runs its maintainer
/// scripts chrooted in the stage (which creates the `tandem` group and
/// enables the boot check, starting nothing). Needs root.
pub fn install_package(stage: &Path, deb: &Path) -> Result<(), BuildError> {
    if !crate::tool::is_root() {
        return Err(BuildError::Step(format!(
            "--agent {}: installing a package runs dpkg --root (chroot), which needs root",
            deb.display()
        )));
    }
    let deb = std::fs::canonicalize(deb).map_err(|e| BuildError::io(deb, e))?;
    // The scripts redirect to /dev/null; the image's /dev stays empty (a
    // devtmpfs at run time), so the node lives only while dpkg runs.
    let null = stage.join("dev/null");
    std::fs::create_dir_all(stage.join("dev")).map_err(|e| BuildError::io(stage, e))?;
    let null_arg = null.display().to_string();
    crate::tool::run("mknod", &["-m", "666", &null_arg, "c", "1", "3"])?;
    let root = stage.display().to_string();
    let mut args = vec!["--root", &root, "--log=/dev/null", "--force-unsafe-io"];
    let excludes: Vec<String> = DPKG_EXCLUDES.iter().map(|o| format!("--{o}")).collect();
    args.extend(excludes.iter().map(String::as_str));
    let deb_arg = deb.display().to_string();
    args.extend(["--install", &deb_arg]);
    let res = crate::tool::run("dpkg", &args);
    let _ = std::fs::remove_file(&null);
    res?;
    // What the postinst must have done, or the image would never commit.
    for (link, _) in BOOT_CHECK_LINKS {
        let p = stage.join("etc/systemd/system").join(link);
        if std::fs::symlink_metadata(&p).is_err() {
            return Err(BuildError::Step(format!(
                "{}: its postinst did not enable the boot check ({} missing)",
                deb.display(),
                p.display()
            )));
        }
    }
    // dpkg's backups of its database: not part of the image.
    for old in ["var/lib/dpkg/status-old", "var/lib/dpkg/diversions-old"] {
        let _ = std::fs::remove_file(stage.join(old));
    }
    eprintln!("tandem-image: installed {} with dpkg", deb.display());
    Ok(())
}

/// The serial console the rig and the operator use.
fn console(arch: Arch) -> &'static str {
    match arch {
        Arch::Amd64 => "ttyS0",
        Arch::Arm64 => "ttyAMA0",
    }
}

/// A file the integration writes: (path in the image, contents, mode).
pub type File = (String, String, u32);

/// What makes the Debian base a Tandem image, as files and symlinks
/// (path, target) relative to the image root. Pure.
/// With `packaged`, the agent came from its Debian package, which brought
/// the dist files and whose postinst enabled the boot check.
pub fn integration(r: &Recipe, packaged: bool) -> (Vec<File>, Vec<(String, String)>) {
    let chain = r.boot_chain();
    let tty = console(r.arch);
    let dist: &[(&str, &str)] = if packaged { &[] } else { DIST_FILES };
    let mut files: Vec<File> = dist
        .iter()
        .map(|(dest, text)| (dest.to_string(), text.to_string(), 0o644))
        .collect();
    files.extend([
        (
            "etc/fstab".into(),
            format!(
                "# Written by tandem-image. / is the read-only slot; /var and the /etc\n\
                 # overlay come from the data partition (mounted by the initramfs).\n\
                 PARTLABEL={part} {mnt} vfat umask=0077,noatime 0 0\n\
                 tmpfs /tmp tmpfs mode=1777,nosuid,nodev 0 0\n",
                part = chain.partition_name(),
                mnt = chain.mount_point()
            ),
            0o644,
        ),
        ("etc/hostname".into(), format!("{}\n", r.name), 0o644),
        (
            "usr/lib/systemd/system/tandem-boot-check.service.d/50-console.conf".into(),
            BOOT_CHECK_CONSOLE.into(),
            0o644,
        ),
        (
            "usr/lib/systemd/system/systemd-journal-flush.service.d/50-tandem-var.conf".into(),
            JOURNAL_FLUSH_STOP.into(),
            0o644,
        ),
        (
            "usr/lib/systemd/system/tandem-console-booted.service".into(),
            BOOTED_UNIT.into(),
            0o644,
        ),
        ("usr/lib/tandem/console-marker".into(), MARKER.into(), 0o755),
        (
            format!("usr/lib/systemd/system/serial-getty@{tty}.service.d/50-tandem-autologin.conf"),
            AUTOLOGIN.into(),
            0o644,
        ),
        (
            "etc/profile.d/tandem-console.sh".into(),
            CONSOLE_PROFILE.replace("@TTY@", tty),
            0o644,
        ),
        (
            "usr/lib/systemd/system/systemd-networkd-wait-online.service.d/50-tandem.conf".into(),
            WAIT_ONLINE.into(),
            0o644,
        ),
        (
            "usr/lib/systemd/network/50-tandem-dhcp.network".into(),
            NETWORK.into(),
            0o644,
        ),
    ]);
    let unit = |u: &str| format!("/usr/lib/systemd/system/{u}");
    let enabled: &[(&str, &str)] = if packaged { &[] } else { BOOT_CHECK_LINKS };
    let mut links: Vec<(String, String)> = enabled
        .iter()
        .chain(&[
            (
                "multi-user.target.wants/tandem-console-booted.service",
                "tandem-console-booted.service",
            ),
            (
                "multi-user.target.wants/systemd-networkd.service",
                "systemd-networkd.service",
            ),
            (
                "sockets.target.wants/systemd-networkd.socket",
                "systemd-networkd.socket",
            ),
            (
                "network-online.target.wants/systemd-networkd-wait-online.service",
                "systemd-networkd-wait-online.service",
            ),
            (
                "dbus-org.freedesktop.network1.service",
                "systemd-networkd.service",
            ),
        ])
        .map(|(l, u)| (format!("etc/systemd/system/{l}"), unit(u)))
        .collect();
    // Masked: Tandem's boot check commits, not systemd-boot's counting; no
    // first-boot prompts on the console; no apt runs on a read-only image.
    for u in [
        "systemd-bless-boot.service",
        "systemd-firstboot.service",
        "apt-daily.timer",
        "apt-daily-upgrade.timer",
    ] {
        links.push((format!("etc/systemd/system/{u}"), "/dev/null".into()));
    }
    (files, links)
}

/// Writes [`integration`] into `stage`, replacing what is there.
pub fn integrate(r: &Recipe, stage: &Path, packaged: bool) -> Result<(), BuildError> {
    let (files, links) = integration(r, packaged);
    for (path, text, mode) in files {
        crate::stage::write(stage, &path, text.as_bytes(), mode)?;
    }
    for (path, target) in links {
        crate::stage::symlink(stage, &path, &target)?;
    }
    // tandem's units name /efi in ReadWritePaths=: it must exist.
    let efi = stage.join("efi");
    std::fs::create_dir_all(&efi).map_err(|e| BuildError::io(&efi, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipe(extra: &str) -> Recipe {
        let text = format!(
            "name = \"debian\"\ncompatible = \"c\"\nversion = \"1.0.0\"\n\
             [kernel]\npackage = \"linux-image-amd64\"\nmodules = []\n\
             [rootfs]\nbase = \"debian\"\nfilesystem = \"squashfs\"\n{extra}"
        );
        Recipe::parse(&text, Path::new("r.toml")).unwrap()
    }

    #[test]
    fn args_and_cache_key() {
        let a = mmdebstrap_args(&recipe("packages = [\"curl\", \"dbus\"]\n"));
        assert!(a.contains(&"--include=systemd-sysv,dbus,udev,kmod,iproute2,curl".to_string()));
        assert!(
            a.contains(&"deb http://deb.debian.org/debian-security bookworm-security main".into())
        );
        assert_eq!(a.iter().filter(|x| *x == "-").count(), 1);
        let released = mmdebstrap_args(&recipe("updates = false\n"));
        assert_eq!(
            released
                .iter()
                .filter(|x| x.starts_with("deb "))
                .collect::<Vec<_>>(),
            ["deb http://deb.debian.org/debian bookworm main"]
        );
        let b = mmdebstrap_args(&recipe("suite = \"sid\"\nmirror = \"http://m/debian/\"\n"));
        assert_eq!(b.last().unwrap(), "deb http://m/debian sid main");
        assert_ne!(cache_name(&a), cache_name(&b));
        assert_eq!(
            cache_name(&a),
            cache_name(&mmdebstrap_args(&recipe("packages = [\"curl\"]\n")))
        );
    }

    #[test]
    fn units_enabled_and_masked() {
        let (files, links) = integration(&recipe(""), false);
        let has = |p: &str| files.iter().any(|(f, _, _)| f == p);
        assert!(has(
            "usr/share/dbus-1/system-services/dev.tandem.Agent1.service"
        ));
        assert!(has(
            "usr/lib/systemd/system/serial-getty@ttyS0.service.d/50-tandem-autologin.conf"
        ));
        let fstab = &files.iter().find(|(f, _, _)| f == "etc/fstab").unwrap().1;
        assert!(fstab.contains("PARTLABEL=esp /boot/efi vfat"));
        let flush = &files
            .iter()
            .find(|(f, _, _)| {
                f == "usr/lib/systemd/system/systemd-journal-flush.service.d/50-tandem-var.conf"
            })
            .unwrap()
            .1;
        assert!(flush.contains("Conflicts=umount.target\nBefore=umount.target\n"));
        let link = |l: &str| links.iter().find(|(p, _)| p == l).map(|(_, t)| t.as_str());
        assert_eq!(
            link("etc/systemd/system/boot-complete.target.requires/tandem-boot-check.service"),
            Some("/usr/lib/systemd/system/tandem-boot-check.service")
        );
        assert_eq!(
            link("etc/systemd/system/systemd-bless-boot.service"),
            Some("/dev/null")
        );
    }

    #[test]
    fn a_packaged_agent_brings_its_own_units() {
        let (files, links) = integration(&recipe(""), true);
        for (dest, _) in DIST_FILES {
            assert!(!files.iter().any(|(f, _, _)| f == dest), "{dest}");
        }
        for (link, _) in BOOT_CHECK_LINKS {
            let l = format!("etc/systemd/system/{link}");
            assert!(!links.iter().any(|(p, _)| *p == l), "{l}");
        }
        // The image's own integration stays.
        assert!(files.iter().any(|(f, _, _)| f == "etc/fstab"));
        assert!(links.iter().any(
            |(p, t)| p == "etc/systemd/system/systemd-bless-boot.service" && t == "/dev/null"
        ));
        let (unpackaged, _) = integration(&recipe(""), false);
        assert_eq!(unpackaged.len(), files.len() + DIST_FILES.len());
    }
}

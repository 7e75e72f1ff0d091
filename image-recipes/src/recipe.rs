//! The recipe format (TOML, documented in image-recipes/README.md). Pure.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {key}: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    pub name: String,
    pub compatible: String,
    pub version: semver::Version,
    #[serde(default)]
    pub security_epoch: u64,
    /// The Debian architecture the image is for; decides the kernel and
    /// busybox packages and the boot chain (GRUB/UEFI or U-Boot).
    #[serde(default)]
    pub arch: Arch,
    /// The bootloader: amd64 boots GRUB (the default) or systemd-boot;
    /// arm64 boots U-Boot.
    pub bootloader: Option<Bootloader>,
    /// systemd-boot only: boot a unified kernel image per slot (kernel,
    /// initramfs and a command line naming the slot and its dm-verity
    /// root hash, signable for Secure Boot) instead of kernel + initrd.
    #[serde(default)]
    pub uki: bool,
    pub kernel: Kernel,
    pub rootfs: Rootfs,
    #[serde(default)]
    pub files: BTreeMap<String, PathBuf>,
    pub disk: Option<DiskSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kernel {
    /// A Debian package name (`linux-image-amd64` is resolved to the versioned one).
    pub package: String,
    /// Modules the initramfs loads, dependencies added automatically.
    pub modules: Vec<String>,
    #[serde(default = "default_cmdline")]
    pub cmdline: String,
}

fn default_cmdline() -> String {
    "console=ttyS0 panic=5".into()
}

/// A target architecture, by its Debian name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// x86_64: UEFI (OVMF) and GRUB, `grubenv` on the ESP.
    #[default]
    Amd64,
    /// aarch64: U-Boot with `boot.scr` and the text env file `tandem.env`
    /// on the FAT boot partition (agent backend `uboot-file`).
    Arm64,
}

/// A recipe's `bootloader`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Bootloader {
    Grub,
    SystemdBoot,
    #[serde(rename = "u-boot")]
    UBoot,
}

impl std::str::FromStr for Bootloader {
    type Err = String;
    fn from_str(s: &str) -> Result<Bootloader, String> {
        match s {
            "grub" => Ok(Bootloader::Grub),
            "systemd-boot" => Ok(Bootloader::SystemdBoot),
            "u-boot" => Ok(Bootloader::UBoot),
            _ => Err(format!(
                "unknown bootloader {s:?}: grub, systemd-boot or u-boot"
            )),
        }
    }
}

/// How a disk boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootChain {
    /// ESP with GRUB, `/EFI/tandem/grub.cfg` and `grubenv`, mounted at `/boot/efi`.
    Grub,
    /// ESP with systemd-boot, a Boot Loader Specification entry per slot
    /// (`/loader/entries/tandem-<g>….conf`) and each slot's kernel and
    /// initrd (`/tandem/<g>/`), mounted at `/boot/efi` (agent backend
    /// `systemd-boot`; the bundle carries kernel and initrd as images).
    SdBoot,
    /// FAT partition with `boot.scr` and `tandem.env`, mounted at `/boot/firmware`.
    UbootFile,
}

impl Arch {
    /// The Debian architecture name (`dpkg --print-architecture`).
    pub fn debian(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }

    /// Whether binaries of this architecture run on the build host.
    pub fn is_host(self) -> bool {
        matches!(
            (self, std::env::consts::ARCH),
            (Arch::Amd64, "x86_64") | (Arch::Arm64, "aarch64")
        )
    }

    /// A Debian package name for this architecture: `pkg` on the host's
    /// architecture, `pkg:arm64` (multiarch) otherwise.
    pub fn package(self, pkg: &str) -> String {
        if self.is_host() || pkg.contains(':') {
            pkg.to_string()
        } else {
            format!("{pkg}:{}", self.debian())
        }
    }

    /// The boot chain of `bootloader` (or the default) on this
    /// architecture.
    pub fn boot_chain(self, bootloader: Option<Bootloader>) -> Result<BootChain, String> {
        match (self, bootloader) {
            (Arch::Amd64, None | Some(Bootloader::Grub)) => Ok(BootChain::Grub),
            (Arch::Amd64, Some(Bootloader::SystemdBoot)) => Ok(BootChain::SdBoot),
            (Arch::Arm64, None | Some(Bootloader::UBoot)) => Ok(BootChain::UbootFile),
            (a, Some(b)) => Err(format!(
                "{b:?} is not a bootloader for {} here (amd64: grub or systemd-boot; arm64: u-boot)",
                a.debian()
            )),
        }
    }
}

impl BootChain {
    /// Where the running system mounts the FAT boot partition.
    pub fn mount_point(self) -> &'static str {
        match self {
            BootChain::Grub | BootChain::SdBoot => "/boot/efi",
            BootChain::UbootFile => "/boot/firmware",
        }
    }

    /// The GPT partition name of the FAT boot partition.
    pub fn partition_name(self) -> &'static str {
        match self {
            BootChain::Grub | BootChain::SdBoot => "esp",
            BootChain::UbootFile => "boot",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Base {
    /// busybox userland and the tandem agent.
    Busybox,
    /// An OCI image (layout directory, or a docker/OCI archive) named by
    /// `rootfs.oci`: its layers, whiteouts honoured, then the tandem agent,
    /// kernel and initramfs on top. The image (or `[files]`) must provide
    /// `/sbin/init`.
    Oci,
    /// A minimal Debian made by `mmdebstrap --variant=minbase` with
    /// systemd as init, dbus and udev (`rootfs.suite`, `rootfs.packages`,
    /// `rootfs.mirror`), then the tandem agent with its systemd units,
    /// D-Bus and polkit files installed and enabled. See src/debian.rs.
    Debian,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Filesystem {
    /// squashfs, gzip-compressed (Debian GRUB 2.06 reads it; it cannot read
    /// zstd squashfs nor erofs).
    Squashfs,
    Ext4,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rootfs {
    pub base: Base,
    pub filesystem: Filesystem,
    /// Append a dm-verity hash tree and put its root hash in the manifest.
    #[serde(default = "yes")]
    pub verity: bool,
    /// `base = "oci"`: the image, relative to the recipe's directory.
    pub oci: Option<PathBuf>,
    /// `base = "oci"`: which image, when the source holds several (OCI
    /// `org.opencontainers.image.ref.name`, or a docker repo tag).
    pub oci_ref: Option<String>,
    /// `base = "debian"`: the Debian suite (default `bookworm`).
    pub suite: Option<String>,
    /// `base = "debian"`: packages added to mmdebstrap's `--include`.
    #[serde(default)]
    pub packages: Vec<String>,
    /// `base = "debian"`: the archive (default `http://deb.debian.org/debian`).
    pub mirror: Option<String>,
    /// `base = "debian"`: also `SUITE-updates` and `SUITE-security` (the
    /// default); `false` builds from the suite alone, as it was released.
    pub updates: Option<bool>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskSpec {
    /// The FAT boot partition: the ESP (GRUB) or U-Boot's boot partition.
    #[serde(alias = "boot_mib")]
    pub esp_mib: u64,
    pub slot_mib: u64,
    pub data_mib: u64,
}

impl Recipe {
    pub fn parse(text: &str, path: &Path) -> Result<Recipe, RecipeError> {
        let r: Recipe = toml::from_str(text).map_err(|e| RecipeError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let invalid = |key: &str, message: &str| RecipeError::Invalid {
            path: path.to_path_buf(),
            key: key.into(),
            message: message.into(),
        };
        if r.name.is_empty()
            || !r
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(invalid("name", "use letters, digits and '-'"));
        }
        match (r.rootfs.base, &r.rootfs.oci) {
            (Base::Oci, None) => return Err(invalid(
                "rootfs.oci",
                "base = \"oci\" needs the image: an OCI layout directory or a docker/OCI archive",
            )),
            (Base::Busybox, Some(_)) => {
                return Err(invalid("rootfs.oci", "only used with base = \"oci\""))
            }
            _ => {}
        }
        if r.rootfs.base != Base::Debian {
            for (key, set) in [
                ("rootfs.suite", r.rootfs.suite.is_some()),
                ("rootfs.packages", !r.rootfs.packages.is_empty()),
                ("rootfs.mirror", r.rootfs.mirror.is_some()),
                ("rootfs.updates", r.rootfs.updates.is_some()),
            ] {
                if set {
                    return Err(invalid(key, "only used with base = \"debian\""));
                }
            }
        }
        if r.rootfs.base == Base::Debian && r.rootfs.oci.is_some() {
            return Err(invalid("rootfs.oci", "only used with base = \"oci\""));
        }
        for p in &r.rootfs.packages {
            if p.is_empty()
                || !p
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+-.:".contains(&b))
            {
                return Err(invalid(
                    "rootfs.packages",
                    &format!("{p:?} is not a Debian package name"),
                ));
            }
        }
        for dest in r.files.keys() {
            if !dest.starts_with('/') || dest.contains("..") {
                return Err(invalid(
                    &format!("files.{dest}"),
                    "destination must be an absolute path without '..'",
                ));
            }
        }
        if let Some(d) = &r.disk {
            if d.esp_mib < 33 || d.slot_mib == 0 || d.data_mib == 0 {
                return Err(invalid(
                    "disk",
                    "esp_mib (or boot_mib) >= 33 (FAT32), slot_mib and data_mib > 0",
                ));
            }
        }
        let chain = r
            .arch
            .boot_chain(r.bootloader)
            .map_err(|m| invalid("bootloader", &m))?;
        if r.uki && chain != BootChain::SdBoot {
            return Err(invalid("uki", "needs bootloader = \"systemd-boot\""));
        }
        if chain == BootChain::UbootFile && r.rootfs.filesystem != Filesystem::Ext4 {
            return Err(invalid(
                "rootfs.filesystem",
                "U-Boot (arch arm64) reads only ext4 slots here (Debian's qemu_arm64 build has no squashfs)",
            ));
        }
        Ok(r)
    }

    /// How this recipe's disk boots (checked by [`Recipe::parse`]; a
    /// `bootloader` set afterwards is checked by [`Recipe::set_bootloader`]).
    pub fn boot_chain(&self) -> BootChain {
        self.arch
            .boot_chain(self.bootloader)
            .expect("checked when set")
    }

    /// Overrides the recipe's bootloader (`tandem-image --bootloader`).
    pub fn set_bootloader(&mut self, b: Bootloader) -> Result<(), String> {
        if self.uki && self.arch.boot_chain(Some(b))? != BootChain::SdBoot {
            return Err(
                "the recipe boots unified kernel images (uki = true): systemd-boot only".into(),
            );
        }
        self.arch.boot_chain(Some(b))?;
        self.bootloader = Some(b);
        Ok(())
    }

    /// Boots unified kernel images (`tandem-image --uki`).
    pub fn set_uki(&mut self) -> Result<(), String> {
        if self.boot_chain() != BootChain::SdBoot {
            return Err(
                "unified kernel images need systemd-boot (--bootloader systemd-boot)".into(),
            );
        }
        self.uki = true;
        Ok(())
    }

    pub fn load(path: &Path) -> Result<Recipe, RecipeError> {
        let text = std::fs::read_to_string(path).map_err(|e| RecipeError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Recipe::parse(&text, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = r#"
name = "minimal"
compatible = "tandem-demo-x86_64"
version = "1.0.0"
[kernel]
package = "linux-image-amd64"
modules = ["virtio_blk"]
[rootfs]
base = "busybox"
filesystem = "squashfs"
"#;

    #[test]
    fn parses_and_validates() {
        let r = Recipe::parse(MIN, Path::new("r.toml")).unwrap();
        assert_eq!(r.kernel.cmdline, "console=ttyS0 panic=5");
        assert!(r.rootfs.verity);
        assert_eq!(r.arch, Arch::Amd64);
        for (bad, needle) in [
            (MIN.replace("minimal", "a b"), "name"),
            (
                format!("{MIN}\n[files]\n\"etc/x\" = \"y\"\n"),
                "files.etc/x",
            ),
            (format!("{MIN}\nbogus = 1\n"), "bogus"),
            (format!("arch = \"arm64\"\n{MIN}"), "rootfs.filesystem"),
            (format!("arch = \"riscv64\"\n{MIN}"), "arch"),
            (
                format!("bootloader = \"u-boot\"\n{MIN}"),
                "bootloader: UBoot is not a bootloader for amd64",
            ),
            (format!("bootloader = \"lilo\"\n{MIN}"), "bootloader"),
            (
                format!("uki = true\n{MIN}"),
                "uki: needs bootloader = \"systemd-boot\"",
            ),
            (format!("{MIN}suite = \"bookworm\"\n"), "rootfs.suite"),
            (
                MIN.replace("\"busybox\"", "\"debian\"\npackages = [\"a b\"]"),
                "rootfs.packages",
            ),
        ] {
            let e = Recipe::parse(&bad, Path::new("r.toml"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle), "{needle} in {e}");
        }
    }

    #[test]
    fn systemd_boot_on_amd64_only() {
        let mut r = Recipe::parse(
            &format!("bootloader = \"systemd-boot\"\n{MIN}"),
            Path::new("r.toml"),
        )
        .unwrap();
        assert_eq!(r.boot_chain(), BootChain::SdBoot);
        assert_eq!(r.boot_chain().mount_point(), "/boot/efi");
        r.set_uki().unwrap();
        assert!(
            r.set_bootloader("grub".parse().unwrap()).is_err(),
            "UKIs need systemd-boot"
        );
        r.uki = false;
        r.set_bootloader("grub".parse().unwrap()).unwrap();
        assert_eq!(r.boot_chain(), BootChain::Grub);
        assert!(r.set_uki().is_err());
        r.arch = Arch::Arm64;
        assert!(r.set_bootloader(Bootloader::SystemdBoot).is_err());
        assert_eq!(r.bootloader, Some(Bootloader::Grub));
        assert!("systemd".parse::<Bootloader>().is_err());
    }

    #[test]
    fn debian_base() {
        let text = MIN.replace(
            "\"busybox\"",
            "\"debian\"\nsuite = \"trixie\"\npackages = [\"iproute2\", \"libc6:amd64\"]",
        );
        let r = Recipe::parse(&text, Path::new("r.toml")).unwrap();
        assert_eq!(r.rootfs.base, Base::Debian);
        assert_eq!(r.rootfs.suite.as_deref(), Some("trixie"));
        assert_eq!(r.rootfs.packages, ["iproute2", "libc6:amd64"]);
        assert_eq!(r.rootfs.mirror, None);
    }

    #[test]
    fn arm64_with_boot_mib() {
        let text = format!(
            "arch = \"arm64\"\n{}\n[disk]\nboot_mib = 40\nslot_mib = 1\ndata_mib = 1\n",
            MIN.replace("squashfs", "ext4")
        );
        let r = Recipe::parse(&text, Path::new("r.toml")).unwrap();
        assert_eq!(r.arch, Arch::Arm64);
        assert_eq!(r.boot_chain(), BootChain::UbootFile);
        assert_eq!(r.disk.unwrap().esp_mib, 40);
        assert_eq!(BootChain::UbootFile.mount_point(), "/boot/firmware");
        if std::env::consts::ARCH == "x86_64" {
            assert_eq!(
                Arch::Arm64.package("busybox-static"),
                "busybox-static:arm64"
            );
            assert_eq!(Arch::Amd64.package("busybox-static"), "busybox-static");
        }
        assert_eq!(Arch::Arm64.package("x:arm64"), "x:arm64");
    }
}

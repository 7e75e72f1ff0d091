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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Base {
    /// busybox userland and the tandem agent.
    Busybox,
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
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskSpec {
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
                    "esp_mib >= 33 (FAT32), slot_mib and data_mib > 0",
                ));
            }
        }
        Ok(r)
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
        for (bad, needle) in [
            (MIN.replace("minimal", "a b"), "name"),
            (
                format!("{MIN}\n[files]\n\"etc/x\" = \"y\"\n"),
                "files.etc/x",
            ),
            (format!("{MIN}\nbogus = 1\n"), "bogus"),
        ] {
            let e = Recipe::parse(&bad, Path::new("r.toml"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle), "{needle} in {e}");
        }
    }
}

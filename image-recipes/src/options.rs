//! What a build is given besides the recipe. A leaf.

use std::path::{Path, PathBuf};

/// How the agent gets into the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Agent {
    /// A tandem binary copied to /usr/bin/tandem (statically linked for
    /// the busybox and OCI bases, which may have no glibc).
    Binary(PathBuf),
    /// The tandem Debian package (scripts/build-deb.sh), installed with
    /// dpkg into a `debian` base: its files, units and maintainer scripts
    /// are what the image runs.
    Deb(PathBuf),
}

impl Agent {
    /// A path ending in `.deb` is the package; anything else a binary.
    pub fn from_path(p: &Path) -> Agent {
        if p.extension().is_some_and(|e| e == "deb") {
            Agent::Deb(p.to_path_buf())
        } else {
            Agent::Binary(p.to_path_buf())
        }
    }
}

/// Inputs besides the recipe.
pub struct BuildOptions {
    pub recipe_dir: PathBuf,
    pub out: PathBuf,
    pub work: PathBuf,
    pub cache: PathBuf,
    /// The tandem agent to install.
    pub agent: Agent,
    pub signing_key: PathBuf,
    pub make_disk: bool,
    /// The initramfs `/init` (the static tandem-initramfs binary); without
    /// it, a busybox script is used.
    pub init: Option<PathBuf>,
    /// Secure Boot: sign systemd-boot and the unified kernel images with
    /// this `db` key (recipes with `uki = true` only).
    pub efi_signer: Option<crate::uki::Signer>,
}

//! What a build is given besides the recipe. A leaf.

use std::path::PathBuf;

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

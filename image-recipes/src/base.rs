//! The bases a slot's root filesystem starts from, as peers behind one
//! shape: each lays its tree into the empty stage ([`Base::apply`]) and may
//! finish after the Tandem layer is in ([`Base::integrate`]). rootfs picks
//! one from the recipe and calls only these; the bases import the leaf
//! helpers (stage, tool, derive), never rootfs or each other's callers.

use std::path::{Path, PathBuf};

use crate::busybox::{self, Busybox};
use crate::options::BuildOptions;
use crate::recipe::{self, Recipe};
use crate::tool::BuildError;
use crate::{debian, oci};

/// The base a recipe names, with what it needs.
pub enum Base<'a> {
    /// busybox's userland and the image's init script.
    Busybox(&'a Busybox),
    /// An OCI image's layers.
    Oci {
        source: PathBuf,
        reference: Option<&'a str>,
        arch: &'static str,
        work: &'a Path,
    },
    /// A minimal Debian (mmdebstrap) with systemd.
    Debian { recipe: &'a Recipe, cache: &'a Path },
}

impl<'a> Base<'a> {
    /// The base `r` asks for (recipe validation guarantees `oci` is set
    /// for an OCI base).
    pub fn of(r: &'a Recipe, o: &'a BuildOptions, bb: &'a Busybox) -> Base<'a> {
        match (r.rootfs.base, &r.rootfs.oci) {
            (recipe::Base::Oci, Some(src)) => Base::Oci {
                source: o.recipe_dir.join(src),
                reference: r.rootfs.oci_ref.as_deref(),
                arch: r.arch.debian(),
                work: &o.work,
            },
            (recipe::Base::Debian, _) => Base::Debian {
                recipe: r,
                cache: &o.cache,
            },
            _ => Base::Busybox(bb),
        }
    }

    /// Lays the base into the empty `stage`.
    pub fn apply(&self, stage: &Path) -> Result<(), BuildError> {
        match self {
            Base::Busybox(bb) => busybox::apply(bb, stage),
            Base::Oci {
                source,
                reference,
                arch,
                work,
            } => {
                let a = oci::apply(source, *reference, arch, work, stage)?;
                eprintln!(
                    "tandem-image: applied {} layer(s) of {} ({} entries, {} removed by whiteouts)",
                    a.layers.len(),
                    source.display(),
                    a.entries,
                    a.removed
                );
                Ok(())
            }
            Base::Debian { recipe, cache } => debian::apply(recipe, cache, stage),
        }
    }

    /// Whether the base brings its own users, host name and init (the
    /// Tandem layer then keeps them).
    pub fn own_userland(&self) -> bool {
        !matches!(self, Base::Busybox(_))
    }

    /// Installs the agent from its Debian package: only a Debian base has
    /// the dpkg database and the tools its maintainer scripts run.
    pub fn install_package(&self, stage: &Path, deb: &Path) -> Result<(), BuildError> {
        match self {
            Base::Debian { .. } => debian::install_package(stage, deb),
            Base::Busybox(_) | Base::Oci { .. } => Err(BuildError::Step(format!(
                "--agent {}: a .deb installs only into a debian base (rootfs.base = \"debian\"); give this recipe a static tandem binary",
                deb.display()
            ))),
        }
    }

    /// What the base adds once the Tandem layer is in (Debian: the agent's
    /// systemd units, bus and polkit files, unless `packaged`: the agent's
    /// package brought them).
    pub fn integrate(&self, stage: &Path, packaged: bool) -> Result<(), BuildError> {
        match self {
            Base::Debian { recipe, .. } => debian::integrate(recipe, stage, packaged),
            Base::Busybox(_) | Base::Oci { .. } => Ok(()),
        }
    }
}

//! Boot control: the agent decides, a backend only stores the decision where
//! the bootloader reads it. See docs/boot.md for each backend's variables,
//! its exact write sequence, and what a power cut between writes leaves.
//!
//! Env-style backends (GRUB env, U-Boot env, U-Boot text env file) share one
//! pure A/B variable scheme ([`abvars`]) over an [`EnvStore`] that only
//! loads and saves key/value pairs.

pub mod abvars;
pub mod custom;
pub mod grub;
pub mod sdboot;
pub mod uboot;
pub mod uboot_file;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use crate::slot::SlotGroup;

#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("{backend}: {path}: {source}")]
    Io {
        backend: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{backend}: {path}: {message}")]
    Format {
        backend: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("{backend}: {message}")]
    Unsupported {
        backend: &'static str,
        message: String,
    },
    #[error("{backend}: helper {command} {args}: {message}")]
    Command {
        backend: &'static str,
        command: PathBuf,
        args: String,
        message: String,
    },
}

/// What the bootloader believes about a slot group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mark {
    /// May be booted (committed, or armed for a trial).
    Good,
    /// Must not be booted.
    Bad,
}

/// The bootloader's whole view, read at once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub primary: Option<SlotGroup>,
    pub slots: BTreeMap<SlotGroup, (Mark, Option<u32>)>,
}

/// The operations the agent needs from any bootloader (RAUC's model plus
/// trial arming). Implementations store; they never decide.
pub trait Bootloader {
    fn name(&self) -> &'static str;
    /// The group the bootloader will boot next.
    fn primary(&mut self) -> Result<Option<SlotGroup>, BootError>;
    /// Makes `g` the committed default: good, first in order, no trial.
    fn set_primary(&mut self, g: SlotGroup) -> Result<(), BootError>;
    fn state(&mut self, g: SlotGroup) -> Result<Mark, BootError>;
    fn set_state(&mut self, g: SlotGroup, m: Mark) -> Result<(), BootError>;
    /// Boots `g` next, at most `tries` times until it is committed with
    /// [`Bootloader::set_primary`]; then the bootloader falls back.
    fn arm(&mut self, g: SlotGroup, tries: u32) -> Result<(), BootError>;
    /// Marks `g` bad because its content is about to be written (an
    /// install's first step). Where the bootloader's last resort (nothing
    /// marked bootable) picks by order, an invalidated group must come
    /// after one merely marked bad; env-style backends need nothing more
    /// (their last resort skips a group whose kernel does not load).
    fn invalidate(&mut self, g: SlotGroup) -> Result<(), BootError> {
        self.set_state(g, Mark::Bad)
    }
    /// Trial boots left for `g`; `None` when `g` is not on trial.
    fn tries_left(&mut self, g: SlotGroup) -> Result<Option<u32>, BootError>;
    /// Largest `tries` this backend's boot script can count.
    fn max_tries(&self) -> u32;
    /// Passes kernel parameters (dm-verity's root hash, hash offset and
    /// salt) to the group's next boots, or clears them with `None`.
    /// Called while the group is marked bad, before it is armed. `Ok(false)`:
    /// this backend cannot, and the group boots without them.
    fn set_verity(&mut self, _g: SlotGroup, _args: Option<&str>) -> Result<bool, BootError> {
        Ok(false)
    }
    /// Whether [`Bootloader::set_verity`] can deliver parameters at all
    /// (asked before anything is written, so that a bundle that needs them
    /// is refused up front).
    fn can_pass_verity(&self) -> bool {
        false
    }
    /// Everything the agent reads at once: primary, and per group its mark
    /// and trial tries. Backends that can read it in one go override this.
    fn snapshot(&mut self) -> Result<Snapshot, BootError> {
        let mut s = Snapshot {
            primary: self.primary()?,
            slots: BTreeMap::new(),
        };
        for g in SlotGroup::ALL {
            s.slots.insert(g, (self.state(g)?, self.tries_left(g)?));
        }
        Ok(s)
    }
}

/// Tells the bootloader to try `g` for `tries` boots, with `verity` (its
/// dm-verity kernel parameters) passed first while it still cannot boot.
/// A backend that cannot pass parameters is an error when there are any:
/// a group that asked for dm-verity never boots without it.
pub fn arm_with_verity(
    b: &mut dyn Bootloader,
    g: SlotGroup,
    verity: Option<&str>,
    tries: u32,
) -> Result<(), BootError> {
    if !b.set_verity(g, verity)? && verity.is_some() {
        return Err(BootError::Unsupported {
            backend: b.name(),
            message: format!(
                "cannot pass slot {g}'s dm-verity root hash to the kernel; it is not armed"
            ),
        });
    }
    b.arm(g, tries)
}

/// Opens the configured backend; `None` for backend `none`.
pub fn open(settings: &crate::config::Settings) -> Result<Option<Box<dyn Bootloader>>, BootError> {
    use crate::config::BootConfig;
    Ok(Some(match &settings.boot {
        BootConfig::None => return Ok(None),
        BootConfig::Grub { grubenv } => Box::new(EnvBootloader {
            store: grub::GrubStore::new(grubenv),
        }),
        BootConfig::Uboot { fw_env_config } => Box::new(EnvBootloader {
            store: uboot::UbootStore::from_config_file(fw_env_config)?,
        }),
        BootConfig::UbootFile { env_file } => Box::new(EnvBootloader {
            store: uboot_file::UbootFileStore::new(env_file),
        }),
        BootConfig::SystemdBoot {
            esp,
            efivars,
            kernel_options,
            uki,
        } => {
            let mut layout = sdboot::entry::Layout {
                options: kernel_options.clone(),
                slot_parameter: settings.slot_parameter.clone(),
                ..Default::default()
            };
            if let Some(uki) = uki {
                layout.kernel = uki.clone();
                layout.initrd = None;
                layout.efi = true;
            }
            Box::new(sdboot::SdBoot::new(esp, efivars, layout)?)
        }
        BootConfig::Custom { command } => Box::new(custom::Custom::new(command)?),
    }))
}

/// Loads and saves the bootloader's variables. Implementations keep the
/// byte format pure and do the I/O at the edge.
pub trait EnvStore {
    fn backend(&self) -> &'static str;
    fn load(&mut self) -> Result<BTreeMap<String, String>, BootError>;
    /// Persists all variables with one power-safe write (documented per
    /// backend in docs/boot.md).
    fn save(&mut self, vars: &BTreeMap<String, String>) -> Result<(), BootError>;
    fn max_tries(&self) -> u32;
}

/// A [`Bootloader`] over any [`EnvStore`], using the [`abvars`] scheme.
pub struct EnvBootloader<S: EnvStore> {
    pub store: S,
}

impl<S: EnvStore> EnvBootloader<S> {
    fn update(
        &mut self,
        f: impl FnOnce(&mut BTreeMap<String, String>) -> Result<(), abvars::SchemeError>,
    ) -> Result<(), BootError> {
        let mut vars = self.store.load()?;
        let before = vars.clone();
        f(&mut vars).map_err(|e| BootError::Unsupported {
            backend: self.store.backend(),
            message: e.to_string(),
        })?;
        if vars != before {
            self.store.save(&vars)?;
        }
        Ok(())
    }
}

impl<S: EnvStore> Bootloader for EnvBootloader<S> {
    fn name(&self) -> &'static str {
        self.store.backend()
    }

    fn primary(&mut self) -> Result<Option<SlotGroup>, BootError> {
        Ok(abvars::primary(&self.store.load()?))
    }

    fn set_primary(&mut self, g: SlotGroup) -> Result<(), BootError> {
        self.update(|v| {
            abvars::set_primary(v, g);
            Ok(())
        })
    }

    fn state(&mut self, g: SlotGroup) -> Result<Mark, BootError> {
        Ok(abvars::state(&self.store.load()?, g))
    }

    fn set_state(&mut self, g: SlotGroup, m: Mark) -> Result<(), BootError> {
        self.update(|v| {
            abvars::set_state(v, g, m);
            Ok(())
        })
    }

    fn arm(&mut self, g: SlotGroup, tries: u32) -> Result<(), BootError> {
        let max = self.store.max_tries();
        self.update(|v| abvars::arm(v, g, tries, max))
    }

    fn tries_left(&mut self, g: SlotGroup) -> Result<Option<u32>, BootError> {
        Ok(abvars::tries_left(&self.store.load()?, g))
    }

    fn max_tries(&self) -> u32 {
        self.store.max_tries()
    }

    fn set_verity(&mut self, g: SlotGroup, args: Option<&str>) -> Result<bool, BootError> {
        self.update(|v| {
            abvars::set_verity(v, g, args);
            Ok(())
        })?;
        Ok(true)
    }

    fn can_pass_verity(&self) -> bool {
        true
    }

    /// One load of the variables instead of one per question.
    fn snapshot(&mut self) -> Result<Snapshot, BootError> {
        let v = self.store.load()?;
        Ok(Snapshot {
            primary: abvars::primary(&v),
            slots: SlotGroup::ALL
                .iter()
                .map(|&g| (g, (abvars::state(&v, g), abvars::tries_left(&v, g))))
                .collect(),
        })
    }
}

//! systemd-boot backend: Boot Loader Specification entries with boot
//! counting (systemd-boot 252, Debian 12).
//!
//! # Entries
//!
//! One Type #1 entry per slot in `<esp>/loader/entries/`, named
//! `tandem-<g>.conf` (committed) or `tandem-<g>+<left>[-<done>].conf` (on
//! trial; `left` 0 = exhausted or marked bad):
//!
//! ```text
//! title Tandem b
//! sort-key tandem
//! version 7
//! linux /tandem/b/vmlinuz
//! initrd /tandem/b/initrd.img
//! options tandem.slot=b <configured options>
//! ```
//!
//! `version` is a generation number, not the image version: every entry
//! Tandem writes gets (highest generation of any Tandem file)+1, except
//! mark-bad (0) and mark-good (unchanged). The kernel and initrd must be on
//! the ESP: systemd-boot drops an entry whose `linux` file is missing.
//!
//! # What systemd-boot boots (verified against the 252.39 sources)
//!
//! See [`order`] for the port of `config_entry_compare` and
//! `config_default_entry_select`. In short: entries with 0 tries left
//! last; then entries with a sort-key, by sort-key, machine-id, and
//! `version` *descending*; then by file name (descending version compare).
//! With no one-shot, no `LoaderEntryDefault`, and no `default` in
//! `loader.conf` matching an entry, the *first* entry boots — even an
//! exhausted one if nothing else is left. Before booting a counted entry,
//! systemd-boot renames it `+L-D` → `+(L-1)-(D+1)` and flushes, then sets
//! the volatile `LoaderBootCountPath` to `\loader\entries\<new name>`; if
//! the rename fails (e.g. the new name exists) it boots anyway, uncounted.
//! So: the good entry with the highest generation is primary; a trial that
//! is never committed runs out of tries and sorts last, and the other slot
//! boots.
//!
//! `primary`, `state` and `tries_left` evaluate that model over the files
//! as they are (`state` is Bad for no entry or no tries left: systemd-boot
//! has no other "bad"). If a foreign entry or a pinned default would boot
//! instead of Tandem's choice, reads and writes return an error that says
//! which file and setting, and how to remove it.
//!
//! # Write sequence
//!
//! Every change rewrites one slot `g`'s entry and touches no other file:
//!
//! 1. create `.tandem-<g>.tmp` with the whole new entry, fsync it (a dot
//!    name: neither systemd-boot nor bootctl reads it);
//! 2. rename it to the new entry name, fsync the entry (vfat writes a
//!    renamed file's directory entry only with its inode:
//!    [`crate::sys::rename_durable`]) and the directory;
//! 3. remove g's other entry files (name order), fsync the directory.
//!
//! | operation | new entry (step 2) | step 3 removes |
//! |-----------|--------------------|----------------|
//! | `arm(g, n)` | `tandem-g+n.conf` (`+n-0` if that name exists), version max+1 | every other file of g |
//! | `set_primary(g)` (commit, rollback) | `tandem-g.conf`, g's entry at version max+1 | every other file of g |
//! | `set_state(g, Bad)` | `tandem-g+0-<done>.conf`, version 1 | every other file of g |
//! | `invalidate(g)` (before an install writes g) | `tandem-g+0-<done>.conf`, version 0 | every other file of g |
//! | `set_state(g, Good)` on an exhausted entry | `tandem-g.conf`, same version | every other file of g |
//!
//! Nothing is done when the goal already holds (g blessed, primary, one
//! file; g already exhausted; g already good).
//!
//! # Power cuts
//!
//! FAT has no atomic rename. Linux's vfat adds the new directory entry and
//! then removes the old one, in separate sectors written back in any order,
//! so a cut in step 2 can leave the old name, the new name, both (pointing
//! at the same clusters), or — for a new name — neither. Renaming onto an
//! existing name rewrites that entry in place: old or new, never absent.
//!
//! - Cut in step 1, or step 2 leaves only the temp file, or neither name:
//!   g's old files are untouched: the state before. The stale temp file is
//!   invisible and is overwritten by the next change of g.
//! - Step 2 done, or both names: the new entry is there next to g's old
//!   files. Whichever of g's files sorts first in systemd-boot's order
//!   stands for g (`Model::effective`), and that is the outcome of the
//!   operation: arm's and set_primary's entry has the highest version and
//!   tries left, so it sorts first (the state after); mark-bad's entry is
//!   exhausted at version 0, so g's old entry still sorts before it (the
//!   state before, until step 3 removes it); mark-good's blessed entry
//!   sorts before the old exhausted one (the state after).
//! - Cut in step 3: any subset of g's old files is gone; the new entry is
//!   durable (the directory was fsynced in step 2): the state after.
//!
//! The other slot's entry is never written, so whatever was bootable there
//! stays bootable.
//!
//! Two names left by a cut rename share clusters; deleting one would free
//! the other's data. `fsck.fat -a` (dosfstools 4.2, measured) truncates the
//! second of them in directory order to 0 bytes; an empty file is no entry
//! for systemd-boot nor for us, and the next change of the slot removes it.
//! Whichever name keeps the data, the state is the one before or after the
//! rename. So the ESP must be checked before it is mounted read-write:
//! Debian's installer puts `/boot/efi` in fstab with pass 1, and
//! systemd-gpt-auto-generator checks the ESP it mounts.
//!
//! Two files of one slot can also come from systemd-boot's own counting
//! rename being cut in the firmware (`+2` and `+1-1`, same content). Both
//! boot g; the menu order puts `+2` first, and systemd-boot's rename of it
//! to `+1-1` then fails, so it boots g uncounted until fsck or Tandem's
//! next change of g removes one. `LoaderBootCountPath`, when it names one
//! of g's files, is taken as g's entry: it is the file systemd-boot just
//! booted and renamed.
//!
//! # Requirements on the image
//!
//! - No `default` in `loader.conf`, `LoaderEntryDefault` or
//!   `LoaderEntryOneShot` matching an entry. `bootctl install` writes
//!   `default <machine-id>-*`: harmless while nothing matches it, but it
//!   picks exactly the entries Debian's kernel-install writes.
//! - No other entry sorting first: kernel-install writes
//!   `sort-key debian`, which sorts before `tandem`. Neither is guessed
//!   around: Tandem reports the file and setting as an error.
//! - `systemd-bless-boot.service` masked, or Tandem's health check ordered
//!   before `boot-complete.target`: Debian's systemd ships it and its
//!   generator enables it whenever `LoaderBootCountPath` is set, and it
//!   would bless the trial entry before Tandem has checked anything.

pub mod entry;
pub mod order;
pub mod pe;
pub mod plan;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use self::entry::{is_temp_name, key_values, Conf, Layout};
use self::order::Selectors;
use self::plan::{Action, EspFile, Listing, Model, PlanError};
use super::{BootError, Bootloader, Mark};
use crate::slot::SlotGroup;

const BACKEND: &str = "systemd-boot";
/// The vendor GUID of systemd-boot's `Loader*` variables.
pub const LOADER_GUID: &str = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f";
pub const DEFAULT_EFIVARS: &str = "/sys/firmware/efi/efivars";
/// systemd-boot counts up to `INT_MAX`; this keeps names short.
pub const MAX_TRIES: u32 = 99;

/// Decodes an efivarfs string variable: 4 bytes of attributes, then
/// UTF-16LE, usually NUL-terminated.
pub fn decode_efivar_string(bytes: &[u8]) -> Option<String> {
    let body = bytes.get(4..)?;
    let units: Vec<u16> = body
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0)
        .collect();
    Some(String::from_utf16_lossy(&units))
}

/// The last `default` of a `loader.conf`, like systemd-boot reads it.
pub fn loader_conf_default(text: &str) -> Option<String> {
    key_values(text)
        .into_iter()
        .filter(|(k, _)| *k == "default")
        .map(|(_, v)| v.to_string())
        .next_back()
}

/// The file name in a `LoaderBootCountPath` value, if it is in
/// `\loader\entries` (compared case-insensitively, as FAT does).
pub fn boot_count_file(value: &str) -> Option<String> {
    let (dir, file) = value.rsplit_once('\\')?;
    let dir = dir.trim_start_matches('\\');
    (dir.eq_ignore_ascii_case("loader\\entries") && !file.is_empty()).then(|| file.to_string())
}

/// The systemd-boot backend over an ESP directory.
pub struct SdBoot {
    esp: PathBuf,
    efivars: PathBuf,
    layout: Layout,
    labels: BTreeMap<SlotGroup, String>,
}

impl SdBoot {
    /// `esp`: where the ESP is mounted; `efivars`: the efivarfs directory
    /// ([`DEFAULT_EFIVARS`]); `layout`: kernel/initrd paths and options.
    pub fn new(esp: &Path, efivars: &Path, layout: Layout) -> Result<SdBoot, BootError> {
        layout
            .validate()
            .map_err(|message| BootError::Unsupported {
                backend: BACKEND,
                message,
            })?;
        Ok(SdBoot {
            esp: esp.to_path_buf(),
            efivars: efivars.to_path_buf(),
            layout,
            labels: BTreeMap::new(),
        })
    }

    /// Text shown in the entry's title for `g` from its next write on,
    /// e.g. the image version.
    pub fn set_label(&mut self, g: SlotGroup, label: &str) {
        self.labels.insert(g, label.to_string());
    }

    pub fn entries_dir(&self) -> PathBuf {
        self.esp.join("loader").join("entries")
    }

    fn io(&self, path: &Path) -> impl FnOnce(std::io::Error) -> BootError {
        let path = path.to_path_buf();
        move |source| BootError::Io {
            backend: BACKEND,
            path,
            source,
        }
    }

    /// An ESP path from an entry (`/tandem/b/vmlinuz`, `\EFI\x.efi`).
    fn esp_path(&self, p: &str) -> PathBuf {
        self.esp.join(p.replace('\\', "/").trim_start_matches('/'))
    }

    fn efivar(&self, name: &str) -> Result<Option<String>, BootError> {
        let path = self.efivars.join(format!("{name}-{LOADER_GUID}"));
        match fs::read(&path) {
            Ok(b) => Ok(decode_efivar_string(&b).filter(|s| !s.is_empty())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io(&path)(e)),
        }
    }

    /// Reads everything systemd-boot's choice depends on.
    pub fn load(&self) -> Result<Listing, BootError> {
        let dir = self.entries_dir();
        let mut files = Vec::new();
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => Some(rd),
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(e) => return Err(self.io(&dir)(e)),
        };
        for ent in rd.into_iter().flatten() {
            let ent = ent.map_err(self.io(&dir))?;
            let Ok(name) = ent.file_name().into_string() else {
                continue;
            };
            if !name.to_ascii_lowercase().ends_with(".conf") && is_temp_name(&name).is_none() {
                continue;
            }
            let path = ent.path();
            if !fs::metadata(&path).map_err(self.io(&path))?.is_file() {
                continue;
            }
            let bytes = fs::read(&path).map_err(self.io(&path))?;
            let content = String::from_utf8_lossy(&bytes).into_owned();
            let loader_exists = Conf::parse(&content)
                .loader
                .is_some_and(|p| self.esp_path(&p).is_file());
            files.push(EspFile {
                name,
                content,
                loader_exists,
            });
        }
        files.sort_by(|a, b| a.name.cmp(&b.name));
        let conf_path = self.esp.join("loader").join("loader.conf");
        let config_default = match fs::read(&conf_path) {
            Ok(b) => loader_conf_default(&String::from_utf8_lossy(&b)),
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(e) => return Err(self.io(&conf_path)(e)),
        };
        let selectors = Selectors {
            oneshot: self.efivar("LoaderEntryOneShot")?,
            efi_default: self.efivar("LoaderEntryDefault")?,
            config_default,
            last_booted: self.efivar("LoaderEntryLastBooted")?,
        };
        let boot_count_file = self
            .efivar("LoaderBootCountPath")?
            .and_then(|v| boot_count_file(&v));
        let kernels: BTreeSet<SlotGroup> = SlotGroup::ALL
            .into_iter()
            .filter(|&g| {
                self.esp_path(&self.layout.kernel(g)).is_file()
                    && self
                        .layout
                        .initrd(g)
                        .is_none_or(|i| self.esp_path(&i).is_file())
            })
            .collect();
        Ok(Listing {
            files,
            selectors,
            boot_count_file,
            kernels,
        })
    }

    /// Carries out a plan with the fsyncs the module docs promise.
    pub fn execute(&self, actions: &[Action]) -> Result<(), BootError> {
        if actions.is_empty() {
            return Ok(());
        }
        let dir = self.entries_dir();
        fs::create_dir_all(&dir).map_err(self.io(&dir))?;
        let mut unsynced = false;
        for a in actions {
            tracing::debug!(backend = BACKEND, action = %a, "ESP write");
            match a {
                Action::Create { name, content } => {
                    let p = dir.join(name);
                    let mut f = File::create(&p).map_err(self.io(&p))?;
                    f.write_all(content.as_bytes()).map_err(self.io(&p))?;
                    f.sync_all().map_err(self.io(&p))?;
                }
                Action::Rename { from, to } => {
                    let p = dir.join(to);
                    crate::sys::rename_durable(&dir.join(from), &p).map_err(self.io(&p))?;
                    unsynced = false;
                }
                Action::Remove { name } => {
                    let p = dir.join(name);
                    match fs::remove_file(&p) {
                        Ok(()) => unsynced = true,
                        Err(e) if e.kind() == ErrorKind::NotFound => {}
                        Err(e) => return Err(self.io(&p)(e)),
                    }
                }
            }
        }
        if unsynced {
            sync_dir(&dir).map_err(self.io(&dir))?;
        }
        Ok(())
    }

    /// A unified kernel image boots with its own command line: before
    /// `g` is armed, that line must name `g` and carry the dm-verity
    /// parameters of what was installed, or the trial would mount the
    /// wrong slot or trust the wrong root hash.
    pub fn check_uki(&self, g: SlotGroup) -> Result<(), BootError> {
        let path = self.esp_path(&self.layout.kernel(g));
        let format = |message: String| BootError::Format {
            backend: BACKEND,
            path: path.clone(),
            message,
        };
        let mut f = File::open(&path).map_err(self.io(&path))?;
        let cmdline = match pe::section(&mut f, ".cmdline") {
            Ok(Some(bytes)) => pe::cmdline_text(&bytes),
            Ok(None) => {
                return Err(format(
                    "the unified kernel image has no .cmdline section".into(),
                ))
            }
            Err(pe::PeError::Io(e)) => return Err(self.io(&path)(e)),
            Err(e) => return Err(format(e.to_string())),
        };
        let words: BTreeSet<&str> = cmdline.split_ascii_whitespace().collect();
        let param = &self.layout.slot_parameter;
        let want = format!("{param}={g}");
        if !words.contains(want.as_str()) {
            let found = words
                .iter()
                .find(|w| w.starts_with(&format!("{param}=")))
                .map_or_else(|| format!("no {param}="), |w| w.to_string());
            return Err(format(format!(
                "the image's command line has {found}, but it was written for slot {g} ({want}); not armed (build one image per slot group)"
            )));
        }
        if let Some(extra) = self.layout.extra.get(&g) {
            if let Some(missing) = extra.split_ascii_whitespace().find(|w| !words.contains(w)) {
                return Err(format(format!(
                    "the image's command line lacks {missing}, which the installed rootfs needs (its dm-verity parameters); not armed"
                )));
            }
        }
        Ok(())
    }

    fn plan_error(&self, e: PlanError) -> BootError {
        let format = |path: PathBuf| BootError::Format {
            backend: BACKEND,
            path,
            message: e.to_string(),
        };
        match &e {
            PlanError::Foreign { file, .. } | PlanError::Pinned { file, .. } => {
                format(self.entries_dir().join(file))
            }
            PlanError::KernelMissing(g) => format(self.esp_path(&self.layout.kernel(*g))),
            _ => BootError::Unsupported {
                backend: BACKEND,
                message: e.to_string(),
            },
        }
    }

    fn change(
        &mut self,
        what: &str,
        g: SlotGroup,
        plan: impl FnOnce(&Listing, &Layout, Option<&str>) -> Result<Vec<Action>, PlanError>,
    ) -> Result<(), BootError> {
        let listing = self.load()?;
        let label = self.labels.get(&g).map(String::as_str);
        let actions = plan(&listing, &self.layout, label).map_err(|e| self.plan_error(e))?;
        tracing::info!(backend = BACKEND, slot = %g, steps = actions.len(), "{what}");
        self.execute(&actions)
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Bootloader for SdBoot {
    fn name(&self) -> &'static str {
        BACKEND
    }

    fn primary(&mut self) -> Result<Option<SlotGroup>, BootError> {
        let l = self.load()?;
        Model::new(&l).primary().map_err(|e| self.plan_error(e))
    }

    fn set_primary(&mut self, g: SlotGroup) -> Result<(), BootError> {
        self.change("set primary", g, |l, layout, label| {
            plan::set_primary(l, layout, g, label)
        })
    }

    fn state(&mut self, g: SlotGroup) -> Result<Mark, BootError> {
        Ok(Model::new(&self.load()?).state(g))
    }

    fn set_state(&mut self, g: SlotGroup, m: Mark) -> Result<(), BootError> {
        self.change("set state", g, |l, _, _| plan::set_state(l, g, m))
    }

    fn invalidate(&mut self, g: SlotGroup) -> Result<(), BootError> {
        self.change("invalidate", g, |l, _, _| plan::invalidate(l, g))
    }

    fn arm(&mut self, g: SlotGroup, tries: u32) -> Result<(), BootError> {
        if self.layout.efi {
            self.check_uki(g)?;
        }
        self.change("arm", g, |l, layout, label| {
            plan::arm(l, layout, g, tries, MAX_TRIES, label)
        })
    }

    fn tries_left(&mut self, g: SlotGroup) -> Result<Option<u32>, BootError> {
        Ok(Model::new(&self.load()?).tries_left(g))
    }

    fn max_tries(&self) -> u32 {
        MAX_TRIES
    }

    /// Kept for the next entry composed for `g` (the install arms right
    /// after): its `options` line carries them from then on.
    fn set_verity(&mut self, g: SlotGroup, args: Option<&str>) -> Result<bool, BootError> {
        match args {
            Some(a) if !a.trim().is_empty() => {
                if a.contains(['\n', '\r', '\0']) {
                    return Err(BootError::Unsupported {
                        backend: BACKEND,
                        message: "kernel parameters must be one line".into(),
                    });
                }
                self.layout.extra.insert(g, a.trim().to_string());
            }
            _ => {
                self.layout.extra.remove(&g);
            }
        }
        Ok(true)
    }

    fn can_pass_verity(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests;

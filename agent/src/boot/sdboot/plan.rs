//! The pure planner: a listing of `loader/entries` in, what systemd-boot
//! will boot and the file operations for each change out.
//!
//! Every plan touches only the files of the slot it is about, creates the
//! new entry completely (temporary name, then rename) before it removes any
//! old one, and is checked against the model before it is returned: a plan
//! whose result systemd-boot would not boot as intended is an error, not a
//! surprise at the next reboot.

use std::collections::BTreeSet;
use std::fmt;

use super::entry::{temp_name, Conf, EntryName, Layout};
use super::order::{self, Candidate, Chosen, Selectors};
use crate::boot::Mark;
use crate::slot::SlotGroup;

/// One regular file in `<esp>/loader/entries`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EspFile {
    pub name: String,
    pub content: String,
    /// The entry's `linux`/`efi` path exists on the ESP.
    pub loader_exists: bool,
}

/// Everything systemd-boot's choice depends on, as read from the ESP and
/// the EFI variables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    pub files: Vec<EspFile>,
    pub selectors: Selectors,
    /// The file name in `LoaderBootCountPath`, when it points into
    /// `\loader\entries`: the entry systemd-boot booted and renamed.
    pub boot_count_file: Option<String>,
    /// Slots whose kernel (and initrd, if configured) are on the ESP.
    pub kernels: BTreeSet<SlotGroup>,
}

/// One step; the executor adds the fsyncs (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write a new file (always a temporary, dot-prefixed name).
    Create {
        name: String,
        content: String,
    },
    Rename {
        from: String,
        to: String,
    },
    Remove {
        name: String,
    },
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Create { name, content } => {
                let v = Conf::parse(content).version.unwrap_or_default();
                write!(f, "create {name} (version {v}), fsync it")
            }
            Action::Rename { from, to } => write!(f, "rename {from} -> {to}, fsync dir"),
            Action::Remove { name } => write!(f, "remove {name}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("cannot arm for 0 tries")]
    ZeroTries,
    #[error("cannot arm for {tries} tries: at most {max}")]
    TooManyTries { tries: u32, max: u32 },
    #[error("slot {0}: kernel or initrd missing on the ESP; install them before making the slot bootable")]
    KernelMissing(SlotGroup),
    #[error("slot {0} has no boot entry; arm it or make it primary first")]
    NoEntry(SlotGroup),
    #[error("systemd-boot would boot loader/entries/{file}, which is not Tandem's: {}", why.explain())]
    Foreign { file: String, why: Chosen },
    #[error("after this change systemd-boot would still boot loader/entries/{file}, not slot {slot}: {}", why.explain())]
    Pinned {
        slot: SlotGroup,
        file: String,
        why: Chosen,
    },
    #[error(
        "marking slot {0} good would make it primary (its entry is the newest); commit it instead"
    )]
    GoodWouldBePrimary(SlotGroup),
    #[error("internal: plan for slot {0} does not reach its goal")]
    Unreached(SlotGroup),
}

/// What systemd-boot makes of a listing.
#[derive(Debug, Clone)]
pub struct Model {
    /// The menu, in systemd-boot's order.
    pub order: Vec<Candidate>,
    /// The entry it boots next and why.
    pub default: Option<(usize, Chosen)>,
    boot_count_file: Option<String>,
}

impl Model {
    pub fn new(l: &Listing) -> Model {
        let mut order: Vec<Candidate> = l
            .files
            .iter()
            .filter_map(|f| Candidate::new(&f.name, &f.content, f.loader_exists))
            .collect();
        order::sort(&mut order);
        let default = order::select_default(&order, &l.selectors);
        Model {
            order,
            default,
            boot_count_file: l.boot_count_file.clone(),
        }
    }

    /// The entry systemd-boot boots next.
    pub fn default_entry(&self) -> Option<&Candidate> {
        self.default.as_ref().map(|(i, _)| &self.order[*i])
    }

    /// The slot systemd-boot boots next; an error if that entry is not ours.
    pub fn primary(&self) -> Result<Option<SlotGroup>, PlanError> {
        let Some((i, why)) = &self.default else {
            return Ok(None);
        };
        let e = &self.order[*i];
        match EntryName::parse(&e.file) {
            Some(n) => Ok(Some(n.slot)),
            None => Err(PlanError::Foreign {
                file: e.file.clone(),
                why: why.clone(),
            }),
        }
    }

    /// The entry that stands for `g`: the one systemd-boot booted (named
    /// by `LoaderBootCountPath`) if it is one of g's, else g's first entry
    /// in menu order — the one systemd-boot would boot for g. This is how
    /// two files left by a cut rename resolve: see the module docs.
    pub fn effective(&self, g: SlotGroup) -> Option<&Candidate> {
        let mine = || {
            self.order
                .iter()
                .filter(move |c| EntryName::parse(&c.file).is_some_and(|n| n.slot == g))
        };
        let booted = self.boot_count_file.as_deref();
        mine()
            .find(|c| booted.is_some_and(|b| c.file.eq_ignore_ascii_case(b)))
            .or_else(|| mine().next())
    }

    /// Bad when g has no entry systemd-boot would show, or no tries left.
    pub fn state(&self, g: SlotGroup) -> Mark {
        match self.effective(g) {
            Some(c) if !c.exhausted() => Mark::Good,
            _ => Mark::Bad,
        }
    }

    pub fn tries_left(&self, g: SlotGroup) -> Option<u32> {
        self.effective(g).and_then(|c| c.tries).map(|t| t.left)
    }
}

/// Applies actions to a listing the way a filesystem would.
pub fn apply(l: &Listing, actions: &[Action]) -> Listing {
    let mut out = l.clone();
    for a in actions {
        apply_one(&mut out, a);
    }
    out
}

fn same(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

pub fn apply_one(l: &mut Listing, a: &Action) {
    match a {
        Action::Create { name, content } => {
            l.files.retain(|f| !same(&f.name, name));
            l.files.push(EspFile {
                name: name.clone(),
                content: content.clone(),
                // Plans only create entries whose loader was checked.
                loader_exists: true,
            });
        }
        Action::Rename { from, to } => {
            if !l.files.iter().any(|f| same(&f.name, from)) {
                return;
            }
            if !same(from, to) {
                l.files.retain(|f| !same(&f.name, to));
            }
            if let Some(f) = l.files.iter_mut().find(|f| same(&f.name, from)) {
                f.name = to.clone();
            }
        }
        Action::Remove { name } => l.files.retain(|f| !same(&f.name, name)),
    }
}

fn max_generation(l: &Listing) -> u64 {
    l.files
        .iter()
        .filter(|f| {
            EntryName::parse(&f.name).is_some() || super::entry::is_temp_name(&f.name).is_some()
        })
        .filter_map(|f| Conf::parse(&f.content).generation())
        .max()
        .unwrap_or(0)
}

fn exists(l: &Listing, name: &str) -> bool {
    l.files.iter().any(|f| same(&f.name, name))
}

/// Writes `content` as g's only entry file `target`: create the
/// temporary, rename it, then remove g's other files.
fn replace(l: &Listing, g: SlotGroup, target: &str, content: String) -> Vec<Action> {
    let tmp = temp_name(g);
    let mut v = vec![
        Action::Create {
            name: tmp.clone(),
            content,
        },
        Action::Rename {
            from: tmp,
            to: target.to_string(),
        },
    ];
    v.extend(removals(l, g, target));
    v
}

/// Removes every entry file of g except `keep`, in name order.
fn removals(l: &Listing, g: SlotGroup, keep: &str) -> Vec<Action> {
    let mut names: Vec<&str> = l
        .files
        .iter()
        .filter(|f| EntryName::parse(&f.name).is_some_and(|n| n.slot == g))
        .filter(|f| !same(&f.name, keep))
        .map(|f| f.name.as_str())
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|n| Action::Remove { name: n.into() })
        .collect()
}

fn slot_file_count(l: &Listing, g: SlotGroup) -> usize {
    l.files
        .iter()
        .filter(|f| EntryName::parse(&f.name).is_some_and(|n| n.slot == g))
        .count()
}

/// The first of `names` not yet present (a rename onto an existing name
/// is avoided where an equivalent name exists), else the first.
fn free_name(l: &Listing, names: &[EntryName]) -> String {
    names
        .iter()
        .map(|n| n.to_string())
        .find(|n| !exists(l, n))
        .unwrap_or_else(|| names[0].to_string())
}

fn expect_primary(after: &Listing, g: SlotGroup) -> Result<(), PlanError> {
    let m = Model::new(after);
    match (m.primary(), &m.default) {
        (Ok(Some(p)), _) if p == g => Ok(()),
        (_, Some((i, why))) => Err(PlanError::Pinned {
            slot: g,
            file: m.order[*i].file.clone(),
            why: why.clone(),
        }),
        _ => Err(PlanError::Unreached(g)),
    }
}

/// `arm(g, n)`: a new entry `tandem-g+n.conf` at generation max+1, so it
/// sorts first; then g's other files go.
pub fn arm(
    l: &Listing,
    layout: &Layout,
    g: SlotGroup,
    tries: u32,
    max: u32,
    label: Option<&str>,
) -> Result<Vec<Action>, PlanError> {
    if tries == 0 {
        return Err(PlanError::ZeroTries);
    }
    if tries > max {
        return Err(PlanError::TooManyTries { tries, max });
    }
    if !l.kernels.contains(&g) {
        return Err(PlanError::KernelMissing(g));
    }
    let content = layout.compose(g, max_generation(l) + 1, label);
    let target = free_name(
        l,
        &[
            EntryName::counted(g, tries, None),
            EntryName::counted(g, tries, Some(0)),
        ],
    );
    let plan = replace(l, g, &target, content);
    expect_primary(&apply(l, &plan), g)?;
    Ok(plan)
}

/// `set_primary(g)` (commit, rollback): g's entry, blessed, at generation
/// max+1. A new entry is composed if g has none. Nothing to do if g is
/// already primary, blessed, and has one file.
pub fn set_primary(
    l: &Listing,
    layout: &Layout,
    g: SlotGroup,
    label: Option<&str>,
) -> Result<Vec<Action>, PlanError> {
    let m = Model::new(l);
    let eff = m.effective(g);
    let done = eff.is_some_and(|c| c.tries.is_none())
        && matches!(m.primary(), Ok(Some(p)) if p == g)
        && slot_file_count(l, g) == 1;
    if done {
        return Ok(vec![]);
    }
    let gen = max_generation(l) + 1;
    let content = match eff {
        Some(c) => super::entry::set_version(&content_of(l, &c.file), gen),
        None if l.kernels.contains(&g) => layout.compose(g, gen, label),
        None => return Err(PlanError::KernelMissing(g)),
    };
    let plan = replace(l, g, &EntryName::blessed(g).to_string(), content);
    expect_primary(&apply(l, &plan), g)?;
    Ok(plan)
}

fn content_of(l: &Listing, file: &str) -> String {
    l.files
        .iter()
        .find(|f| f.name == file)
        .map(|f| f.content.clone())
        .unwrap_or_default()
}

/// `set_state(g, m)`.
///
/// Bad: g's entry becomes `tandem-g+0-<done>.conf` at version 0, so it
/// sorts after every other entry, exhausted ones included. Nothing to do
/// if g has no entry or only an exhausted one.
///
/// Good: nothing to do for an entry with tries left or none counted. An
/// exhausted entry becomes `tandem-g.conf` with its version unchanged, so
/// it takes its old place in the order; if that would take primary away
/// from a slot with tries left, it is an error (use [`set_primary`]).
pub fn set_state(l: &Listing, g: SlotGroup, mark: Mark) -> Result<Vec<Action>, PlanError> {
    bad_or_good(l, g, mark, BAD_VERSION)
}

/// The version a bad (but whole) slot's exhausted entry gets: above
/// [`INVALID_VERSION`], so that when nothing is bootable and
/// systemd-boot boots the first exhausted entry as its last resort, a
/// whole slot comes before one whose content is being written.
pub const BAD_VERSION: u64 = 1;
/// The version of the exhausted entry of a slot about to be written
/// ([`invalidate`]): last of all.
pub const INVALID_VERSION: u64 = 0;

/// `invalidate(g)` before an install writes g: like `set_state(g, Bad)`,
/// at version 0 even if g's entry was exhausted already.
pub fn invalidate(l: &Listing, g: SlotGroup) -> Result<Vec<Action>, PlanError> {
    let m = Model::new(l);
    match m.effective(g) {
        Some(c) if c.exhausted() && c.conf.generation() != Some(INVALID_VERSION) => {
            let content = super::entry::set_version(&content_of(l, &c.file), INVALID_VERSION);
            Ok(replace(l, g, &c.file.clone(), content))
        }
        _ => bad_or_good(l, g, Mark::Bad, INVALID_VERSION),
    }
}

fn bad_or_good(
    l: &Listing,
    g: SlotGroup,
    mark: Mark,
    bad_version: u64,
) -> Result<Vec<Action>, PlanError> {
    let m = Model::new(l);
    let eff = m.effective(g);
    let plan = match (mark, eff) {
        (Mark::Bad, None) => vec![],
        (Mark::Bad, Some(c)) if c.exhausted() => removals(l, g, &c.file),
        (Mark::Bad, Some(c)) => {
            let done = c.tries.map_or(0, |t| t.done);
            let target = EntryName::counted(g, 0, Some(done)).to_string();
            let content = super::entry::set_version(&content_of(l, &c.file), bad_version);
            replace(l, g, &target, content)
        }
        (Mark::Good, None) => return Err(PlanError::NoEntry(g)),
        (Mark::Good, Some(c)) if !c.exhausted() => vec![],
        (Mark::Good, Some(c)) => {
            let target = EntryName::blessed(g).to_string();
            replace(l, g, &target, content_of(l, &c.file))
        }
    };
    let after = Model::new(&apply(l, &plan));
    if after.state(g) != mark {
        return Err(PlanError::Unreached(g));
    }
    if mark == Mark::Good {
        let before_ok = m.default_entry().is_some_and(|c| !c.exhausted());
        if before_ok && after.primary() != m.primary() {
            return Err(PlanError::GoodWouldBePrimary(g));
        }
    }
    Ok(plan)
}

/// Every state a power cut can leave while `plan` runs on FAT, each with a
/// description: each prefix of the actions; for each rename also both names
/// (same content) and only the old target (none, for a new name); and, as
/// removals are synced together, any subset of the final removals.
pub fn cut_states(l: &Listing, plan: &[Action]) -> Vec<(String, Listing)> {
    let mut out = Vec::new();
    for k in 0..=plan.len() {
        let at = match k {
            0 => "before step 1".to_string(),
            k => format!("after step {k}"),
        };
        out.push((at, apply(l, &plan[..k])));
    }
    for (k, a) in plan.iter().enumerate() {
        let Action::Rename { from, to } = a else {
            continue;
        };
        let base = apply(l, &plan[..k]);
        let mut both = base.clone();
        if let Some(f) = base.files.iter().find(|f| &f.name == from) {
            apply_one(&mut both, &Action::Remove { name: to.clone() });
            both.files.push(EspFile {
                name: to.clone(),
                ..f.clone()
            });
        }
        out.push((format!("in step {}: both {from} and {to}", k + 1), both));
        let gone = apply(&base, &[Action::Remove { name: from.clone() }]);
        let at = if base.files.iter().any(|f| &f.name == to) {
            format!("in step {}: {from} gone, {to} still old", k + 1)
        } else {
            format!("in step {}: neither name", k + 1)
        };
        out.push((at, gone));
    }
    let first_remove = plan
        .iter()
        .position(|a| matches!(a, Action::Remove { .. }))
        .unwrap_or(plan.len());
    let removes = &plan[first_remove..];
    if removes.len() > 1 {
        let base = apply(l, &plan[..first_remove]);
        for mask in 1..(1u32 << removes.len()) - 1 {
            let some: Vec<Action> = removes
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, a)| a.clone())
                .collect();
            let names: Vec<String> = some.iter().map(|a| a.to_string()).collect();
            out.push((
                format!("during the removals, only: {}", names.join(", ")),
                apply(&base, &some),
            ));
        }
    }
    out
}

/// What systemd-boot does at one boot: picks the default entry and, if it
/// is counted, renames it to count the try. Returns the booted file.
pub fn simulate_boot(l: &mut Listing) -> Option<String> {
    let m = Model::new(l);
    let e = m.default_entry()?.clone();
    l.boot_count_file = None;
    if let Some(next) = super::entry::after_boot(&e.file) {
        if !exists(l, &next) {
            apply_one(
                l,
                &Action::Rename {
                    from: e.file.clone(),
                    to: next.clone(),
                },
            );
            l.boot_count_file = Some(next);
        }
    }
    Some(e.file)
}

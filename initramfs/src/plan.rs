//! What the initramfs will do, as data: from the parsed command line, the
//! block devices found and the built-in policy, the list of steps from
//! "set up verity" to "switch_root". Pure; [`crate::init`] executes them.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::cmdline::{Cmdline, Slot};
use crate::policy::Policy;
use crate::uevent::BlockDev;
use crate::verity;

/// Where the slot is mounted before `switch_root`.
pub const SYSROOT: &str = "/sysroot";
/// GPT name of the data partition.
pub const DATA_PARTNAME: &str = "tandem-data";
/// Flag file at the top of the data partition that asks for a wipe.
pub const FACTORY_RESET_FLAG: &str = ".tandem-factory-reset";
/// What runs after `switch_root`.
pub const INIT: &str = "/sbin/init";
/// Stable names for the agent where udev does not run:
/// `/dev/tandem/root-a`, `/dev/tandem/root-b`, `/dev/tandem/data`.
pub const LINK_DIR: &str = "/dev/tandem";

/// GPT name of the root partition of `slot`.
pub fn root_partname(slot: Slot) -> String {
    format!("tandem-root-{slot}")
}

/// How the root partition is identified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootBy<'a> {
    /// `root=PARTUUID=`: the partition whose GPT entry carries `uuid`;
    /// `hits` are the entries found by reading every disk's table.
    Partuuid { uuid: &'a str, hits: &'a [GptHit] },
    /// No PARTUUID on the command line: the one partition named
    /// `tandem-root-<slot>`.
    Name,
}

/// A GPT entry carrying the wanted unique GUID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptHit {
    /// The disk's `devname`.
    pub disk: String,
    /// Partition number (1-based).
    pub number: u32,
    /// First sector, in 512-byte units.
    pub start: u64,
}

/// The partitions the plan needs, all on one disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partitions {
    pub root: BlockDev,
    /// The other slot's partition, only for its `/dev/tandem` link.
    pub other: Option<BlockDev>,
    pub data: BlockDev,
    /// The disk they are on.
    pub disk: String,
    /// Partitions with our names on other disks, not used (for the log).
    pub ignored: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocateError {
    #[error("partition {name} not found{on} (block devices: {seen})")]
    Missing {
        name: String,
        /// " on vda, the root partition's disk" or "".
        on: String,
        seen: String,
    },
    #[error("{count} partitions are named {name} ({devices}): refusing to guess which one to use; detach the extra disk")]
    Ambiguous {
        name: String,
        count: usize,
        devices: String,
    },
    #[error("no partition with PARTUUID {uuid} (root=PARTUUID= from the bootloader) on any disk (block devices: {seen})")]
    NoPartuuid { uuid: String, seen: String },
    #[error("{count} disks have a partition with PARTUUID {uuid} ({devices}): refusing to guess which one the bootloader used; detach the extra disk")]
    PartuuidAmbiguous {
        uuid: String,
        count: usize,
        devices: String,
    },
    #[error("PARTUUID {uuid} is /dev/{device}, {why}")]
    PartuuidMismatch {
        uuid: String,
        device: String,
        why: String,
    },
}

impl LocateError {
    /// Whether waiting longer may help (a disk still appearing); the
    /// others are final.
    pub fn may_resolve(&self) -> bool {
        matches!(
            self,
            LocateError::Missing { .. } | LocateError::NoPartuuid { .. }
        )
    }
}

fn seen(devs: &[BlockDev]) -> String {
    if devs.is_empty() {
        return "none".into();
    }
    devs.iter()
        .map(|d| match &d.partname {
            Some(p) => format!("{} ({p})", d.devname),
            None => d.devname.clone(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn named<'a>(devs: &'a [BlockDev], name: &'a str) -> impl Iterator<Item = &'a BlockDev> + 'a {
    devs.iter()
        .filter(move |d| d.partname.as_deref() == Some(name))
}

/// The one partition of `disk` (any disk: `None`) named `name`.
fn unique(
    devs: &[BlockDev],
    name: &str,
    disk: Option<&str>,
) -> Result<Option<BlockDev>, LocateError> {
    let hits: Vec<&BlockDev> = named(devs, name)
        .filter(|d| disk.is_none() || d.disk.as_deref() == disk)
        .collect();
    match hits.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some((*one).clone())),
        many => Err(LocateError::Ambiguous {
            name: name.to_string(),
            count: many.len(),
            devices: many.iter().map(|d| d.path()).collect::<Vec<_>>().join(", "),
        }),
    }
}

/// Finds the booted slot's partition (by PARTUUID, or by GPT name), then
/// the data partition and the other slot's **on the same disk**. Our
/// names on any other disk (a USB stick) are ignored; two candidates for
/// the root partition are an error, never a guess.
pub fn locate(devs: &[BlockDev], slot: Slot, by: RootBy<'_>) -> Result<Partitions, LocateError> {
    let root_name = root_partname(slot);
    let root = match by {
        RootBy::Name => unique(devs, &root_name, None)?.ok_or_else(|| LocateError::Missing {
            name: root_name.clone(),
            on: String::new(),
            seen: seen(devs),
        })?,
        RootBy::Partuuid { uuid, hits } => root_by_partuuid(devs, &root_name, uuid, hits)?,
    };
    let disk = root.disk.clone().unwrap_or_else(|| root.devname.clone());
    let on_disk = Some(disk.as_str());
    let data = unique(devs, DATA_PARTNAME, on_disk)?.ok_or_else(|| LocateError::Missing {
        name: DATA_PARTNAME.into(),
        on: format!(" on {disk}, the root partition's disk"),
        seen: seen(devs),
    })?;
    let other = unique(devs, &root_partname(slot.other()), on_disk)?;
    let ours = [
        root_name.as_str(),
        DATA_PARTNAME,
        &root_partname(slot.other()),
    ];
    let ignored = devs
        .iter()
        .filter(|d| d.partname.as_deref().is_some_and(|p| ours.contains(&p)))
        .filter(|d| d.disk.as_deref() != on_disk)
        .map(|d| format!("{} ({})", d.path(), d.partname.as_deref().unwrap_or("")))
        .collect();
    Ok(Partitions {
        root,
        other,
        data,
        disk,
        ignored,
    })
}

fn root_by_partuuid(
    devs: &[BlockDev],
    root_name: &str,
    uuid: &str,
    hits: &[GptHit],
) -> Result<BlockDev, LocateError> {
    let hit = match hits {
        [] => {
            return Err(LocateError::NoPartuuid {
                uuid: uuid.into(),
                seen: seen(devs),
            })
        }
        [one] => one,
        many => {
            return Err(LocateError::PartuuidAmbiguous {
                uuid: uuid.into(),
                count: many.len(),
                devices: many
                    .iter()
                    .map(|h| format!("/dev/{} partition {}", h.disk, h.number))
                    .collect::<Vec<_>>()
                    .join(", "),
            })
        }
    };
    let Some(dev) = devs
        .iter()
        .find(|d| d.disk.as_deref() == Some(&hit.disk) && d.partn == Some(hit.number))
    else {
        // The table is read, the kernel has not added the partition yet.
        return Err(LocateError::NoPartuuid {
            uuid: uuid.into(),
            seen: seen(devs),
        });
    };
    let mismatch = |why: String| LocateError::PartuuidMismatch {
        uuid: uuid.into(),
        device: dev.devname.clone(),
        why,
    };
    if dev.start.is_some_and(|s| s != hit.start) {
        return Err(mismatch(format!(
            "but the kernel has it at sector {} and the GPT entry at {}: the table changed \
             since boot",
            dev.start.unwrap_or(0),
            hit.start
        )));
    }
    if dev.partname.as_deref() != Some(root_name) {
        return Err(mismatch(format!(
            "named {:?}, not {root_name}: the bootloader's partition numbers do not match \
             this disk (tandem_part_a/tandem_part_b)",
            dev.partname.as_deref().unwrap_or("")
        )));
    }
    Ok(dev.clone())
}

/// A command line and a policy that cannot go together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("no tandem.verity.roothash on the kernel command line, and this initramfs requires dm-verity ({path}: require_verity = yes): refusing to mount slot {0} unverified (the bootloader's TANDEM_{1}_VERITY is missing)", path = crate::policy::PATH)]
    VerityRequired(Slot, String),
}

/// One thing to do. Paths are absolute on the initramfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Map `partition` through dm-verity as `/dev/mapper/<name>`.
    Verity {
        name: String,
        partition: String,
        table: verity::Table,
    },
    /// Mount `device` read-only on `target`; the filesystem type comes
    /// from its superblock (squashfs or ext4).
    MountRoot { device: String, target: PathBuf },
    /// Fail unless `path` exists (what `switch_root` will execute).
    RequireInit { path: PathBuf },
    /// A tmpfs on `target` (the new root's `/run`), which `switch_root`
    /// carries over: the degraded marker lives there.
    MountRun { target: PathBuf },
    /// Bring up the data partition `device` on `target` (crate::data):
    /// mount it, format it if blank, check it if it does not mount; or a
    /// tmpfs on `target` and the marker `marker` (degraded).
    MountData {
        device: String,
        target: PathBuf,
        marker: PathBuf,
    },
    /// If `dir/flag` exists, delete everything in `dir` but `lost+found`.
    FactoryReset { dir: PathBuf, flag: String },
    /// `mkdir -p` each.
    MakeDirs(Vec<PathBuf>),
    /// Copy into `data` what it lacks of the image's `/var` (`image`),
    /// once per image (crate::varseed, the stamp `stamp`); never fatal.
    SeedVar {
        image: PathBuf,
        data: PathBuf,
        stamp: PathBuf,
    },
    /// `mount --bind source target`.
    Bind { source: PathBuf, target: PathBuf },
    /// The `/etc` three-way merge (crate::etcmerge) of `upper` for the
    /// image's `lower`, its base and report in `state`; never fatal.
    MergeEtc {
        lower: PathBuf,
        upper: PathBuf,
        state: PathBuf,
    },
    /// `mount -t overlay` on `target` (nosuid, nodev) with `lower` (the
    /// target itself, read-only), `upper` and `work`.
    Overlay {
        target: PathBuf,
        lower: PathBuf,
        upper: PathBuf,
        work: PathBuf,
    },
    /// Symlinks `link -> target` (in devtmpfs; they survive the move).
    Links(Vec<(PathBuf, String)>),
    /// `mount --move source target`.
    Move { source: PathBuf, target: PathBuf },
    /// Delete the initramfs, make `new_root` the root, exec `init`.
    SwitchRoot { new_root: PathBuf, init: PathBuf },
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Verity {
                name,
                partition,
                table,
            } => write!(
                f,
                "dm-verity /dev/mapper/{name} over {partition}: {}",
                table.dmsetup_line()
            ),
            Step::MountRoot { device, target } => {
                write!(f, "mount {device} read-only on {}", target.display())
            }
            Step::RequireInit { path } => write!(f, "require {}", path.display()),
            Step::MountRun { target } => write!(f, "tmpfs on {}", target.display()),
            Step::MountData {
                device,
                target,
                marker,
            } => write!(
                f,
                "data {device} on {} (nosuid,nodev; format if blank, e2fsck if it does not \
             mount; else tmpfs and {})",
                target.display(),
                marker.display()
            ),
            Step::FactoryReset { dir, flag } => {
                write!(f, "factory reset if {} exists", dir.join(flag).display())
            }
            Step::MakeDirs(dirs) => {
                let d: Vec<_> = dirs.iter().map(|d| d.display().to_string()).collect();
                write!(f, "mkdir -p {}", d.join(" "))
            }
            Step::SeedVar { image, data, stamp } => write!(
                f,
                "seed {} from {} (once per image, stamp {})",
                data.display(),
                image.display(),
                stamp.display()
            ),
            Step::Bind { source, target } => {
                write!(f, "bind {} on {}", source.display(), target.display())
            }
            Step::MergeEtc {
                lower,
                upper,
                state,
            } => write!(
                f,
                "merge {} for {} (base and report in {})",
                upper.display(),
                lower.display(),
                state.display()
            ),
            Step::Overlay {
                target,
                lower,
                upper,
                work,
            } => write!(
                f,
                "overlay on {} (lower {}, upper {}, work {})",
                target.display(),
                lower.display(),
                upper.display(),
                work.display()
            ),
            Step::Links(links) => {
                let l: Vec<_> = links
                    .iter()
                    .map(|(l, t)| format!("{} -> {t}", l.display()))
                    .collect();
                write!(f, "link {}", l.join(", "))
            }
            Step::Move { source, target } => {
                write!(f, "move {} to {}", source.display(), target.display())
            }
            Step::SwitchRoot { new_root, init } => write!(
                f,
                "switch_root to {}, exec {}",
                new_root.display(),
                init.display()
            ),
        }
    }
}

/// The dm device name for the booted slot.
pub fn verity_name(slot: Slot) -> String {
    format!("tandem-root-{slot}")
}

fn link(name: &str, dev: &BlockDev) -> (PathBuf, String) {
    (
        Path::new(LINK_DIR).join(name),
        format!("../{}", dev.devname),
    )
}

/// The steps for `cmd` on `parts` under `policy`, in order.
pub fn plan(cmd: &Cmdline, parts: &Partitions, policy: &Policy) -> Result<Vec<Step>, PlanError> {
    let sysroot = PathBuf::from(SYSROOT);
    let data = sysroot.join("data");
    let mut steps = Vec::new();
    let root_device = match &cmd.verity {
        Some(v) => {
            let name = verity_name(cmd.slot);
            steps.push(Step::Verity {
                name: name.clone(),
                partition: parts.root.path(),
                table: verity::Table::new(&parts.root.dev_t(), v),
            });
            format!("/dev/mapper/{name}")
        }
        None if policy.require_verity => {
            return Err(PlanError::VerityRequired(
                cmd.slot,
                cmd.slot.as_str().to_uppercase(),
            ))
        }
        None => parts.root.path(),
    };
    steps.push(Step::MountRoot {
        device: root_device,
        target: sysroot.clone(),
    });
    steps.push(Step::RequireInit {
        path: sysroot.join(INIT.trim_start_matches('/')),
    });
    steps.push(Step::MountRun {
        target: sysroot.join("run"),
    });
    steps.push(Step::MountData {
        device: parts.data.path(),
        target: data.clone(),
        marker: sysroot.join(crate::data::DEGRADED_MARKER),
    });
    steps.push(Step::FactoryReset {
        dir: data.clone(),
        flag: FACTORY_RESET_FLAG.into(),
    });
    steps.push(Step::MakeDirs(vec![
        data.join("var"),
        data.join("etc/upper"),
        data.join("etc/work"),
    ]));
    steps.push(Step::SeedVar {
        image: sysroot.join("var"),
        data: data.join("var"),
        stamp: data.join(crate::varseed::STAMP),
    });
    steps.push(Step::Bind {
        source: data.join("var"),
        target: sysroot.join("var"),
    });
    steps.push(Step::MergeEtc {
        lower: sysroot.join("etc"),
        upper: data.join("etc/upper"),
        state: data.join("etc"),
    });
    steps.push(Step::Overlay {
        target: sysroot.join("etc"),
        lower: sysroot.join("etc"),
        upper: data.join("etc/upper"),
        work: data.join("etc/work"),
    });
    let mut links = vec![link(&format!("root-{}", cmd.slot), &parts.root)];
    if let Some(o) = &parts.other {
        links.push(link(&format!("root-{}", cmd.slot.other()), o));
    }
    links.push(link("data", &parts.data));
    links.sort();
    steps.push(Step::Links(links));
    for d in ["dev", "proc", "sys"] {
        steps.push(Step::Move {
            source: Path::new("/").join(d),
            target: sysroot.join(d),
        });
    }
    steps.push(Step::SwitchRoot {
        new_root: sysroot,
        init: INIT.into(),
    });
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmdline::{Verity, DEFAULT_WAIT};

    const OPEN: Policy = Policy {
        require_verity: false,
    };

    fn dev(devname: &str, partname: Option<&str>, minor: u32) -> BlockDev {
        let disk: String = devname
            .trim_end_matches(|c: char| c.is_ascii_digit())
            .into();
        let part = disk != devname;
        BlockDev {
            devname: devname.into(),
            partname: partname.map(str::to_string),
            major: 254,
            minor,
            is_disk: !part,
            partn: part.then(|| devname[disk.len()..].parse().unwrap()),
            disk: part.then_some(disk),
            start: part.then_some(2048 * u64::from(minor)),
        }
    }

    fn disk() -> Vec<BlockDev> {
        vec![
            dev("vda", None, 0),
            dev("vda1", Some("esp"), 1),
            dev("vda2", Some("tandem-root-a"), 2),
            dev("vda3", Some("tandem-root-b"), 3),
            dev("vda4", Some("tandem-data"), 4),
        ]
    }

    /// A USB stick `sda` with the given partitions (minors 16 + n).
    fn stick(parts: &[(u32, &str)]) -> Vec<BlockDev> {
        let mut v = vec![dev("sda", None, 16)];
        for (n, name) in parts {
            v.push(dev(&format!("sda{n}"), Some(name), 16 + n));
        }
        v
    }

    fn cmd(slot: Slot, verity: Option<Verity>) -> Cmdline {
        Cmdline {
            slot,
            verity,
            partuuid: None,
            wait: DEFAULT_WAIT,
            debug: false,
        }
    }

    const UUID: &str = "0a1b2c3d-1111-4222-8333-444455556666";

    fn hit(disk: &str, number: u32, start: u64) -> GptHit {
        GptHit {
            disk: disk.into(),
            number,
            start,
        }
    }

    #[test]
    fn locate_by_name_either_slot() {
        let p = locate(&disk(), Slot::B, RootBy::Name).unwrap();
        assert_eq!(p.root.devname, "vda3");
        assert_eq!(p.other.unwrap().devname, "vda2");
        assert_eq!(p.data.devname, "vda4");
        assert_eq!(p.disk, "vda");
        assert!(p.ignored.is_empty());
    }

    #[test]
    fn locate_errors() {
        let no_b: Vec<_> = disk().into_iter().filter(|d| d.minor != 3).collect();
        assert!(
            locate(&no_b, Slot::A, RootBy::Name).is_ok(),
            "the other slot is optional"
        );
        assert_eq!(
            locate(&no_b, Slot::B, RootBy::Name),
            Err(LocateError::Missing {
                name: "tandem-root-b".into(),
                on: String::new(),
                seen: "vda, vda1 (esp), vda2 (tandem-root-a), vda4 (tandem-data)".into(),
            })
        );
        let no_data: Vec<_> = disk().into_iter().filter(|d| d.minor != 4).collect();
        assert!(matches!(
            locate(&no_data, Slot::A, RootBy::Name),
            Err(LocateError::Missing { name, .. }) if name == "tandem-data"
        ));
        assert_eq!(
            locate(&[], Slot::A, RootBy::Name),
            Err(LocateError::Missing {
                name: "tandem-root-a".into(),
                on: String::new(),
                seen: "none".into()
            })
        );
        let mut two = disk();
        two.extend(stick(&[(2, "tandem-root-a")]));
        let e = locate(&two, Slot::A, RootBy::Name).unwrap_err();
        assert_eq!(
            e,
            LocateError::Ambiguous {
                name: "tandem-root-a".into(),
                count: 2,
                devices: "/dev/vda2, /dev/sda2".into()
            }
        );
        assert!(!e.may_resolve(), "waiting cannot fix two disks");
    }

    #[test]
    fn by_name_data_and_other_slot_come_from_the_root_disk_only() {
        // A stick offering only a data partition (or the other slot) is
        // ignored, never mixed in.
        let mut v = disk();
        v.extend(stick(&[(1, "tandem-data"), (2, "tandem-root-b")]));
        let p = locate(&v, Slot::A, RootBy::Name).unwrap();
        assert_eq!(p.data.devname, "vda4");
        assert_eq!(p.other.unwrap().devname, "vda3");
        assert_eq!(
            p.ignored,
            ["/dev/sda1 (tandem-data)", "/dev/sda2 (tandem-root-b)"]
        );
        // Root on the internal disk, data only on the stick: refused.
        let mut v: Vec<_> = disk().into_iter().filter(|d| d.minor != 4).collect();
        v.extend(stick(&[(1, "tandem-data")]));
        let e = locate(&v, Slot::A, RootBy::Name).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("partition tandem-data not found on vda, the root partition's disk"),
            "{e}"
        );
    }

    #[test]
    fn by_partuuid_the_bootloaders_disk_wins_over_a_full_stick() {
        let mut v = disk();
        v.extend(stick(&[
            (2, "tandem-root-a"),
            (3, "tandem-root-b"),
            (4, "tandem-data"),
        ]));
        // By name: ambiguous. By the PARTUUID GRUB passed: the internal disk.
        assert!(matches!(
            locate(&v, Slot::A, RootBy::Name),
            Err(LocateError::Ambiguous { .. })
        ));
        let hits = [hit("vda", 2, 4096)];
        let p = locate(
            &v,
            Slot::A,
            RootBy::Partuuid {
                uuid: UUID,
                hits: &hits,
            },
        )
        .unwrap();
        assert_eq!(
            (p.root.devname.as_str(), p.data.devname.as_str()),
            ("vda2", "vda4")
        );
        assert_eq!(p.ignored.len(), 3);
        // And the stick's, when the bootloader came from the stick.
        let hits = [hit("sda", 2, 2048 * 18)];
        let p = locate(
            &v,
            Slot::A,
            RootBy::Partuuid {
                uuid: UUID,
                hits: &hits,
            },
        )
        .unwrap();
        assert_eq!(
            (p.root.devname.as_str(), p.data.devname.as_str()),
            ("sda2", "sda4")
        );
        assert_eq!(p.other.unwrap().devname, "sda3");
    }

    #[test]
    fn by_partuuid_errors() {
        let by = |hits: &[GptHit]| {
            locate(&disk(), Slot::A, RootBy::Partuuid { uuid: UUID, hits }).map(drop)
        };
        let e = by(&[]).unwrap_err();
        assert!(
            matches!(e, LocateError::NoPartuuid { .. }) && e.may_resolve(),
            "{e}"
        );
        // the kernel has not added the partition yet
        assert!(matches!(
            by(&[hit("vdb", 2, 4096)]),
            Err(LocateError::NoPartuuid { .. })
        ));
        // a cloned disk carries the same GUIDs
        let e = by(&[hit("vda", 2, 4096), hit("sda", 2, 4096)]).unwrap_err();
        assert!(
            matches!(e, LocateError::PartuuidAmbiguous { count: 2, .. }) && !e.may_resolve(),
            "{e}"
        );
        // the entry is not where the kernel has the partition
        let e = by(&[hit("vda", 2, 999)]).unwrap_err();
        assert!(e.to_string().contains("the table changed"), "{e}");
        // GRUB's tandem_part_a points at the wrong partition
        let e = by(&[hit("vda", 3, 6144)]).unwrap_err();
        assert!(
            e.to_string()
                .contains("named \"tandem-root-b\", not tandem-root-a"),
            "{e}"
        );
    }

    #[test]
    fn without_verity_the_partition_is_mounted_if_the_policy_allows() {
        let parts = locate(&disk(), Slot::A, RootBy::Name).unwrap();
        let steps = plan(&cmd(Slot::A, None), &parts, &OPEN).unwrap();
        assert_eq!(
            steps[0],
            Step::MountRoot {
                device: "/dev/vda2".into(),
                target: "/sysroot".into()
            }
        );
        assert!(!steps.iter().any(|s| matches!(s, Step::Verity { .. })));
        let e = plan(&cmd(Slot::A, None), &parts, &Policy::DEFAULT).unwrap_err();
        assert_eq!(e, PlanError::VerityRequired(Slot::A, "A".into()));
        assert!(e.to_string().contains("TANDEM_A_VERITY"), "{e}");
    }

    #[test]
    fn with_verity_the_mapped_device_is_mounted() {
        let v = Verity::new(&"ab".repeat(32), 8 << 20, None).unwrap();
        let parts = locate(&disk(), Slot::B, RootBy::Name).unwrap();
        let steps = plan(&cmd(Slot::B, Some(v)), &parts, &Policy::DEFAULT).unwrap();
        let Step::Verity {
            name,
            partition,
            table,
        } = &steps[0]
        else {
            panic!("first step is {:?}", steps[0]);
        };
        assert_eq!(name, "tandem-root-b");
        assert_eq!(partition, "/dev/vda3");
        assert_eq!(table.device, "254:3");
        assert_eq!(table.data_blocks, 2048);
        assert_eq!(table.hash_start_block, 2049);
        assert!(table.params().ends_with(" 1 restart_on_corruption"));
        assert_eq!(
            steps[1],
            Step::MountRoot {
                device: "/dev/mapper/tandem-root-b".into(),
                target: "/sysroot".into()
            }
        );
    }

    #[test]
    fn order_of_the_rest() {
        let parts = locate(&disk(), Slot::A, RootBy::Name).unwrap();
        let steps = plan(&cmd(Slot::A, None), &parts, &OPEN).unwrap();
        let lines: Vec<String> = steps.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            lines,
            [
                "mount /dev/vda2 read-only on /sysroot",
                "require /sysroot/sbin/init",
                "tmpfs on /sysroot/run",
                "data /dev/vda4 on /sysroot/data (nosuid,nodev; format if blank, e2fsck if it does not mount; else tmpfs and /sysroot/run/tandem/data-degraded)",
                "factory reset if /sysroot/data/.tandem-factory-reset exists",
                "mkdir -p /sysroot/data/var /sysroot/data/etc/upper /sysroot/data/etc/work",
                "seed /sysroot/data/var from /sysroot/var (once per image, stamp /sysroot/data/.tandem-var-seeded)",
                "bind /sysroot/data/var on /sysroot/var",
                "merge /sysroot/data/etc/upper for /sysroot/etc (base and report in /sysroot/data/etc)",
                "overlay on /sysroot/etc (lower /sysroot/etc, upper /sysroot/data/etc/upper, work /sysroot/data/etc/work)",
                "link /dev/tandem/data -> ../vda4, /dev/tandem/root-a -> ../vda2, /dev/tandem/root-b -> ../vda3",
                "move /dev to /sysroot/dev",
                "move /proc to /sysroot/proc",
                "move /sys to /sysroot/sys",
                "switch_root to /sysroot, exec /sbin/init",
            ]
        );
    }
}

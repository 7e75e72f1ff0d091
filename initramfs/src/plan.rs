//! What the initramfs will do, as data: from the parsed command line and
//! the block devices found, the list of steps from "set up verity" to
//! "switch_root". Pure; [`crate::init`] executes the steps.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::cmdline::{Cmdline, Slot};
use crate::uevent::BlockDev;
use crate::verity;

/// Where the slot is mounted before `switch_root`.
pub const SYSROOT: &str = "/sysroot";
/// GPT name of the data partition.
pub const DATA_PARTNAME: &str = "tandem-data";
/// Flag file at the top of the data partition that asks for a wipe.
pub const FACTORY_RESET_FLAG: &str = ".tandem-factory-reset";
/// The formatter used when the data partition holds no filesystem; it
/// must be in the initramfs.
pub const MKE2FS: &str = "/sbin/mke2fs";
/// What runs after `switch_root`.
pub const INIT: &str = "/sbin/init";
/// Stable names for the agent where udev does not run:
/// `/dev/tandem/root-a`, `/dev/tandem/root-b`, `/dev/tandem/data`.
pub const LINK_DIR: &str = "/dev/tandem";

/// GPT name of the root partition of `slot`.
pub fn root_partname(slot: Slot) -> String {
    format!("tandem-root-{slot}")
}

/// The partitions the plan needs, located by GPT name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partitions {
    pub root: BlockDev,
    /// The other slot's partition, only for its `/dev/tandem` link.
    pub other: Option<BlockDev>,
    pub data: BlockDev,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocateError {
    #[error("partition {name} not found (block devices: {seen})")]
    Missing { name: String, seen: String },
    #[error("{count} partitions are named {name} ({devices}): refusing to guess which one to use; detach the extra disk")]
    Ambiguous {
        name: String,
        count: usize,
        devices: String,
    },
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

fn find(devs: &[BlockDev], name: &str) -> Result<Option<BlockDev>, LocateError> {
    let hits: Vec<&BlockDev> = devs
        .iter()
        .filter(|d| d.partname.as_deref() == Some(name))
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

/// Finds the booted slot's partition, the other slot's and the data
/// partition. Two partitions with one of these names is an error: booting
/// whichever a plugged-in stick happens to offer is not an option.
pub fn locate(devs: &[BlockDev], slot: Slot) -> Result<Partitions, LocateError> {
    let missing = |name: String| LocateError::Missing {
        name,
        seen: seen(devs),
    };
    let root_name = root_partname(slot);
    let root = find(devs, &root_name)?.ok_or_else(|| missing(root_name))?;
    let other = find(devs, &root_partname(slot.other()))?;
    let data = find(devs, DATA_PARTNAME)?.ok_or_else(|| missing(DATA_PARTNAME.into()))?;
    Ok(Partitions { root, other, data })
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
    /// Mount `device` (ext4) on `target`; format it with `mkfs` first if it
    /// holds no ext2/3/4 superblock.
    MountData {
        device: String,
        target: PathBuf,
        mkfs: PathBuf,
    },
    /// If `dir/flag` exists, delete everything in `dir` but `lost+found`.
    FactoryReset { dir: PathBuf, flag: String },
    /// `mkdir -p` each.
    MakeDirs(Vec<PathBuf>),
    /// `mount --bind source target`.
    Bind { source: PathBuf, target: PathBuf },
    /// `mount -t overlay` on `target` with `lower` (the target itself,
    /// read-only), `upper` and `work`.
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
            Step::MountData {
                device,
                target,
                mkfs,
            } => write!(
                f,
                "mount {device} (ext4; {} if blank) on {}",
                mkfs.display(),
                target.display()
            ),
            Step::FactoryReset { dir, flag } => {
                write!(f, "factory reset if {} exists", dir.join(flag).display())
            }
            Step::MakeDirs(dirs) => {
                let d: Vec<_> = dirs.iter().map(|d| d.display().to_string()).collect();
                write!(f, "mkdir -p {}", d.join(" "))
            }
            Step::Bind { source, target } => {
                write!(f, "bind {} on {}", source.display(), target.display())
            }
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

/// The steps for `cmd` on `parts`, in order.
pub fn plan(cmd: &Cmdline, parts: &Partitions) -> Vec<Step> {
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
        None => parts.root.path(),
    };
    steps.push(Step::MountRoot {
        device: root_device,
        target: sysroot.clone(),
    });
    steps.push(Step::RequireInit {
        path: sysroot.join(INIT.trim_start_matches('/')),
    });
    steps.push(Step::MountData {
        device: parts.data.path(),
        target: data.clone(),
        mkfs: MKE2FS.into(),
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
    steps.push(Step::Bind {
        source: data.join("var"),
        target: sysroot.join("var"),
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
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmdline::VerityParams;

    fn dev(devname: &str, partname: Option<&str>, minor: u32) -> BlockDev {
        BlockDev {
            devname: devname.into(),
            partname: partname.map(str::to_string),
            major: 254,
            minor,
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

    fn cmd(slot: Slot, verity: Option<VerityParams>) -> Cmdline {
        Cmdline {
            slot,
            verity,
            debug: false,
        }
    }

    #[test]
    fn locate_by_name_either_slot() {
        let p = locate(&disk(), Slot::B).unwrap();
        assert_eq!(p.root.devname, "vda3");
        assert_eq!(p.other.unwrap().devname, "vda2");
        assert_eq!(p.data.devname, "vda4");
    }

    #[test]
    fn locate_errors() {
        let no_b: Vec<_> = disk().into_iter().filter(|d| d.minor != 3).collect();
        assert!(locate(&no_b, Slot::A).is_ok(), "the other slot is optional");
        assert_eq!(
            locate(&no_b, Slot::B),
            Err(LocateError::Missing {
                name: "tandem-root-b".into(),
                seen: "vda, vda1 (esp), vda2 (tandem-root-a), vda4 (tandem-data)".into(),
            })
        );
        let no_data: Vec<_> = disk().into_iter().filter(|d| d.minor != 4).collect();
        assert!(matches!(
            locate(&no_data, Slot::A),
            Err(LocateError::Missing { name, .. }) if name == "tandem-data"
        ));
        assert_eq!(
            locate(&[], Slot::A),
            Err(LocateError::Missing {
                name: "tandem-root-a".into(),
                seen: "none".into()
            })
        );
        let mut two = disk();
        two.push(dev("sda2", Some("tandem-root-a"), 18));
        assert_eq!(
            locate(&two, Slot::A),
            Err(LocateError::Ambiguous {
                name: "tandem-root-a".into(),
                count: 2,
                devices: "/dev/vda2, /dev/sda2".into()
            })
        );
        // A second data partition is just as ambiguous.
        let mut two = disk();
        two.push(dev("sda4", Some("tandem-data"), 20));
        assert!(matches!(
            locate(&two, Slot::A),
            Err(LocateError::Ambiguous { .. })
        ));
    }

    #[test]
    fn without_verity_the_partition_is_mounted() {
        let steps = plan(&cmd(Slot::A, None), &locate(&disk(), Slot::A).unwrap());
        assert_eq!(
            steps[0],
            Step::MountRoot {
                device: "/dev/vda2".into(),
                target: "/sysroot".into()
            }
        );
        assert!(!steps.iter().any(|s| matches!(s, Step::Verity { .. })));
    }

    #[test]
    fn with_verity_the_mapped_device_is_mounted() {
        let v = VerityParams {
            root_hash: "ab".repeat(32),
            hash_offset: 8 << 20,
            salt: None,
        };
        let steps = plan(&cmd(Slot::B, Some(v)), &locate(&disk(), Slot::B).unwrap());
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
        let steps = plan(&cmd(Slot::A, None), &locate(&disk(), Slot::A).unwrap());
        let lines: Vec<String> = steps.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            lines,
            [
                "mount /dev/vda2 read-only on /sysroot",
                "require /sysroot/sbin/init",
                "mount /dev/vda4 (ext4; /sbin/mke2fs if blank) on /sysroot/data",
                "factory reset if /sysroot/data/.tandem-factory-reset exists",
                "mkdir -p /sysroot/data/var /sysroot/data/etc/upper /sysroot/data/etc/work",
                "bind /sysroot/data/var on /sysroot/var",
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

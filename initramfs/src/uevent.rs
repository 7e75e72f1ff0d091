//! Block devices as sysfs describes them: `/sys/class/block/<dev>/uevent`
//! holds `KEY=value` lines such as `MAJOR=254`, `MINOR=2`, `DEVNAME=vda2`,
//! `DEVTYPE=partition`, `PARTN=2`, `PARTNAME=tandem-root-a` (the GPT
//! partition name).
//!
//! [`parse`] is pure; [`scan`] is the thin loader over a directory, so tests
//! can hand it a fake sysfs tree. It also reads what the uevent file does
//! not say: which disk a partition is on (its parent directory in
//! `/sys/devices`) and where it starts (`start`, in 512-byte sectors).

use std::io;
use std::path::Path;

/// One block device (disk, partition, dm device...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockDev {
    /// Name under `/dev`, e.g. `vda2`.
    pub devname: String,
    /// GPT partition name, when the device is a named partition.
    pub partname: Option<String>,
    pub major: u32,
    pub minor: u32,
    /// `DEVTYPE=disk`: a whole disk (whose partition table may be read).
    pub is_disk: bool,
    /// Partition number (`PARTN=`), when a partition.
    pub partn: Option<u32>,
    /// The disk a partition is on (its `devname`); filled in by [`scan`].
    pub disk: Option<String>,
    /// First sector (512 bytes) of a partition on its disk; by [`scan`].
    pub start: Option<u64>,
}

impl BlockDev {
    /// `/dev/<devname>`.
    pub fn path(&self) -> String {
        format!("/dev/{}", self.devname)
    }

    /// `MAJOR:MINOR`, the form device-mapper tables use.
    pub fn dev_t(&self) -> String {
        format!("{}:{}", self.major, self.minor)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UeventError {
    #[error("no {0}= line")]
    Missing(&'static str),
    #[error("{key}={value:?} is not a number")]
    NotANumber { key: &'static str, value: String },
    #[error("DEVNAME={0:?} is not a plain device name")]
    BadName(String),
}

fn number(key: &'static str, value: Option<&str>) -> Result<u32, UeventError> {
    let value = value.ok_or(UeventError::Missing(key))?;
    value.parse().map_err(|_| UeventError::NotANumber {
        key,
        value: value.to_string(),
    })
}

/// Parses the text of one `uevent` file.
pub fn parse(text: &str) -> Result<BlockDev, UeventError> {
    let (mut devname, mut partname, mut major, mut minor) = (None, None, None, None);
    let (mut is_disk, mut partn) = (false, None);
    for line in text.lines() {
        match line.split_once('=') {
            Some(("DEVNAME", v)) => devname = Some(v),
            Some(("PARTNAME", v)) if !v.is_empty() => partname = Some(v),
            Some(("MAJOR", v)) => major = Some(v),
            Some(("MINOR", v)) => minor = Some(v),
            Some(("DEVTYPE", v)) => is_disk = v == "disk",
            Some(("PARTN", v)) => partn = v.parse().ok(),
            _ => {}
        }
    }
    let devname = devname.ok_or(UeventError::Missing("DEVNAME"))?;
    // DEVNAME may contain '/' (e.g. "mapper/control" for char devices), but a
    // block device we will open as /dev/<name> must not climb out of /dev.
    if devname.is_empty() || devname.split('/').any(|c| c.is_empty() || c == "..") {
        return Err(UeventError::BadName(devname.to_string()));
    }
    Ok(BlockDev {
        devname: devname.to_string(),
        partname: partname.map(str::to_string),
        major: number("MAJOR", major)?,
        minor: number("MINOR", minor)?,
        is_disk,
        partn,
        disk: None,
        start: None,
    })
}

/// Reads `<dir>/*/uevent` (`dir` is `/sys/class/block` on a live system),
/// sorted by device name. A device that disappears while being read, or
/// whose uevent does not parse, is left out: it cannot be the partition we
/// look for, and a missing partition is reported by the caller with the
/// list of what was seen.
pub fn scan(dir: &Path) -> io::Result<Vec<BlockDev>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Ok(text) = std::fs::read_to_string(entry.path().join("uevent")) else {
            continue;
        };
        if let Ok(mut dev) = parse(&text) {
            if dev.partn.is_some() {
                // /sys/class/block/vda2 -> /sys/devices/.../block/vda/vda2
                dev.disk = std::fs::canonicalize(entry.path())
                    .ok()
                    .and_then(|p| Some(p.parent()?.file_name()?.to_string_lossy().into_owned()));
                dev.start = std::fs::read_to_string(entry.path().join("start"))
                    .ok()
                    .and_then(|s| s.trim().parse().ok());
            }
            out.push(dev);
        }
    }
    out.sort_by(|a, b| a.devname.cmp(&b.devname));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition() {
        let text = "MAJOR=254\nMINOR=2\nDEVNAME=vda2\nDEVTYPE=partition\nDISKSEQ=1\nPARTN=2\nPARTNAME=tandem-root-a\n";
        assert_eq!(
            parse(text),
            Ok(BlockDev {
                devname: "vda2".into(),
                partname: Some("tandem-root-a".into()),
                major: 254,
                minor: 2,
                is_disk: false,
                partn: Some(2),
                disk: None,
                start: None,
            })
        );
        let d = parse(text).unwrap();
        assert_eq!(d.path(), "/dev/vda2");
        assert_eq!(d.dev_t(), "254:2");
    }

    #[test]
    fn table() {
        let cases: &[(&str, Result<Option<&str>, UeventError>)] = &[
            // a whole disk: no PARTNAME
            ("MAJOR=254\nMINOR=0\nDEVNAME=vda\nDEVTYPE=disk\n", Ok(None)),
            // a GPT partition without a name
            ("MAJOR=8\nMINOR=1\nDEVNAME=sda1\nPARTNAME=\n", Ok(None)),
            // names may contain '=' and spaces
            (
                "MAJOR=8\nMINOR=1\nDEVNAME=sda1\nPARTNAME=a=b c\n",
                Ok(Some("a=b c")),
            ),
            ("MAJOR=8\nMINOR=1\n", Err(UeventError::Missing("DEVNAME"))),
            ("DEVNAME=sda\nMINOR=1\n", Err(UeventError::Missing("MAJOR"))),
            (
                "DEVNAME=sda\nMAJOR=x\nMINOR=1\n",
                Err(UeventError::NotANumber {
                    key: "MAJOR",
                    value: "x".into(),
                }),
            ),
            (
                "DEVNAME=../sda\nMAJOR=8\nMINOR=1\n",
                Err(UeventError::BadName("../sda".into())),
            ),
            (
                "DEVNAME=\nMAJOR=8\nMINOR=1\n",
                Err(UeventError::BadName("".into())),
            ),
        ];
        for (text, want) in cases {
            let got = parse(text).map(|d| d.partname);
            assert_eq!(got, want.clone().map(|o| o.map(str::to_string)), "{text:?}");
        }
    }

    #[test]
    fn scan_reads_a_tree_and_skips_junk() {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in [
            ("vdb", "MAJOR=254\nMINOR=16\nDEVNAME=vdb\n"),
            ("vda1", "MAJOR=254\nMINOR=1\nDEVNAME=vda1\nPARTNAME=esp\n"),
            ("broken", "nothing useful\n"),
        ] {
            std::fs::create_dir(dir.path().join(name)).unwrap();
            std::fs::write(dir.path().join(name).join("uevent"), text).unwrap();
        }
        std::fs::create_dir(dir.path().join("no-uevent")).unwrap();
        let got = scan(dir.path()).unwrap();
        let names: Vec<_> = got.iter().map(|d| d.devname.as_str()).collect();
        assert_eq!(names, ["vda1", "vdb"]);
        assert!(scan(&dir.path().join("absent")).is_err());
    }
}

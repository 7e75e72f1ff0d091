//! The boot scripts' last resort (issue 11, "a brick"): a device whose
//! A/B variables leave nothing bootable — one group half-written (its first
//! MiB zeroed, as an install leaves it), the other intact but marked bad —
//! must still boot the intact group; and a group that fails to load must
//! hand over to the other before any reboot.
//!
//! Each scenario boots the factory disk, installs 1.1.0 into b and commits
//! it (so both groups hold a verified image), powers off, and then, for
//! each case, edits a raw copy of the powered-off disk on the host: the A/B
//! variables with mtools in the FAT boot partition (grubenv, or U-Boot's
//! tandem.env) and zeros over a slot's first MiB. The next boot must reach
//! the group the case names, through dm-verity.
//!
//! The same "never a brick" for the data partition both groups share
//! ([`degraded_data`]): one the initramfs must not format (a LUKS header)
//! boots degraded, and is left as it was.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::scenario::{fail, install_and_reboot, verified, Fixture, Timeline, BOOT};
use crate::vm::{Disk, Vm};
use crate::RigError;

const MIB: u64 = 1 << 20;
/// Size of GRUB's environment block.
const GRUBENV_LEN: usize = 1024;
const GRUBENV_HEADER: &str = "# GRUB Environment Block\n";

/// One host command that must succeed; its stdout.
fn sh(program: &str, args: &[&str]) -> Result<String, RigError> {
    let out = Command::new(program)
        .args(args)
        .env("MTOOLS_SKIP_CHECK", "1")
        .output()
        .map_err(crate::io(format!("run {program}")))?;
    if !out.status.success() {
        return Err(fail(format!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Byte offset of partition `n` of a raw GPT disk (sgdisk's "First sector").
fn partition_offset(disk: &Path, n: u32) -> Result<u64, RigError> {
    let d = disk.display().to_string();
    let info = sh("sgdisk", &["-i", &n.to_string(), &d])?;
    let sector: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("First sector: "))
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| fail(format!("sgdisk -i {n} {d}: no first sector in {info:?}")))?;
    Ok(sector * 512)
}

/// Zeros the first MiB of partition `n`: what an install leaves while the
/// group is half-written (it zeroes the head first, writes it last).
fn zero_head(disk: &Path, n: u32) -> Result<(), RigError> {
    use std::io::{Seek, SeekFrom, Write};
    let at = partition_offset(disk, n)?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(disk)
        .map_err(crate::io(format!("open {}", disk.display())))?;
    f.seek(SeekFrom::Start(at))
        .and_then(|_| f.write_all(&vec![0u8; MIB as usize]))
        .and_then(|()| f.sync_all())
        .map_err(crate::io(format!(
            "zero partition {n} of {}",
            disk.display()
        )))
}

/// `IMAGE@@OFFSET`, how mtools addresses a FAT partition inside a disk.
fn fat(disk: &Path) -> Result<String, RigError> {
    Ok(format!(
        "{}@@{}",
        disk.display(),
        partition_offset(disk, 1)?
    ))
}

fn fat_read(disk: &Path, file: &str, work: &Path) -> Result<Vec<u8>, RigError> {
    let tmp = work.join("fat-read.tmp");
    let _ = std::fs::remove_file(&tmp);
    sh(
        "mcopy",
        &[
            "-n",
            "-i",
            &fat(disk)?,
            &format!("::{file}"),
            &tmp.display().to_string(),
        ],
    )?;
    std::fs::read(&tmp).map_err(crate::io(format!("read {}", tmp.display())))
}

fn fat_write(disk: &Path, file: &str, data: &[u8], work: &Path) -> Result<(), RigError> {
    let tmp = work.join("fat-write.tmp");
    std::fs::write(&tmp, data).map_err(crate::io(format!("write {}", tmp.display())))?;
    sh(
        "mcopy",
        &[
            "-o",
            "-i",
            &fat(disk)?,
            &tmp.display().to_string(),
            &format!("::{file}"),
        ],
    )
    .map(drop)
}

/// The variables of a GRUB environment block (no escapes: ours have none).
pub fn grubenv_decode(block: &[u8]) -> Result<BTreeMap<String, String>, RigError> {
    let text = std::str::from_utf8(block).map_err(|_| fail("grubenv is not UTF-8"))?;
    let body = text
        .strip_prefix(GRUBENV_HEADER)
        .ok_or_else(|| fail("grubenv lacks its header line"))?;
    Ok(body
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

/// A 1024-byte block: the boot decision's variables first (inside the
/// first sector, as the agent writes them), then the rest, `#` padding.
pub fn grubenv_encode(vars: &BTreeMap<String, String>) -> Result<Vec<u8>, RigError> {
    let decision = |k: &str| !k.ends_with("_VERITY");
    let mut text = String::from(GRUBENV_HEADER);
    for first in [true, false] {
        for (k, v) in vars.iter().filter(|(k, _)| decision(k) == first) {
            if v.contains(['\n', '\\']) {
                return Err(fail(format!("{k}: value needs escaping")));
            }
            text += &format!("{k}={v}\n");
        }
    }
    if text.len() > GRUBENV_LEN {
        return Err(fail("grubenv variables do not fit 1024 bytes"));
    }
    let mut block = text.into_bytes();
    block.resize(GRUBENV_LEN, b'#');
    Ok(block)
}

/// U-Boot's `env export -t` text (sorted lines, a NUL at the end).
pub fn uboot_env_decode(bytes: &[u8]) -> BTreeMap<String, String> {
    let text = String::from_utf8_lossy(bytes);
    text.split(['\n', '\0'])
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn uboot_env_encode(vars: &BTreeMap<String, String>) -> Vec<u8> {
    let mut out: Vec<u8> = vars
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .flat_map(|(k, v)| format!("{k}={v}\n").into_bytes())
        .collect();
    out.push(0);
    out
}

/// The A/B decision to write: `order`, the two OK flags, tries (empty =
/// committed), the groups' verity parameters kept from `old`.
fn decision(
    old: &BTreeMap<String, String>,
    order: &str,
    a_ok: &str,
    b_ok: &str,
    b_tries: &str,
) -> BTreeMap<String, String> {
    let mut v: BTreeMap<String, String> = old
        .iter()
        .filter(|(k, _)| k.ends_with("_VERITY"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, val) in [
        ("TANDEM_ORDER", order),
        ("TANDEM_A_OK", a_ok),
        ("TANDEM_B_OK", b_ok),
        ("TANDEM_A_TRIES", ""),
        ("TANDEM_B_TRIES", b_tries),
    ] {
        v.insert(k.into(), val.into());
    }
    v
}

/// Boots the factory disk, installs 1.1.0 into b, lets its trial commit,
/// powers off; returns the raw disk image of that state.
fn both_groups_committed(
    fx: &Fixture,
    name: &str,
    bundle: &str,
    t: &mut Timeline,
) -> Result<PathBuf, RigError> {
    let server = fx.serve()?;
    let disk = fx.fresh_disk(name)?;
    let overlay = disk.path.clone();
    let mut vm = Vm::start(&fx.config(name, disk, Some(&server)))?;
    verified(&mut vm, 'a', t)?;
    vm.expect("TANDEM-READY slot=a", BOOT)?;
    install_and_reboot(&mut vm, bundle, t)?;
    verified(&mut vm, 'b', t)?;
    vm.expect("TANDEM-BOOTED slot=b", BOOT)?;
    vm.expect("slot b committed", BOOT)?;
    vm.expect("TANDEM-READY slot=b", BOOT)?;
    // Flush the FAT before the cut: a cut right after the commit has left
    // tandem.env's cluster marked free in the FAT (mtools then refuses the
    // file), though the agent syncs the file and its directory.
    crate::scenario::expect_code(&mut vm, "sync", 0)?;
    vm.power_cut()?;
    let raw = fx.work.join(name).join("committed.raw");
    let _ = std::fs::remove_file(&raw);
    sh(
        "qemu-img",
        &[
            "convert",
            "-O",
            "raw",
            &overlay.display().to_string(),
            &raw.display().to_string(),
        ],
    )?;
    t.step("b (1.1.0) installed and committed; powered off; disk copied for the cases");
    Ok(raw)
}

/// One case: a copy of `base`, edited by `edit`, booted until `needles`
/// were seen in order. Returns the VM (still running) and the disk.
fn boot_case(
    fx: &Fixture,
    base: &Path,
    case: &str,
    edit: impl FnOnce(&Path) -> Result<(), RigError>,
    needles: &[&str],
    t: &mut Timeline,
) -> Result<(Vm, PathBuf), RigError> {
    let dir = fx.work.join(case);
    std::fs::create_dir_all(&dir).map_err(crate::io(format!("create {}", dir.display())))?;
    let disk = dir.join("disk.raw");
    sh(
        "cp",
        &[
            "--sparse=always",
            &base.display().to_string(),
            &disk.display().to_string(),
        ],
    )?;
    edit(&disk)?;
    let mut vm = Vm::start(&fx.config(case, Disk::raw(&disk), None))?;
    for n in needles {
        vm.expect(n, BOOT)?;
    }
    t.step(format!("{case}: saw {}", needles.join(" → ")));
    Ok((vm, disk))
}

/// Stops a case's VM (power cut) so its disk can be read.
fn stop(vm: Vm) -> Result<(), RigError> {
    vm.power_cut().map(drop)
}

fn require_vars(vars: &BTreeMap<String, String>, want: &[(&str, &str)]) -> Result<(), RigError> {
    for (k, v) in want {
        let got = vars.get(*k).map(String::as_str).unwrap_or("");
        if got != *v {
            return Err(fail(format!("{k} is {got:?}, expected {v:?}: {vars:?}")));
        }
    }
    Ok(())
}

const GRUBENV: &str = "/EFI/tandem/grubenv";

/// GRUB (x86_64, OVMF): the brick's state and three neighbours.
pub fn last_resort_grub(fx: &Fixture, t: &mut Timeline) -> Result<(), RigError> {
    let base = both_groups_committed(fx, "lr-grub", "minimal-1.1.0.tnd", t)?;
    let work = fx.work.join("lr-grub");
    let env = |disk: &Path, order: &str, a_ok: &str, b_ok: &str, b_tries: &str| {
        let old = grubenv_decode(&fat_read(disk, GRUBENV, &work)?)?;
        let new = decision(&old, order, a_ok, b_ok, b_tries);
        fat_write(disk, GRUBENV, &grubenv_encode(&new)?, &work)
    };

    // The brick: a half-written, b intact but marked bad, nothing bootable.
    let (mut vm, _) = boot_case(
        fx,
        &base,
        "lr-grub-brick",
        |d| {
            env(d, "a b", "0", "0", "")?;
            zero_head(d, 2)
        },
        &[
            "tandem: last resort",
            "tandem: booting slot a",
            "tandem: slot a failed to load",
            "tandem: booting slot b",
        ],
        t,
    )?;
    verified(&mut vm, 'b', t)?;
    vm.expect("TANDEM-BOOTED slot=b", BOOT)?;
    vm.expect("TANDEM-READY slot=b", BOOT)?;
    t.step("brick state (a zeroed, a and b marked bad): b booted, through dm-verity, to its shell");
    stop(vm)?;

    // A committed group that does not load: marked not OK, and the other
    // group (not bootable by the variables either) is the last resort.
    let (vm, disk) = boot_case(
        fx,
        &base,
        "lr-grub-committed-a-broken",
        |d| {
            env(d, "a b", "1", "0", "")?;
            zero_head(d, 2)
        },
        &[
            "tandem: booting slot a",
            "tandem: slot a failed to load",
            "tandem: last resort",
            "tandem: booting slot b",
            "command line: slot b, dm-verity root hash",
        ],
        t,
    )?;
    stop(vm)?;
    let after = grubenv_decode(&fat_read(&disk, GRUBENV, &work)?)?;
    require_vars(&after, &[("TANDEM_A_OK", "0")])?;
    t.step("committed a that does not load was marked TANDEM_A_OK=0");

    // A trial that does not load: its try is counted first, then the
    // committed group boots by the variables (no last resort needed).
    let (vm, disk) = boot_case(
        fx,
        &base,
        "lr-grub-trial-b-broken",
        |d| {
            env(d, "b a", "1", "1", "1")?;
            zero_head(d, 3)
        },
        &[
            "tandem: booting slot b",
            "tandem: slot b failed to load",
            "tandem: booting slot a",
            "command line: slot a, dm-verity root hash",
        ],
        t,
    )?;
    let lines = vm.console.lines();
    stop(vm)?;
    if lines.iter().any(|l| l.text.contains("last resort")) {
        return Err(fail("the trial's fallback went through the last resort"));
    }
    let after = grubenv_decode(&fat_read(&disk, GRUBENV, &work)?)?;
    require_vars(&after, &[("TANDEM_B_TRIES", "0"), ("TANDEM_A_OK", "1")])?;
    t.step("trial b that does not load: its try counted (TANDEM_B_TRIES=0), a booted");

    // Nothing bootable, both intact, order b a: the order decides.
    let (vm, _) = boot_case(
        fx,
        &base,
        "lr-grub-order",
        |d| env(d, "b a", "0", "0", ""),
        &[
            "tandem: last resort",
            "tandem: booting slot b",
            "command line: slot b, dm-verity root hash",
        ],
        t,
    )?;
    stop(vm)?;
    t.step("nothing bootable, both intact, order b a: b");
    Ok(())
}

const UBOOT_ENV: &str = "/tandem.env";

/// U-Boot (aarch64, boot.scr and tandem.env): the brick's state.
pub fn last_resort_uboot(fx: &Fixture, t: &mut Timeline) -> Result<(), RigError> {
    let afx = Fixture::aarch64(&fx.images.join("arm64"), &fx.work)?;
    let base = both_groups_committed(&afx, "lr-uboot", "minimal-arm64-1.1.0.tnd", t)?;
    let work = fx.work.join("lr-uboot");
    let env = |disk: &Path, order: &str, a_ok: &str, b_ok: &str, b_tries: &str| {
        let old = uboot_env_decode(&fat_read(disk, UBOOT_ENV, &work)?);
        let new = decision(&old, order, a_ok, b_ok, b_tries);
        fat_write(disk, UBOOT_ENV, &uboot_env_encode(&new), &work)
    };
    let (mut vm, _) = boot_case(
        &afx,
        &base,
        "lr-uboot-brick",
        |d| {
            env(d, "a b", "0", "0", "")?;
            zero_head(d, 2)
        },
        &[
            "tandem: last resort",
            "tandem: booting slot a",
            "tandem: slot a failed to load",
            "tandem: booting slot b",
        ],
        t,
    )?;
    verified(&mut vm, 'b', t)?;
    vm.expect("TANDEM-BOOTED slot=b", BOOT)?;
    vm.expect("TANDEM-READY slot=b", BOOT)?;
    t.step("brick state (a zeroed, a and b marked bad): U-Boot booted b, through dm-verity");
    stop(vm)?;

    let (vm, disk) = boot_case(
        &afx,
        &base,
        "lr-uboot-trial-b-broken",
        |d| {
            env(d, "b a", "1", "1", "1")?;
            zero_head(d, 3)
        },
        &[
            "tandem: trial of slot b, 0 tries left",
            "tandem: slot b failed to load",
            "tandem: booting slot a",
            "command line: slot a, dm-verity root hash",
        ],
        t,
    )?;
    stop(vm)?;
    let after = uboot_env_decode(&fat_read(&disk, UBOOT_ENV, &work)?);
    require_vars(&after, &[("TANDEM_B_TRIES", "0")])?;
    t.step("trial b that does not load: its try counted (TANDEM_B_TRIES=0), a booted");
    Ok(())
}

/// The factory disk with a LUKS header over its ext4 data partition:
/// the boot goes on degraded (tmpfs, marker), the partition untouched.
pub fn degraded_data(fx: &Fixture, t: &mut Timeline) -> Result<(), RigError> {
    const LUKS: &[u8] = b"LUKS\xba\xbe\x00\x02";
    let dir = fx.work.join("data-degraded");
    std::fs::create_dir_all(&dir).map_err(crate::io(format!("create {}", dir.display())))?;
    let disk = dir.join("disk.raw");
    sh(
        "cp",
        &[
            "--sparse=always",
            &fx.disk.display().to_string(),
            &disk.display().to_string(),
        ],
    )?;
    let at = partition_offset(&disk, 4)?;
    let patch = |data: &[u8]| -> Result<(), RigError> {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&disk)
            .map_err(crate::io(format!("open {}", disk.display())))?;
        f.seek(SeekFrom::Start(at))
            .and_then(|_| f.write_all(data))
            .and_then(|()| f.sync_all())
            .map_err(crate::io(format!("write {}", disk.display())))
    };
    patch(LUKS)?;
    let head = |n: usize| -> Result<Vec<u8>, RigError> {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = std::fs::File::open(&disk).map_err(crate::io("open disk"))?;
        let mut b = vec![0u8; n];
        f.seek(SeekFrom::Start(at))
            .and_then(|_| f.read_exact(&mut b))
            .map_err(crate::io("read disk"))?;
        Ok(b)
    };
    let before = head(1 << 20)?;
    let mut vm = Vm::start(&fx.config("data-degraded", Disk::raw(&disk), None))?;
    let l = vm.expect("DEGRADED: the data partition holds LUKS", BOOT)?;
    t.step(format!("initramfs: {}", l.text.trim()));
    vm.expect("TANDEM-BOOTED slot=a", BOOT)?;
    vm.expect("TANDEM-READY slot=a", BOOT)?;
    t.step("slot a booted to its shell on a tmpfs /data");
    let marker = vm.output(
        "head -n1 /run/tandem/data-degraded",
        Duration::from_secs(30),
    )?;
    if !marker.contains("LUKS") {
        return Err(fail(format!("marker's first line: {marker:?}")));
    }
    let data = vm.output("grep ' /data ' /proc/mounts", Duration::from_secs(30))?;
    if !data.starts_with("tmpfs /data tmpfs") {
        return Err(fail(format!("/data is not the tmpfs: {data:?}")));
    }
    // The agent says so: status JSON's data_degraded is the marker's
    // first line, and the text form shouts it.
    let st = crate::scenario::status(&mut vm)?;
    let shown = st["data_degraded"].as_str().unwrap_or_default().to_string();
    if !shown.contains("LUKS") || shown != marker.trim() {
        return Err(fail(format!(
            "status data_degraded is {:?}; the marker says {marker:?}",
            st["data_degraded"]
        )));
    }
    crate::scenario::expect_code(&mut vm, "tandem status | grep -q 'data:       DEGRADED'", 0)?;
    t.step(format!(
        "marker: {marker:?}; /data: tmpfs; `tandem status` shows it (data_degraded)"
    ));
    vm.power_cut()?;
    if head(1 << 20)? != before {
        return Err(fail("the data partition's first MiB changed"));
    }
    t.step("the data partition's first MiB is byte-identical afterwards (never formatted)");
    Ok(())
}

/// A scenario of the suite (the shape `scenarios::suite` holds).
pub type Scenario = (
    String,
    Box<dyn FnOnce(&Fixture, &mut Timeline) -> Result<(), RigError> + Send>,
);

/// This module's scenarios, for `scenarios::suite` (`ONLY="last resort"`,
/// `ONLY=degraded`).
pub fn scenarios() -> Vec<Scenario> {
    vec![
        ("last resort: GRUB".into(), Box::new(last_resort_grub)),
        (
            "last resort: U-Boot arm".into(),
            Box::new(last_resort_uboot),
        ),
        ("data partition: degraded".into(), Box::new(degraded_data)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grubenv_round_trip_keeps_the_decision_in_the_first_sector() {
        let mut v = BTreeMap::new();
        v.insert("TANDEM_A_VERITY".to_string(), "x".repeat(300));
        v.insert("TANDEM_B_VERITY".to_string(), "y".repeat(300));
        let old = v.clone();
        let v = decision(&old, "a b", "0", "0", "");
        let block = grubenv_encode(&v).unwrap();
        assert_eq!(block.len(), 1024);
        let first = String::from_utf8_lossy(&block[..512]);
        for k in ["TANDEM_ORDER=a b", "TANDEM_A_OK=0", "TANDEM_B_OK=0"] {
            assert!(first.contains(k), "{k}");
        }
        assert_eq!(grubenv_decode(&block).unwrap(), v);
    }

    #[test]
    fn uboot_env_round_trip_drops_empty_values() {
        let v = decision(&BTreeMap::new(), "b a", "1", "0", "");
        let bytes = uboot_env_encode(&v);
        assert_eq!(
            bytes,
            b"TANDEM_A_OK=1\nTANDEM_B_OK=0\nTANDEM_ORDER=b a\n\0".to_vec()
        );
        let back = uboot_env_decode(&bytes);
        assert_eq!(back.get("TANDEM_ORDER").unwrap(), "b a");
        assert!(!back.contains_key("TANDEM_A_TRIES"));
    }
}

//! The plan for a fake sysfs tree laid out like the kernel's
//! (`class/block/<dev>` symlinks into `devices/...`), built in a temp dir:
//! scan → locate → plan, no root needed.

use std::os::unix::fs::symlink;
use std::path::Path;

use tandem_initramfs::cmdline;
use tandem_initramfs::plan::{self, GptHit, LocateError, RootBy, Step};
use tandem_initramfs::policy::Policy;
use tandem_initramfs::{gpt, uevent};

const ROOT_HASH: &str = "4392712ba01368efdf14b05c76f9e4df0d53664630b5d48632ed17a137f39076";

/// A virtio disk `vda` with the four GPT partitions of docs/disk-layout.md,
/// plus a loop device and a dm device that must be ignored.
fn fake_sysfs(root: &Path, parts: &[(&str, u32, Option<&str>)]) {
    let class = root.join("class/block");
    std::fs::create_dir_all(&class).unwrap();
    let disk = root.join("devices/pci0000:00/0000:00:04.0/virtio1/block/vda");
    std::fs::create_dir_all(&disk).unwrap();
    std::fs::write(
        disk.join("uevent"),
        "MAJOR=254\nMINOR=0\nDEVNAME=vda\nDEVTYPE=disk\nDISKSEQ=1\n",
    )
    .unwrap();
    symlink(&disk, class.join("vda")).unwrap();
    for (name, minor, partname) in parts {
        let d = disk.join(name);
        std::fs::create_dir_all(&d).unwrap();
        let mut text = format!(
            "MAJOR=254\nMINOR={minor}\nDEVNAME={name}\nDEVTYPE=partition\nDISKSEQ=1\nPARTN={minor}\n"
        );
        if let Some(p) = partname {
            text += &format!("PARTNAME={p}\n");
        }
        std::fs::write(d.join("uevent"), text).unwrap();
        std::fs::write(d.join("start"), format!("{}\n", 2048 * minor)).unwrap();
        symlink(&d, class.join(name)).unwrap();
    }
    for (name, major) in [("loop0", 7), ("dm-0", 253)] {
        let d = root.join("devices/virtual/block").join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("uevent"),
            format!("MAJOR={major}\nMINOR=0\nDEVNAME={name}\nDEVTYPE=disk\n"),
        )
        .unwrap();
        symlink(&d, class.join(name)).unwrap();
    }
}

fn standard_disk(root: &Path) {
    fake_sysfs(
        root,
        &[
            ("vda1", 1, Some("esp")),
            ("vda2", 2, Some("tandem-root-a")),
            ("vda3", 3, Some("tandem-root-b")),
            ("vda4", 4, Some("tandem-data")),
        ],
    );
}

fn plan_for(root: &Path, line: &str) -> Result<Vec<Step>, LocateError> {
    let cmd = cmdline::parse(line).unwrap();
    let devs = uevent::scan(&root.join("class/block")).unwrap();
    let parts = plan::locate(&devs, cmd.slot, RootBy::Name)?;
    Ok(plan::plan(&cmd, &parts, &Policy::DEFAULT).expect("policy"))
}

#[test]
fn verity_slot_b_full_plan() {
    let t = tempfile::tempdir().unwrap();
    standard_disk(t.path());
    let steps = plan_for(
        t.path(),
        &format!(
            "BOOT_IMAGE=/boot/vmlinuz console=ttyS0 tandem.slot=b panic=5 \
             tandem.verity.roothash={ROOT_HASH} tandem.verity.hashoffset=16777216 \
             tandem.verity.salt=aabb"
        ),
    )
    .unwrap();
    let lines: Vec<String> = steps.iter().map(|s| s.to_string()).collect();
    let want = [
        format!(
            "dm-verity /dev/mapper/tandem-root-b over /dev/vda3: \
             0 32768 verity 1 254:3 254:3 4096 4096 4096 4097 sha256 {ROOT_HASH} aabb \
             1 restart_on_corruption"
        ),
        "mount /dev/mapper/tandem-root-b read-only on /sysroot".into(),
        "require /sysroot/sbin/init".into(),
        "tmpfs on /sysroot/run".into(),
        "data /dev/vda4 on /sysroot/data (nosuid,nodev; format if blank, e2fsck if it does not mount; else tmpfs and /sysroot/run/tandem/data-degraded)".into(),
        "factory reset if /sysroot/data/.tandem-factory-reset exists".into(),
        "mkdir -p /sysroot/data/var /sysroot/data/etc/upper /sysroot/data/etc/work".into(),
        "seed /sysroot/data/var from /sysroot/var (once per image, stamp /sysroot/data/.tandem-var-seeded)".into(),
        "bind /sysroot/data/var on /sysroot/var".into(),
        "merge /sysroot/data/etc/upper for /sysroot/etc (base and report in /sysroot/data/etc)".into(),
        "overlay on /sysroot/etc (lower /sysroot/etc, upper /sysroot/data/etc/upper, work /sysroot/data/etc/work)".into(),
        "link /dev/tandem/data -> ../vda4, /dev/tandem/root-a -> ../vda2, /dev/tandem/root-b -> ../vda3".into(),
        "move /dev to /sysroot/dev".into(),
        "move /proc to /sysroot/proc".into(),
        "move /sys to /sysroot/sys".into(),
        "switch_root to /sysroot, exec /sbin/init".into(),
    ];
    assert_eq!(lines, want);
}

#[test]
fn plain_slot_a_mounts_the_partition() {
    let t = tempfile::tempdir().unwrap();
    standard_disk(t.path());
    let cmd = cmdline::parse("console=ttyS0 tandem.slot=a").unwrap();
    let devs = uevent::scan(&t.path().join("class/block")).unwrap();
    let parts = plan::locate(&devs, cmd.slot, RootBy::Name).unwrap();
    let open = Policy {
        require_verity: false,
    };
    let steps = plan::plan(&cmd, &parts, &open).unwrap();
    assert_eq!(
        steps[0].to_string(),
        "mount /dev/vda2 read-only on /sysroot"
    );
    // The built-in default refuses the same command line.
    assert!(plan::plan(&cmd, &parts, &Policy::DEFAULT).is_err());
}

#[test]
fn scan_knows_each_partitions_disk_and_start() {
    let t = tempfile::tempdir().unwrap();
    standard_disk(t.path());
    let devs = uevent::scan(&t.path().join("class/block")).unwrap();
    let vda3 = devs.iter().find(|d| d.devname == "vda3").unwrap();
    assert_eq!(vda3.disk.as_deref(), Some("vda"));
    assert_eq!((vda3.partn, vda3.start), (Some(3), Some(6144)));
    let vda = devs.iter().find(|d| d.devname == "vda").unwrap();
    assert!(vda.is_disk && vda.disk.is_none());
    let hits = [GptHit {
        disk: "vda".into(),
        number: 3,
        start: 6144,
    }];
    let p = plan::locate(
        &devs,
        cmdline::Slot::B,
        RootBy::Partuuid {
            uuid: "x",
            hits: &hits,
        },
    )
    .unwrap();
    assert_eq!(
        (p.root.devname.as_str(), p.data.devname.as_str()),
        ("vda3", "vda4")
    );
}

/// The GUIDs sgdisk writes read back as sgdisk prints them (and as GRUB's
/// `probe --part-uuid` and U-Boot's `part uuid` pass them).
#[test]
fn guids_of_a_real_sgdisk_table() {
    let t = tempfile::tempdir().unwrap();
    let img = t.path().join("d.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(8 << 20)
        .unwrap();
    let g2 = "C0FFEE00-1234-4567-89AB-0123456789AB";
    let ok = std::process::Command::new("sgdisk")
        .args([
            "-o",
            "-n1:1M:+2M",
            "-c1:esp",
            "-n2:0:+2M",
            "-c2:tandem-root-a",
        ])
        .arg(format!("-u2:{g2}"))
        .arg(&img)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("sgdisk not available; skipped");
        return;
    }
    let bytes = std::fs::read(&img).unwrap();
    let header = gpt::parse_header(&bytes[512..1024]).unwrap();
    let at = header.entries_lba as usize * 512;
    let e = gpt::entries(&header, &bytes[at..at + header.array_len() as usize]);
    assert_eq!(e.len(), 2);
    assert_eq!(e[1].unique_guid, g2.to_ascii_lowercase());
    assert_eq!(
        (e[1].number, e[1].first_lba, e[1].name.as_str()),
        (2, 6144, "tandem-root-a")
    );
}

#[test]
fn missing_slot_partition_names_what_was_seen() {
    let t = tempfile::tempdir().unwrap();
    fake_sysfs(
        t.path(),
        &[
            ("vda1", 1, Some("esp")),
            ("vda2", 2, Some("tandem-root-a")),
            ("vda3", 3, None),
            ("vda4", 4, Some("tandem-data")),
        ],
    );
    let err = plan_for(t.path(), "tandem.slot=b").unwrap_err();
    assert_eq!(
        err.to_string(),
        "partition tandem-root-b not found (block devices: dm-0, loop0, vda, \
         vda1 (esp), vda2 (tandem-root-a), vda3, vda4 (tandem-data))"
    );
    assert!(err.may_resolve(), "a missing partition is waited for");
}

#[test]
fn a_second_disk_with_the_same_names_is_refused() {
    let t = tempfile::tempdir().unwrap();
    standard_disk(t.path());
    let class = t.path().join("class/block");
    let d = t.path().join("devices/usb/block/sda/sda2");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(
        d.join("uevent"),
        "MAJOR=8\nMINOR=2\nDEVNAME=sda2\nDEVTYPE=partition\nPARTNAME=tandem-root-a\n",
    )
    .unwrap();
    symlink(&d, class.join("sda2")).unwrap();
    let err = plan_for(t.path(), "tandem.slot=a").unwrap_err();
    assert!(
        matches!(err, LocateError::Ambiguous { count: 2, .. }),
        "{err}"
    );
}

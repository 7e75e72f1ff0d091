//! Whole disks: GPT with a FAT boot partition (amd64: the ESP with GRUB,
//! the shipped grub.cfg and grubenv, or with systemd-boot, slot a's entry,
//! kernel and initrd; arm64: U-Boot's boot.scr and
//! tandem.env), slot a (the image), slot b (empty, marked not bootable),
//! data (ext4). No root and no loop mounts: sgdisk, mtools and file writes
//! at offsets.

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use crate::derive::derive_uuid;
use crate::recipe::{BootChain, DiskSpec};
use crate::tool::{run, run_env, BuildError};

const MIB: u64 = 1 << 20;
const GRUB_CFG: &str = include_str!("../../agent/dist/grub/grub.cfg");
const GRUB_MODULES: &[&str] = &[
    "part_gpt",
    "fat",
    "ext2",
    "squash4",
    "normal",
    "linux",
    "loadenv",
    "regexp",
    "test",
    "echo",
    "sleep",
    "reboot",
    "configfile",
    "gzio",
    "xzio",
    "minicmd",
    "search",
    "serial",
    "terminal",
    // grub.cfg passes root=PARTUUID= from `probe --part-uuid`.
    "probe",
];

/// The GRUB environment a fresh disk starts with: boot a, never b (empty);
/// slot a's dm-verity kernel parameters when its image has them.
pub fn initial_grubenv(verity_a: Option<&str>) -> Vec<u8> {
    tandem::boot::grub::encode(
        &tandem::boot::abvars::factory(verity_a),
        tandem::boot::grub::DEFAULT_SIZE,
    )
    .expect("fits")
}

/// An empty FAT32 image of the boot partition's size.
fn fat(
    spec: &DiskSpec,
    work: &Path,
    seed: &str,
    label: &str,
) -> Result<std::path::PathBuf, BuildError> {
    let img = work.join("esp.img");
    let _ = std::fs::remove_file(&img);
    let i = img.display().to_string();
    let volid = &derive_uuid(seed, "esp-volid").replace('-', "")[..8];
    run(
        "mkfs.fat",
        &[
            "-C",
            "-F",
            "32",
            "--invariant",
            "-i",
            volid,
            "-n",
            label,
            &i,
            &(spec.esp_mib * 1024).to_string(),
        ],
    )?;
    Ok(img)
}

/// Copies files into a FAT image (`dirs` first, then `(source, ::dest)`).
fn fat_copy(
    img: &Path,
    epoch: u64,
    dirs: &[&str],
    files: &[(String, String)],
) -> Result<(), BuildError> {
    let i = img.display().to_string();
    let env = [
        ("MTOOLS_SKIP_CHECK", "1".to_string()),
        ("SOURCE_DATE_EPOCH", epoch.to_string()),
    ];
    for d in dirs {
        run_env(None, "mmd", &["-i", &i, d], &env)?;
    }
    for (src, dest) in files {
        run_env(None, "mcopy", &["-i", &i, src, dest], &env)?;
    }
    Ok(())
}

fn esp(
    spec: &DiskSpec,
    work: &Path,
    seed: &str,
    epoch: u64,
    verity_a: Option<&str>,
) -> Result<std::path::PathBuf, BuildError> {
    let img = fat(spec, work, seed, "ESP")?;
    let efi = work.join("BOOTX64.EFI");
    let mods: Vec<&str> = GRUB_MODULES.to_vec();
    let mut args = vec!["-O", "x86_64-efi", "-p", "/EFI/tandem", "-o"];
    let e = efi.display().to_string();
    args.push(&e);
    args.extend(mods);
    run("grub-mkimage", &args)?;
    let files = [
        ("grub.cfg", GRUB_CFG.as_bytes().to_vec()),
        ("grubenv", initial_grubenv(verity_a)),
    ];
    let mut copies = vec![(e, "::/EFI/BOOT/BOOTX64.EFI".to_string())];
    for (name, data) in &files {
        let p = work.join(name);
        std::fs::write(&p, data).map_err(|err| BuildError::io(&p, err))?;
        copies.push((p.display().to_string(), format!("::/EFI/tandem/{name}")));
    }
    fat_copy(
        &img,
        epoch,
        &["::/EFI", "::/EFI/BOOT", "::/EFI/tandem"],
        &copies,
    )?;
    Ok(img)
}

/// systemd-boot's binary (Debian `systemd-boot-efi`).
pub const SYSTEMD_BOOT_EFI: &str = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi";

/// systemd-boot's `loader.conf`: no menu, no editor (a kernel command
/// line typed at the console would bypass dm-verity), and no `default`:
/// the agent's entries decide (docs/boot.md).
pub const LOADER_CONF: &str = "timeout 0\neditor no\n";

/// Slot a's first entry: what the agent's systemd-boot backend would write
/// for it (generation 1, committed), with its dm-verity parameters.
pub fn initial_sdboot_entry(cmdline: &str, version: &str, verity_a: Option<&str>) -> String {
    use tandem::boot::sdboot::entry::Layout;
    use tandem::slot::SlotGroup;
    let mut layout = Layout {
        options: cmdline.to_string(),
        ..Layout::default()
    };
    if let Some(v) = verity_a {
        layout.extra.insert(SlotGroup::A, v.to_string());
    }
    layout.compose(SlotGroup::A, 1, Some(version))
}

/// Where each slot's unified kernel image lives on the ESP (the agent's
/// `boot.uki`).
pub const UKI_PATH: &str = "/tandem/{slot}/tandem.efi";

/// Slot a's first entry when it boots a unified kernel image: what the
/// agent writes (generation 1, committed); no options, the image's own
/// command line boots.
pub fn initial_uki_entry(version: &str) -> String {
    use tandem::boot::sdboot::entry::Layout;
    let layout = Layout {
        kernel: UKI_PATH.into(),
        initrd: None,
        efi: true,
        ..Layout::default()
    };
    layout.compose(tandem::slot::SlotGroup::A, 1, Some(version))
}

/// The ESP of a systemd-boot disk: the loader as the removable-media
/// default, `loader.conf`, slot a's entry, kernel and initrd.
fn sdboot_esp(
    spec: &DiskSpec,
    work: &Path,
    seed: &str,
    epoch: u64,
    slot: &SlotImage<'_>,
) -> Result<std::path::PathBuf, BuildError> {
    let boot = slot.esp_boot.as_ref().ok_or_else(|| {
        BuildError::Step("a systemd-boot disk needs the kernel and initrd for its ESP".into())
    })?;
    if !Path::new(SYSTEMD_BOOT_EFI).is_file() {
        return Err(BuildError::Step(format!(
            "{SYSTEMD_BOOT_EFI} is missing: apt-get install systemd-boot-efi"
        )));
    }
    let img = fat(spec, work, seed, "ESP")?;
    let conf = work.join("loader.conf");
    let entry = work.join("tandem-a.conf");
    let entry_text = match &boot.uki {
        Some(_) => initial_uki_entry(&boot.label),
        None => initial_sdboot_entry(&boot.cmdline, &boot.label, slot.verity_args.as_deref()),
    };
    for (p, text) in [(&conf, LOADER_CONF.to_string()), (&entry, entry_text)] {
        std::fs::write(p, text).map_err(|e| BuildError::io(p, e))?;
    }
    let loader = match &boot.signer {
        Some(k) => {
            let signed = work.join("systemd-bootx64.signed.efi");
            crate::uki::sign(k, Path::new(SYSTEMD_BOOT_EFI), &signed, epoch)?;
            signed
        }
        None => SYSTEMD_BOOT_EFI.into(),
    };
    let s = |p: &Path| p.display().to_string();
    let slot_files: Vec<(String, String)> = match &boot.uki {
        Some(uki) => vec![(s(uki), format!("::{}", UKI_PATH.replace("{slot}", "a")))],
        None => vec![
            (s(&boot.kernel), "::/tandem/a/vmlinuz".into()),
            (s(&boot.initrd), "::/tandem/a/initrd.img".into()),
        ],
    };
    fat_copy(
        &img,
        epoch,
        &[
            "::/EFI",
            "::/EFI/BOOT",
            "::/loader",
            "::/loader/entries",
            "::/tandem",
            "::/tandem/a",
            "::/tandem/b",
        ],
        &[
            (s(&loader), "::/EFI/BOOT/BOOTX64.EFI".into()),
            (s(&conf), "::/loader/loader.conf".into()),
            (s(&entry), "::/loader/entries/tandem-a.conf".into()),
        ]
        .into_iter()
        .chain(slot_files)
        .collect::<Vec<_>>(),
    )?;
    Ok(img)
}

/// U-Boot's boot partition: `/boot.scr` and `/tandem.env` (with slot a's
/// verity parameters, like the grubenv).
fn uboot_boot(
    spec: &DiskSpec,
    work: &Path,
    seed: &str,
    epoch: u64,
    verity_a: Option<&str>,
) -> Result<std::path::PathBuf, BuildError> {
    let img = fat(spec, work, seed, "BOOT")?;
    let scr = work.join("boot.scr");
    crate::uboot::boot_script(work, &scr, epoch)?;
    let env = work.join(tandem::boot::uboot_file::FILE_NAME);
    std::fs::write(&env, crate::uboot::initial_env(verity_a))
        .map_err(|e| BuildError::io(&env, e))?;
    fat_copy(
        &img,
        epoch,
        &[],
        &[
            (scr.display().to_string(), "::/boot.scr".into()),
            (
                env.display().to_string(),
                format!("::/{}", tandem::boot::uboot_file::FILE_NAME),
            ),
        ],
    )?;
    Ok(img)
}

fn copy_at(disk: &Path, offset: u64, src: &Path) -> Result<(), BuildError> {
    let mut d = std::fs::OpenOptions::new()
        .write(true)
        .open(disk)
        .map_err(|e| BuildError::io(disk, e))?;
    d.seek(SeekFrom::Start(offset))
        .map_err(|e| BuildError::io(disk, e))?;
    let mut s = std::fs::File::open(src).map_err(|e| BuildError::io(src, e))?;
    std::io::copy(&mut s, &mut d).map_err(|e| BuildError::io(disk, e))?;
    d.flush().map_err(|e| BuildError::io(disk, e))
}

/// The factory image for slot a.
pub struct SlotImage<'a> {
    pub path: &'a Path,
    /// Kernel parameters for its dm-verity (written into the boot env).
    pub verity_args: Option<String>,
    /// systemd-boot: what slot a boots from the ESP.
    pub esp_boot: Option<EspBoot>,
}

/// A slot's kernel, initrd and command line on the ESP (systemd-boot).
pub struct EspBoot {
    pub kernel: std::path::PathBuf,
    pub initrd: std::path::PathBuf,
    pub cmdline: String,
    /// Shown in the entry's title (the image version).
    pub label: String,
    /// Slot a's unified kernel image (recipes with `uki = true`): the
    /// entry boots it instead of kernel + initrd.
    pub uki: Option<std::path::PathBuf>,
    /// Secure Boot: systemd-boot is signed with this key.
    pub signer: Option<crate::uki::Signer>,
}

/// Builds the disk image at `out`.
pub fn build(
    spec: &DiskSpec,
    chain: BootChain,
    slot: &SlotImage<'_>,
    work: &Path,
    out: &Path,
    seed: &str,
    epoch: u64,
) -> Result<(), BuildError> {
    let slot_image = slot.path;
    let slot_len = std::fs::metadata(slot_image)
        .map_err(|e| BuildError::io(slot_image, e))?
        .len();
    if slot_len > spec.slot_mib * MIB {
        return Err(BuildError::Step(format!(
            "slot image is {slot_len} bytes, larger than the {} MiB slot partition",
            spec.slot_mib
        )));
    }
    let (esp, esp_type) = match chain {
        BootChain::Grub => (
            esp(spec, work, seed, epoch, slot.verity_args.as_deref())?,
            "ef00",
        ),
        BootChain::SdBoot => (sdboot_esp(spec, work, seed, epoch, slot)?, "ef00"),
        // Microsoft basic data: a plain FAT partition, as U-Boot boards use.
        BootChain::UbootFile => (
            uboot_boot(spec, work, seed, epoch, slot.verity_args.as_deref())?,
            "0700",
        ),
    };
    let data = work.join("data.img");
    let _ = std::fs::remove_file(&data);
    let f = std::fs::File::create(&data).map_err(|e| BuildError::io(&data, e))?;
    f.set_len(spec.data_mib * MIB)
        .map_err(|e| BuildError::io(&data, e))?;
    drop(f);
    let du = derive_uuid(seed, "data");
    run_env(
        None,
        "mkfs.ext4",
        &[
            "-q",
            "-F",
            "-L",
            "tandem-data",
            "-U",
            &du,
            "-E",
            &format!("root_owner=0:0,hash_seed={du}"),
            &data.display().to_string(),
        ],
        &[("E2FSPROGS_FAKE_TIME", epoch.to_string())],
    )?;
    let total = (1 + spec.esp_mib + 2 * spec.slot_mib + spec.data_mib + 1) * MIB;
    let _ = std::fs::remove_file(out);
    let f = std::fs::File::create(out).map_err(|e| BuildError::io(out, e))?;
    f.set_len(total).map_err(|e| BuildError::io(out, e))?;
    drop(f);
    let o = out.display().to_string();
    let g = |w: &str| derive_uuid(seed, w);
    run(
        "sgdisk",
        &[
            "-o",
            "-U",
            &g("disk"),
            &format!("-n1:1M:+{}M", spec.esp_mib),
            &format!("-t1:{esp_type}"),
            &format!("-c1:{}", chain.partition_name()),
            &format!("-u1:{}", g("p1")),
            &format!("-n2:0:+{}M", spec.slot_mib),
            "-t2:8300",
            "-c2:tandem-root-a",
            &format!("-u2:{}", g("p2")),
            &format!("-n3:0:+{}M", spec.slot_mib),
            "-t3:8300",
            "-c3:tandem-root-b",
            &format!("-u3:{}", g("p3")),
            &format!("-n4:0:+{}M", spec.data_mib),
            "-t4:8300",
            "-c4:tandem-data",
            &format!("-u4:{}", g("p4")),
            &o,
        ],
    )?;
    let start = |n: u64| {
        MIB + (n > 1) as u64 * spec.esp_mib * MIB + n.saturating_sub(2) * spec.slot_mib * MIB
    };
    copy_at(out, start(1), &esp)?;
    copy_at(out, start(2), slot_image)?;
    copy_at(
        out,
        MIB + spec.esp_mib * MIB + 2 * spec.slot_mib * MIB,
        &data,
    )?;
    // Check our arithmetic against what sgdisk laid out.
    let info = run("sgdisk", &["-i", "4", &o])?;
    let first: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("First sector: "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| BuildError::Step(format!("cannot read sgdisk -i 4:\n{info}")))?;
    if first * 512 != MIB + spec.esp_mib * MIB + 2 * spec.slot_mib * MIB {
        return Err(BuildError::Step(format!(
            "partition 4 starts at sector {first}, not where it was written"
        )));
    }
    Ok(())
}

//! What an aarch64 disk needs for U-Boot (backend `uboot-file`): the boot
//! script compiled from `agent/dist/uboot/boot.cmd`, the initial A/B state
//! file `tandem.env`, and the board environment for QEMU `virt` (pflash
//! unit 1), which only has to find and run that script.

use std::path::Path;

use crate::tool::{run, run_env, BuildError};

const BOOT_CMD: &str = include_str!("../../agent/dist/uboot/boot.cmd");
/// Size of Debian's `qemu_arm64` environment (CONFIG_ENV_SIZE, FACTS.md).
pub const ENV_SIZE: &str = "0x40000";

/// The state a fresh disk starts with: boot a (committed), never b
/// (empty); slot a's dm-verity kernel parameters when its image has them.
pub fn initial_env(verity_a: Option<&str>) -> Vec<u8> {
    tandem::boot::uboot_file::encode(&tandem::boot::abvars::factory(verity_a))
        .expect("valid names, fits")
}

/// The board environment for QEMU `virt` with Debian's U-Boot 2023.01
/// `qemu_arm64`. A valid environment in flash replaces the built-in one
/// entirely, so the load addresses of the default environment are
/// repeated here. `bootcmd` probes PCI and virtio, then loads and runs
/// `boot.scr` from partition 1 of the first virtio disk; the script takes
/// it from there. Pure.
pub fn board_env() -> String {
    let vars: &[(&str, &str)] = &[
        ("arch", "arm"),
        ("baudrate", "115200"),
        ("board", "qemu-arm"),
        ("board_name", "qemu-arm"),
        ("cpu", "armv8"),
        ("vendor", "emulation"),
        // No 2 s countdown per boot (FACTS.md).
        ("bootdelay", "0"),
        ("fdt_addr", "0x40000000"),
        ("fdt_high", "0xffffffff"),
        ("initrd_high", "0xffffffff"),
        ("scriptaddr", "0x40200000"),
        ("loadaddr", "0x40200000"),
        ("pxefile_addr_r", "0x40300000"),
        ("kernel_addr_r", "0x40400000"),
        ("ramdisk_addr_r", "0x44000000"),
        ("devtype", "virtio"),
        ("devnum", "0"),
        (
            "bootcmd",
            "pci enum; virtio scan; \
             if load ${devtype} ${devnum}:1 ${scriptaddr} boot.scr; then source ${scriptaddr}; fi; \
             echo tandem: no usable boot.scr on ${devtype} ${devnum}:1",
        ),
    ];
    vars.iter().map(|(k, v)| format!("{k}={v}\n")).collect()
}

/// Compiles boot.cmd into `out` (a legacy script image; its time stamp
/// is `epoch`).
pub fn boot_script(work: &Path, out: &Path, epoch: u64) -> Result<(), BuildError> {
    let cmd = work.join("boot.cmd");
    std::fs::write(&cmd, BOOT_CMD).map_err(|e| BuildError::io(&cmd, e))?;
    run_env(
        None,
        "mkimage",
        &[
            "-A",
            "arm64",
            "-T",
            "script",
            "-C",
            "none",
            "-n",
            "tandem A/B",
            "-d",
            &cmd.display().to_string(),
            &out.display().to_string(),
        ],
        &[("SOURCE_DATE_EPOCH", epoch.to_string())],
    )
    .map(drop)
}

/// Writes [`board_env`] as a binary environment (`mkenvimage`, with CRC)
/// to `out`, for pflash unit 1. QEMU wants the flash file padded to
/// 64 MiB; the test rig does that on a copy.
pub fn env_image(work: &Path, out: &Path) -> Result<(), BuildError> {
    let txt = work.join("uboot-env.txt");
    std::fs::write(&txt, board_env()).map_err(|e| BuildError::io(&txt, e))?;
    run(
        "mkenvimage",
        &[
            "-s",
            ENV_SIZE,
            "-o",
            &out.display().to_string(),
            &txt.display().to_string(),
        ],
    )
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_state_boots_a_only() {
        let env = tandem::boot::uboot_file::decode(&initial_env(None)).unwrap();
        assert_eq!(env["TANDEM_ORDER"], "a b");
        assert_eq!(env["TANDEM_A_OK"], "1");
        assert_eq!(env["TANDEM_B_OK"], "0");
        assert!(!env.contains_key("TANDEM_A_TRIES"));
        assert!(!env.contains_key("TANDEM_A_VERITY"));
        let args = "tandem.verity.roothash=00 tandem.verity.hashoffset=4096";
        let env = tandem::boot::uboot_file::decode(&initial_env(Some(args))).unwrap();
        assert_eq!(env["TANDEM_A_VERITY"], args);
        assert!(!env.contains_key("TANDEM_B_VERITY"));
    }

    #[test]
    fn board_env_runs_boot_scr_at_once() {
        let env = board_env();
        assert!(env.contains("bootdelay=0\n"));
        assert!(env.contains("kernel_addr_r=0x40400000\n"));
        let bootcmd = env.lines().find(|l| l.starts_with("bootcmd=")).unwrap();
        assert!(bootcmd.contains("boot.scr") && bootcmd.contains("source"));
        assert!(env.lines().all(|l| l.split_once('=').is_some()));
    }
}

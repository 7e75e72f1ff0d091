//! Unified kernel images: systemd's EFI stub with the kernel, the
//! initramfs, an os-release and the command line as PE sections, one per
//! slot group because the command line names the slot (`tandem.slot=b`)
//! and carries the rootfs's dm-verity root hash. Debian 12 has no ukify;
//! `objcopy` adds the sections at the addresses ukify uses for a stub of
//! this size. With a Secure Boot key, `sbsign` signs the image (and
//! systemd-boot), so the firmware refuses any changed byte, the command
//! line included.

use std::path::{Path, PathBuf};

use crate::tool::{run, BuildError};

/// systemd-boot-efi's stub (252 on Debian 12).
pub const STUB: &str = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub";

/// A Secure Boot signing key and its certificate (PEM), enrolled in the
/// firmware's `db`.
#[derive(Debug, Clone)]
pub struct Signer {
    pub key: PathBuf,
    pub cert: PathBuf,
}

/// Section addresses (the stub ends below 0x20000; the kernel's own
/// alignment needs it on a 2 MiB boundary-friendly address).
const OSREL_VMA: &str = "0x20000";
const CMDLINE_VMA: &str = "0x30000";
const LINUX_VMA: &str = "0x2000000";

/// What one image holds.
pub struct Parts<'a> {
    pub kernel: &'a Path,
    pub initrd: &'a Path,
    pub cmdline: &'a str,
    /// os-release text for `.osrel` (systemd-boot shows PRETTY_NAME).
    pub osrel: &'a str,
}

/// Builds the image at `out` (via `work`), stamped with `epoch` (the
/// build's SOURCE_DATE_EPOCH) and signed if `signer` is given.
pub fn build(
    parts: &Parts<'_>,
    work: &Path,
    out: &Path,
    epoch: u64,
    signer: Option<&Signer>,
) -> Result<(), BuildError> {
    if !Path::new(STUB).is_file() {
        return Err(BuildError::Step(format!(
            "{STUB} is missing: apt-get install systemd-boot-efi"
        )));
    }
    if parts.cmdline.contains(['\n', '\0']) {
        return Err(BuildError::Step(
            "a unified kernel image's command line must be one line".into(),
        ));
    }
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "uki".into());
    let osrel = work.join(format!("{name}.osrel"));
    let cmdline = work.join(format!("{name}.cmdline"));
    for (p, text) in [(&osrel, parts.osrel), (&cmdline, parts.cmdline)] {
        std::fs::write(p, text).map_err(|e| BuildError::io(p, e))?;
    }
    // The initrd goes on the next 2 MiB boundary past the kernel.
    let klen = std::fs::metadata(parts.kernel)
        .map_err(|e| BuildError::io(parts.kernel, e))?
        .len();
    let initrd_vma = (0x200_0000 + klen).next_multiple_of(0x20_0000);
    let unsigned = if signer.is_some() {
        work.join(format!("{name}.unsigned"))
    } else {
        out.to_path_buf()
    };
    let s = |p: &Path| p.display().to_string();
    run(
        "objcopy",
        &[
            "--add-section",
            &format!(".osrel={}", s(&osrel)),
            "--change-section-vma",
            &format!(".osrel={OSREL_VMA}"),
            "--add-section",
            &format!(".cmdline={}", s(&cmdline)),
            "--change-section-vma",
            &format!(".cmdline={CMDLINE_VMA}"),
            "--add-section",
            &format!(".linux={}", s(parts.kernel)),
            "--change-section-vma",
            &format!(".linux={LINUX_VMA}"),
            "--add-section",
            &format!(".initrd={}", s(parts.initrd)),
            "--change-section-vma",
            &format!(".initrd={initrd_vma:#x}"),
            STUB,
            &s(&unsigned),
        ],
    )?;
    normalize(&unsigned, epoch)?;
    if let Some(k) = signer {
        sign(k, &unsigned, out, epoch)?;
    }
    Ok(())
}

/// objcopy stamps a PE image with the time it ran (binutils 2.40 ignores
/// SOURCE_DATE_EPOCH): set the COFF `TimeDateStamp` to `epoch` and
/// recompute the optional header's `CheckSum`, so builds are reproducible.
/// ([`sign`] pins the signing time the same way.)
pub fn normalize(path: &Path, epoch: u64) -> Result<(), BuildError> {
    let mut d = std::fs::read(path).map_err(|e| BuildError::io(path, e))?;
    let bad = || BuildError::Step(format!("{}: not a PE image", path.display()));
    let pe = d
        .get(0x3c..0x40)
        .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
        .ok_or_else(bad)?;
    if d.get(pe..pe + 4) != Some(b"PE\0\0") || d.len() < pe + 24 + 68 {
        return Err(bad());
    }
    let stamp = u32::try_from(epoch).unwrap_or(u32::MAX);
    d[pe + 8..pe + 12].copy_from_slice(&stamp.to_le_bytes());
    let ck = pe + 24 + 64;
    d[ck..ck + 4].fill(0);
    let sum = pe_checksum(&d);
    d[ck..ck + 4].copy_from_slice(&sum.to_le_bytes());
    std::fs::write(path, &d).map_err(|e| BuildError::io(path, e))
}

/// The PE checksum: 16-bit one's-complement-style sum with carries folded,
/// plus the file length (the checksum field itself must be zero).
pub fn pe_checksum(d: &[u8]) -> u32 {
    let mut s: u64 = 0;
    for w in d.chunks(2) {
        let v = u16::from_le_bytes([w[0], *w.get(1).unwrap_or(&0)]);
        s += u64::from(v);
        s = (s & 0xffff) + (s >> 16);
    }
    s = (s & 0xffff) + (s >> 16);
    (s as u32).wrapping_add(d.len() as u32)
}

/// Signs an EFI binary for Secure Boot. sbsign puts the signing time into
/// the signature (OpenSSL's PKCS#7 `signingTime`): it runs under
/// `faketime` at `epoch` (the build's SOURCE_DATE_EPOCH), so a rebuild
/// signs byte for byte the same. Without faketime, the signature holds the
/// time of the build and the output is not reproducible (said on stderr).
pub fn sign(signer: &Signer, input: &Path, out: &Path, epoch: u64) -> Result<(), BuildError> {
    for p in [&signer.key, &signer.cert] {
        if !p.is_file() {
            return Err(BuildError::Step(format!(
                "Secure Boot signing: {} is not a file",
                p.display()
            )));
        }
    }
    let s = |p: &Path| p.display().to_string();
    let args = [
        "--key".to_string(),
        s(&signer.key),
        "--cert".into(),
        s(&signer.cert),
        "--output".into(),
        s(out),
        s(input),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    if crate::tool::have("faketime") {
        // libfaketime's absolute form: "@YYYY-MM-DD HH:MM:SS".
        let at = format!(
            "@{}",
            tandem::timefmt::rfc3339(epoch)
                .trim_end_matches('Z')
                .replace('T', " ")
        );
        let mut with: Vec<&str> = vec!["-f", &at, "sbsign"];
        with.extend(&args);
        run("faketime", &with)?;
    } else {
        eprintln!("tandem-image: no faketime: the Secure Boot signatures hold the current time (the build is not reproducible)");
        run("sbsign", &args)?;
    }
    Ok(())
}

/// The `.osrel` of slot `g`'s image of `version`.
pub fn osrel(version: &str, g: &str) -> String {
    format!(
        "ID=tandem\nNAME=\"Tandem\"\nPRETTY_NAME=\"Tandem {version} ({g})\"\nIMAGE_ID=tandem\nIMAGE_VERSION={version}\n"
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn checksum_of_a_known_image() {
        // The stub as Debian ships it carries a valid checksum: zero the
        // field and recompute it.
        // scripts/setup.sh installs systemd-boot-efi: a missing stub fails.
        let mut d = std::fs::read(super::STUB)
            .unwrap_or_else(|e| panic!("{}: {e} (apt-get install systemd-boot-efi)", super::STUB));
        let pe = u32::from_le_bytes(d[0x3c..0x40].try_into().unwrap()) as usize;
        let ck = pe + 24 + 64;
        let shipped = u32::from_le_bytes(d[ck..ck + 4].try_into().unwrap());
        assert_ne!(shipped, 0, "the stub carries a checksum");
        d[ck..ck + 4].fill(0);
        assert_eq!(super::pe_checksum(&d), shipped);
        assert_eq!(super::pe_checksum(&[1, 0, 2]), 3 + 3);
    }
}

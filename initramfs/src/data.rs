//! The data partition (`tandem-data`): what it holds, judged from its
//! first MiB, and the sequence that brings it up or gives up on it. Pure:
//! the side effects are behind [`DataOps`], which `init` implements with
//! `sys` and the tests with a fake.
//!
//! The rules (docs/disk-layout.md, "The data partition"):
//!
//! - **blank** (its first MiB all zero, or all of it if smaller): format it
//!   ext4 with `mke2fs`, then mount it. Zeroing the first MiB is also how an
//!   operator asks for a new filesystem on purpose (`dd if=/dev/zero
//!   of=/dev/tandem/data bs=1M count=1`): a one-shot act on the device
//!   itself, unlike a kernel parameter, which a config file could repeat on
//!   every boot;
//! - **ext2/3/4**: mount it; if that fails, `e2fsck -p` and mount again;
//! - anything else — another filesystem, LUKS, or bytes that are neither a
//!   superblock nor zeros (a damaged superblock, a torn write): never
//!   formatted, never checked; the system boots **degraded**.
//!
//! Degraded means: a tmpfs stands in for the partition (so `/var` and the
//! `/etc` overlay's upper layer live in memory and vanish at the next
//! boot), the console says so, and a marker file tells the agent. It never
//! fails the boot: both slots share the one data partition, so failing
//! would loop forever between them and help nothing.

use crate::fsmagic::{self, Fs};

/// How much of the partition [`classify`] looks at.
pub const HEAD_LEN: usize = 1 << 20;
/// The formatter, when the initramfs has one.
pub const MKE2FS: &str = "/sbin/mke2fs";
/// The checker, when the initramfs has one.
pub const E2FSCK: &str = "/sbin/e2fsck";
/// The marker of a degraded boot, under the new root's `/run` (a tmpfs the
/// initramfs mounts, which `switch_root` carries over): first line the
/// reason, then `device=/dev/…`.
pub const DEGRADED_MARKER: &str = "run/tandem/data-degraded";

/// What the first MiB says the partition holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// All zero.
    Blank,
    /// An ext2/3/4 superblock.
    Ext,
    /// Something we know and must not touch.
    Other(&'static str),
    /// Neither zeros nor a known signature.
    Unrecognized,
}

/// Signatures of what a data partition must never be formatted over:
/// (offset, magic, name).
const SIGNATURES: &[(usize, &[u8], &str)] = &[
    (0, b"LUKS\xba\xbe", "LUKS (an encrypted volume)"),
    (0, b"SKUL\xba\xbe", "LUKS2 (an encrypted volume)"),
    (0, b"XFSB", "XFS"),
    (0x10040, b"_BHRfS_M", "btrfs"),
    (1024, &0xE0F5_E1E2u32.to_le_bytes(), "erofs"),
    (1024, &0xF2F5_2010u32.to_le_bytes(), "f2fs"),
    (4086, b"SWAPSPACE2", "swap"),
    (82, b"FAT32   ", "FAT32"),
    (54, b"FAT16   ", "FAT16"),
    (54, b"FAT12   ", "FAT12"),
];

/// Judges the partition from its first [`HEAD_LEN`] bytes (fewer only if
/// the partition is that small).
pub fn classify(head: &[u8]) -> Content {
    // A LUKS header is authoritative: whatever it covers is ciphertext.
    for (at, magic, name) in &SIGNATURES[..2] {
        if head.get(*at..at + magic.len()) == Some(magic) {
            return Content::Other(name);
        }
    }
    match fsmagic::detect(head) {
        Some(Fs::Ext4) => return Content::Ext,
        Some(Fs::Squashfs) => return Content::Other("squashfs"),
        None => {}
    }
    for (at, magic, name) in &SIGNATURES[2..] {
        if head.get(*at..at + magic.len()) == Some(magic) {
            return Content::Other(name);
        }
    }
    if !head.is_empty() && head.iter().all(|&b| b == 0) {
        Content::Blank
    } else {
        Content::Unrecognized
    }
}

/// What the initramfs carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tools {
    pub mkfs: bool,
    pub fsck: bool,
}

/// The side effects of bringing the partition up. Errors are messages for
/// the console and the marker.
pub trait DataOps {
    /// `mke2fs -t ext4` the partition.
    fn format(&mut self) -> Result<(), String>;
    /// Mount it (ext4, nosuid, nodev).
    fn mount(&mut self) -> Result<(), String>;
    /// `e2fsck -p`; its exit status.
    fn fsck(&mut self) -> Result<i32, String>;
}

/// How it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The partition is mounted. `formatted`: it was blank and is new;
    /// `repaired`: `e2fsck -p` fixed it first.
    Mounted { formatted: bool, repaired: bool },
    /// Not mounted; boot on a tmpfs instead, for this reason.
    Degraded(String),
}

const ZERO_HINT: &str = "to have it formatted, zero its first MiB \
     (dd if=/dev/zero of=/dev/tandem/data bs=1M count=1) and reboot";

/// Brings the partition up as the module doc says.
pub fn bring_up(content: &Content, tools: Tools, ops: &mut dyn DataOps) -> Outcome {
    let degraded = |why: String| Outcome::Degraded(why);
    match content {
        Content::Other(what) => {
            return degraded(format!(
                "the data partition holds {what}, not ext4: left untouched; {ZERO_HINT}"
            ))
        }
        Content::Unrecognized => {
            return degraded(format!(
                "the data partition holds no ext4 superblock and is not blank (its first MiB \
                 is not all zero): left untouched; repair it (e2fsck -b 32768) or, {ZERO_HINT}"
            ))
        }
        Content::Blank if !tools.mkfs => {
            return degraded(format!(
                "the data partition is blank and this initramfs has no {MKE2FS} to format it"
            ))
        }
        Content::Blank => {
            if let Err(e) = ops.format() {
                return degraded(format!("formatting the blank data partition failed: {e}"));
            }
            return match ops.mount() {
                Ok(()) => Outcome::Mounted {
                    formatted: true,
                    repaired: false,
                },
                Err(e) => degraded(format!(
                    "the newly formatted data partition does not mount: {e}"
                )),
            };
        }
        Content::Ext => {}
    }
    let first = match ops.mount() {
        Ok(()) => {
            return Outcome::Mounted {
                formatted: false,
                repaired: false,
            }
        }
        Err(e) => e,
    };
    if !tools.fsck {
        return degraded(format!(
            "the data partition (ext4) does not mount ({first}) and this initramfs has no \
             {E2FSCK} to check it"
        ));
    }
    match ops.fsck() {
        // 0: clean; 1: errors corrected; 2: corrected, reboot advised
        // (for a mounted root; ours is not mounted yet).
        Ok(0..=2) => {}
        Ok(code) => {
            return degraded(format!(
                "the data partition (ext4) does not mount ({first}) and e2fsck -p could not \
                 repair it (exit status {code}); run e2fsck by hand"
            ))
        }
        Err(e) => {
            return degraded(format!(
                "the data partition (ext4) does not mount ({first}) and e2fsck did not run: {e}"
            ))
        }
    }
    match ops.mount() {
        Ok(()) => Outcome::Mounted {
            formatted: false,
            repaired: true,
        },
        Err(e) => degraded(format!(
            "the data partition (ext4) does not mount even after e2fsck -p: {e}"
        )),
    }
}

/// The marker file's text.
pub fn marker_text(reason: &str, device: &str) -> String {
    let one_line: String = reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    format!("{one_line}\ndevice={device}\n")
}

#[cfg(test)]
mod tests;

//! Which filesystem a device holds, from its superblock magic. Pure: give
//! it the first [`PROBE_LEN`] bytes of the device.

/// Bytes to read from the start of a device for [`detect`].
pub const PROBE_LEN: usize = 4096;

/// The filesystems a slot or the data partition may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fs {
    /// squashfs: `hsqs` at offset 0.
    Squashfs,
    /// ext2/3/4: 0xEF53 (little endian) at offset 1024 + 56; mounted with
    /// the ext4 driver, which handles all three.
    Ext4,
}

impl Fs {
    /// The `mount(2)` filesystem type.
    pub fn fstype(self) -> &'static str {
        match self {
            Fs::Squashfs => "squashfs",
            Fs::Ext4 => "ext4",
        }
    }
}

const SQUASHFS_MAGIC: &[u8; 4] = b"hsqs";
const EXT_MAGIC_OFFSET: usize = 1024 + 56;
const EXT_MAGIC: [u8; 2] = 0xEF53u16.to_le_bytes();

/// The filesystem whose magic `head` starts with, if any we know.
pub fn detect(head: &[u8]) -> Option<Fs> {
    if head.starts_with(SQUASHFS_MAGIC) {
        return Some(Fs::Squashfs);
    }
    if head.get(EXT_MAGIC_OFFSET..EXT_MAGIC_OFFSET + 2) == Some(&EXT_MAGIC[..]) {
        return Some(Fs::Ext4);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext() -> Vec<u8> {
        let mut b = vec![0; PROBE_LEN];
        b[1080] = 0x53;
        b[1081] = 0xef;
        b
    }

    #[test]
    fn table() {
        let mut sq = vec![0; PROBE_LEN];
        sq[..4].copy_from_slice(b"hsqs");
        let mut big_endian_ext = vec![0; PROBE_LEN];
        big_endian_ext[1080] = 0xef;
        big_endian_ext[1081] = 0x53;
        let cases: &[(&str, Vec<u8>, Option<Fs>)] = &[
            ("squashfs", sq, Some(Fs::Squashfs)),
            ("ext4", ext(), Some(Fs::Ext4)),
            ("zeros", vec![0; PROBE_LEN], None),
            ("empty", vec![], None),
            ("ext magic cut off", ext()[..1081].to_vec(), None),
            ("byte-swapped ext magic", big_endian_ext, None),
            ("sqsh (big-endian squashfs)", b"sqsh".to_vec(), None),
        ];
        for (what, head, want) in cases {
            assert_eq!(detect(head), *want, "{what}");
        }
    }

    #[test]
    fn real_mkfs_ext4_image_is_detected() {
        // Guarded: e2fsprogs may be absent on a developer machine.
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("e.img");
        std::fs::File::create(&img)
            .unwrap()
            .set_len(4 << 20)
            .unwrap();
        let ok = std::process::Command::new("mke2fs")
            .args(["-q", "-F", "-t", "ext4"])
            .arg(&img)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            eprintln!("mke2fs not available; skipped");
            return;
        }
        let head = std::fs::read(&img).unwrap();
        assert_eq!(detect(&head[..PROBE_LEN]), Some(Fs::Ext4));
    }
}

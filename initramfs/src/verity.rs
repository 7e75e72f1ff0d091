//! The dm-verity target line for a slot whose hash tree follows its
//! filesystem on the same partition, as `veritysetup format --hash-offset`
//! writes it (docs/disk-layout.md, "A slot"). Pure.
//!
//! Target parameters (kernel Documentation/admin-guide/device-mapper/verity.rst,
//! and cryptsetup's `get_dm_verity_params`):
//!
//! ```text
//! <version> <data_dev> <hash_dev> <data_block_size> <hash_block_size>
//! <num_data_blocks> <hash_start_block> <algorithm> <digest> <salt>
//! ```
//!
//! `veritysetup format` writes a 512-byte verity superblock at the hash
//! offset, so the tree itself starts one hash block later:
//! `hash_start_block = hash_offset / 4096 + 1` (cryptsetup's
//! `VERITY_hash_offset_block`). The filesystem is padded to the hash
//! offset, so `num_data_blocks = hash_offset / 4096`.
//!
//! One optional argument, `restart_on_corruption`: a block that does not
//! match the tree, read at any time (by the initramfs or long after
//! `switch_root`), restarts the machine at once instead of failing that
//! read with EIO. An EIO deep inside a running system is an error some
//! program may ignore or retry forever, on a device nobody watches; a
//! restart is counted by the bootloader like any failed try (during a
//! trial, the other group boots once the tries run out). Restart rather
//! than `panic_on_corruption`: it does not depend on `panic=N` being on
//! the command line (a slot's arguments could drop it, and a panic without
//! it hangs), and the kernel still logs the corrupted block first
//! (`device-mapper: verity: ...: data block N is corrupted`).

use tandem_bootparams::Verity;

const VERITY_BLOCK: u64 = tandem_bootparams::BLOCK_SIZE as u64;

/// Sectors of 512 bytes, the unit of device-mapper target lengths.
const SECTOR: u64 = 512;

/// A verity target over one device (data and hash tree on it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// `MAJOR:MINOR` (or a path) of the slot partition.
    pub device: String,
    pub data_blocks: u64,
    pub hash_start_block: u64,
    pub root_hash: String,
    pub salt: Option<String>,
}

impl Table {
    /// The table for `params` over `device` (`MAJOR:MINOR`).
    pub fn new(device: &str, params: &Verity) -> Table {
        Table {
            device: device.to_string(),
            data_blocks: params.hash_offset() / VERITY_BLOCK,
            hash_start_block: params.hash_offset() / VERITY_BLOCK + 1,
            root_hash: params.root_hash().to_string(),
            salt: params.salt().map(str::to_string),
        }
    }

    /// Target type name for `DM_TABLE_LOAD`.
    pub const TARGET: &'static str = "verity";

    /// Length of the mapped device in 512-byte sectors.
    pub fn sectors(&self) -> u64 {
        self.data_blocks * (VERITY_BLOCK / SECTOR)
    }

    /// The optional arguments: their count, then each.
    pub const OPTIONS: &'static str = "1 restart_on_corruption";

    /// The target parameters passed to the kernel.
    pub fn params(&self) -> String {
        format!(
            "1 {dev} {dev} {bs} {bs} {data} {hash} sha256 {root} {salt} {opts}",
            dev = self.device,
            bs = VERITY_BLOCK,
            data = self.data_blocks,
            hash = self.hash_start_block,
            root = self.root_hash,
            salt = self.salt.as_deref().unwrap_or("-"),
            opts = Self::OPTIONS,
        )
    }

    /// The whole line as `dmsetup table` prints it (for logs and tests).
    pub fn dmsetup_line(&self) -> String {
        format!("0 {} {} {}", self.sectors(), Self::TARGET, self.params())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: &str = "d5a6a8d3f1c0b7e4e3c1c7d1b3cf0a6f0e8b2a4d9c6b7e1f2a3b4c5d6e7f8091";
    const SALT: &str = "2ba5a1c5f83c0b7a8e46e4c5b2bd6a1e5b5fbb0a4b7e7d9c2f1a3e4d5c6b7a89";

    #[test]
    fn matches_dmsetup_table_for_veritysetup_open() {
        // `veritysetup format --hash-offset=2097152 img img` on a 2 MiB
        // filesystem, then `veritysetup open --restart-on-corruption` and
        // `dmsetup table` print:
        // 0 4096 verity 1 254:2 254:2 4096 4096 512 513 sha256 <root> <salt> 1 restart_on_corruption
        let t = Table::new("254:2", &Verity::new(ROOT, 2 << 20, Some(SALT)).unwrap());
        assert_eq!(
            t.dmsetup_line(),
            format!("0 4096 verity 1 254:2 254:2 4096 4096 512 513 sha256 {ROOT} {SALT} 1 restart_on_corruption")
        );
        assert_eq!(
            t.params(),
            format!("1 254:2 254:2 4096 4096 512 513 sha256 {ROOT} {SALT} 1 restart_on_corruption")
        );
    }

    #[test]
    fn no_salt_is_a_dash() {
        let t = Table::new("8:3", &Verity::new(ROOT, 4096, None).unwrap());
        assert_eq!(
            t.dmsetup_line(),
            format!("0 8 verity 1 8:3 8:3 4096 4096 1 2 sha256 {ROOT} - 1 restart_on_corruption")
        );
    }
}

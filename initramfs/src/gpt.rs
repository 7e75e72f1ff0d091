//! The GUID partition table, as far as the initramfs needs it: which
//! partition of a disk carries a given unique partition GUID (the
//! `root=PARTUUID=` the bootloader passes). The kernel does not put the
//! GUID in sysfs, so the table is read from the disk. Pure: give it the
//! bytes of LBA 1 and of the entry array.
//!
//! Layout (UEFI 2.10, 5.3): the header at LBA 1 starts with `EFI PART`;
//! at byte 72 the entry array's LBA (u64), at 80 the number of entries
//! (u32), at 84 the size of one entry (u32). An entry: type GUID (16
//! bytes, all zero = unused), unique GUID (16), first LBA (u64), last LBA
//! (u64), attributes (u64), name (72 bytes of UTF-16LE). A GUID's first
//! three fields are little endian in the table, the last two big endian.
//!
//! No CRC check here: the caller compares the entry's first LBA with the
//! start the kernel reports for that partition, which is stronger (the
//! kernel's own, CRC-checked, view must agree).

/// Signature at the start of the header.
pub const SIGNATURE: &[u8; 8] = b"EFI PART";
/// The largest entry array read (128 entries of 128 bytes is usual).
pub const MAX_ARRAY: u64 = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GptError {
    #[error("no GPT header (no \"EFI PART\" at LBA 1)")]
    NoHeader,
    #[error("GPT header: {0}")]
    Bad(&'static str),
}

/// Where the entry array is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub entries_lba: u64,
    pub count: u32,
    pub entry_size: u32,
}

impl Header {
    /// Bytes of the entry array.
    pub fn array_len(&self) -> u64 {
        u64::from(self.count) * u64::from(self.entry_size)
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Parses the header from the bytes of LBA 1.
pub fn parse_header(lba1: &[u8]) -> Result<Header, GptError> {
    if lba1.len() < 92 || &lba1[..8] != SIGNATURE {
        return Err(GptError::NoHeader);
    }
    let h = Header {
        entries_lba: u64_at(lba1, 72),
        count: u32_at(lba1, 80),
        entry_size: u32_at(lba1, 84),
    };
    if h.entry_size < 128 || !h.entry_size.is_multiple_of(8) {
        return Err(GptError::Bad("entry size below 128 or not a multiple of 8"));
    }
    if h.entries_lba < 2 || h.array_len() > MAX_ARRAY {
        return Err(GptError::Bad("entry array out of bounds"));
    }
    Ok(h)
}

/// One used entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// 1-based, as the kernel numbers partitions (`PARTN=`).
    pub number: u32,
    /// Lowercase `8-4-4-4-12`.
    pub unique_guid: String,
    pub first_lba: u64,
    pub name: String,
}

/// A GUID in its text form, from its 16 bytes in table order.
pub fn guid_text(b: &[u8]) -> String {
    let hex = |r: &[u8]| r.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let rev = |r: &[u8]| r.iter().rev().copied().collect::<Vec<u8>>();
    format!(
        "{}-{}-{}-{}-{}",
        hex(&rev(&b[0..4])),
        hex(&rev(&b[4..6])),
        hex(&rev(&b[6..8])),
        hex(&b[8..10]),
        hex(&b[10..16])
    )
}

/// The used entries of an entry array (`array` may be shorter than the
/// header says: the missing entries are left out).
pub fn entries(header: &Header, array: &[u8]) -> Vec<Entry> {
    let size = header.entry_size as usize;
    array
        .chunks_exact(size)
        .take(header.count as usize)
        .enumerate()
        .filter(|(_, e)| e[..16].iter().any(|&b| b != 0))
        .map(|(i, e)| {
            let units: Vec<u16> = e[56..128]
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .take_while(|&u| u != 0)
                .collect();
            Entry {
                number: i as u32 + 1,
                unique_guid: guid_text(&e[16..32]),
                first_lba: u64_at(e, 32),
                name: String::from_utf16_lossy(&units),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header and array as sgdisk writes them (built by hand here; the
    /// sysfs test checks a real sgdisk disk).
    fn table(parts: &[(&str, u64, &str)]) -> (Vec<u8>, Vec<u8>) {
        let mut h = vec![0u8; 512];
        h[..8].copy_from_slice(SIGNATURE);
        h[72..80].copy_from_slice(&2u64.to_le_bytes());
        h[80..84].copy_from_slice(&128u32.to_le_bytes());
        h[84..88].copy_from_slice(&128u32.to_le_bytes());
        let mut a = vec![0u8; 128 * 128];
        for (i, (guid, first, name)) in parts.iter().enumerate() {
            let e = &mut a[i * 128..(i + 1) * 128];
            e[0] = 0xaf; // some type GUID
            let hex: Vec<u8> = guid
                .replace('-', "")
                .as_bytes()
                .chunks(2)
                .map(|c| u8::from_str_radix(std::str::from_utf8(c).unwrap(), 16).unwrap())
                .collect();
            let mut g = hex.clone();
            g[0..4].reverse();
            g[4..6].reverse();
            g[6..8].reverse();
            e[16..32].copy_from_slice(&g);
            e[32..40].copy_from_slice(&first.to_le_bytes());
            for (j, u) in name.encode_utf16().enumerate() {
                e[56 + 2 * j..58 + 2 * j].copy_from_slice(&u.to_le_bytes());
            }
        }
        (h, a)
    }

    #[test]
    fn finds_entries_with_their_guid_and_name() {
        let (h, a) = table(&[
            ("0a1b2c3d-1111-4222-8333-444455556666", 2048, "esp"),
            (
                "c0ffee00-0000-4000-8000-000000000002",
                133120,
                "tandem-root-a",
            ),
        ]);
        let head = parse_header(&h).unwrap();
        assert_eq!(head.array_len(), 16384);
        let e = entries(&head, &a);
        assert_eq!(e.len(), 2);
        assert_eq!(e[1].number, 2);
        assert_eq!(e[1].unique_guid, "c0ffee00-0000-4000-8000-000000000002");
        assert_eq!(e[1].first_lba, 133120);
        assert_eq!(e[1].name, "tandem-root-a");
        assert_eq!(e[0].unique_guid, "0a1b2c3d-1111-4222-8333-444455556666");
        // a short array loses the entries it does not hold
        assert_eq!(entries(&head, &a[..128]).len(), 1);
    }

    #[test]
    fn bad_headers() {
        assert_eq!(parse_header(&[0; 512]), Err(GptError::NoHeader));
        assert_eq!(parse_header(b"EFI PART"), Err(GptError::NoHeader));
        let (mut h, _) = table(&[]);
        h[84..88].copy_from_slice(&64u32.to_le_bytes());
        assert!(matches!(parse_header(&h), Err(GptError::Bad(_))));
        let (mut h, _) = table(&[]);
        h[80..84].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(parse_header(&h), Err(GptError::Bad(_))));
    }
}

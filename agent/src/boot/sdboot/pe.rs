//! Reads one named section of a PE/COFF file: the `.cmdline` of a unified
//! kernel image, the way systemd-boot's `pe_file_locate_sections` finds
//! it (section table after the optional header; the section's bytes are
//! `PointerToRawData` .. + `min(VirtualSize, SizeOfRawData)`). Only
//! headers and the one section are read, never the whole image.

use std::io::{Read, Seek, SeekFrom};

/// Most bytes read of a section (a command line is at most a few KiB).
pub const MAX_SECTION: u32 = 64 << 10;
const MAX_SECTIONS: u16 = 96;

#[derive(Debug, thiserror::Error)]
pub enum PeError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("not a PE image: {0}")]
    Format(&'static str),
}

/// The bytes of section `name` (e.g. `.cmdline`), if the image has it.
pub fn section<R: Read + Seek>(r: &mut R, name: &str) -> Result<Option<Vec<u8>>, PeError> {
    let mut dos = [0u8; 64];
    r.read_exact(&mut dos).map_err(short)?;
    if &dos[..2] != b"MZ" {
        return Err(PeError::Format("no MZ header"));
    }
    let pe_at = u32::from_le_bytes(dos[0x3c..0x40].try_into().expect("4 bytes"));
    r.seek(SeekFrom::Start(pe_at.into()))?;
    // "PE\0\0", then the COFF header.
    let mut coff = [0u8; 24];
    r.read_exact(&mut coff).map_err(short)?;
    if &coff[..4] != b"PE\0\0" {
        return Err(PeError::Format("no PE signature"));
    }
    let sections = u16::from_le_bytes([coff[6], coff[7]]);
    let optional = u16::from_le_bytes([coff[20], coff[21]]);
    if sections > MAX_SECTIONS {
        return Err(PeError::Format("too many sections"));
    }
    r.seek(SeekFrom::Start(u64::from(pe_at) + 24 + u64::from(optional)))?;
    let mut table = vec![0u8; usize::from(sections) * 40];
    r.read_exact(&mut table).map_err(short)?;
    for s in table.chunks_exact(40) {
        let raw_name = &s[..8];
        let len = raw_name.iter().position(|&b| b == 0).unwrap_or(8);
        if &raw_name[..len] != name.as_bytes() {
            continue;
        }
        let u32_at = |i: usize| u32::from_le_bytes(s[i..i + 4].try_into().expect("4 bytes"));
        let (virtual_size, raw_size, raw_at) = (u32_at(8), u32_at(16), u32_at(20));
        let size = virtual_size.min(raw_size);
        if size > MAX_SECTION {
            return Err(PeError::Format("section larger than 64 KiB"));
        }
        r.seek(SeekFrom::Start(raw_at.into()))?;
        let mut bytes = vec![0u8; size as usize];
        r.read_exact(&mut bytes).map_err(short)?;
        return Ok(Some(bytes));
    }
    Ok(None)
}

fn short(e: std::io::Error) -> PeError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        PeError::Format("truncated")
    } else {
        PeError::Io(e)
    }
}

/// A `.cmdline` section as text: up to the first NUL, trimmed.
pub fn cmdline_text(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).trim().to_string()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Cursor;

    /// A minimal PE image with the given sections (name, bytes), laid out
    /// like objcopy does: headers, then each section's raw data.
    pub(crate) fn image(sections: &[(&str, &[u8])]) -> Vec<u8> {
        let pe_at = 0x80u32;
        let optional = 0xf0u16;
        let table_at = pe_at as usize + 24 + usize::from(optional);
        let mut data_at = (table_at + 40 * sections.len()).next_multiple_of(512);
        let mut v = vec![0u8; data_at];
        v[..2].copy_from_slice(b"MZ");
        v[0x3c..0x40].copy_from_slice(&pe_at.to_le_bytes());
        let p = pe_at as usize;
        v[p..p + 4].copy_from_slice(b"PE\0\0");
        v[p + 6..p + 8].copy_from_slice(&(sections.len() as u16).to_le_bytes());
        v[p + 20..p + 22].copy_from_slice(&optional.to_le_bytes());
        for (i, (name, bytes)) in sections.iter().enumerate() {
            let t = table_at + 40 * i;
            v[t..t + name.len()].copy_from_slice(name.as_bytes());
            let raw = (bytes.len() as u32).next_multiple_of(512);
            v[t + 8..t + 12].copy_from_slice(&(bytes.len() as u32).to_le_bytes());
            v[t + 16..t + 20].copy_from_slice(&raw.to_le_bytes());
            v[t + 20..t + 24].copy_from_slice(&(data_at as u32).to_le_bytes());
            v.resize(data_at, 0);
            v.extend_from_slice(bytes);
            v.resize(data_at + raw as usize, 0);
            data_at += raw as usize;
        }
        v
    }

    #[test]
    fn finds_the_named_section_only() {
        let img = image(&[
            (".osrel", b"ID=tandem\n"),
            (".cmdline", b"tandem.slot=b quiet\0\0"),
            (".linux", &[0x55; 3000]),
        ]);
        let got = section(&mut Cursor::new(&img), ".cmdline")
            .unwrap()
            .unwrap();
        assert_eq!(cmdline_text(&got), "tandem.slot=b quiet");
        let linux = section(&mut Cursor::new(&img), ".linux").unwrap().unwrap();
        assert_eq!(linux.len(), 3000);
        assert!(section(&mut Cursor::new(&img), ".initrd")
            .unwrap()
            .is_none());
    }

    #[test]
    fn refuses_what_is_not_a_pe_image() {
        let img = image(&[(".cmdline", b"x")]);
        for (what, bytes) in [
            ("empty", vec![]),
            ("text", b"title Tandem\nlinux /x\n".repeat(10)),
            ("truncated", img[..300].to_vec()),
        ] {
            let e = section(&mut Cursor::new(&bytes), ".cmdline");
            assert!(matches!(e, Err(PeError::Format(_))), "{what}: {e:?}");
        }
    }
}

//! The subset of POSIX ustar that bundles use: regular files only, one
//! 512-byte header per member, GNU base-256 sizes for members of 8 GiB and
//! more. Pure: headers in and out as byte arrays.

pub const BLOCK: usize = 512;
/// Largest size the 11 octal digits of a ustar size field hold.
const OCTAL_SIZE_MAX: u64 = 0o77777777777;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TarError {
    #[error("bad tar header checksum (stored {stored}, computed {computed})")]
    Checksum { stored: u32, computed: u32 },
    #[error("not a ustar header (magic {0:?})")]
    Magic(String),
    #[error("malformed number in tar header field {field}")]
    Number { field: &'static str },
    #[error("member {name:?} has type {kind:?}; bundles hold regular files only")]
    NotRegular { name: String, kind: char },
    #[error("member name {0:?} is not a safe relative path")]
    UnsafeName(String),
    #[error("member name is not UTF-8")]
    NameEncoding,
    #[error("member name {0:?} is longer than 100 bytes")]
    NameTooLong(String),
    #[error("member {name:?} uses the ustar prefix field (header bytes 345..500); bundle member names fit the 100-byte name field")]
    Prefix { name: String },
    #[error("member {name:?} declares {size} bytes, more than an archive can hold")]
    Size { name: String, size: u64 },
}

/// A parsed member header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub size: u64,
    pub mtime: u64,
}

/// Result of reading one 512-byte block where a header is expected.
#[derive(Debug, PartialEq, Eq)]
pub enum Block {
    Member(Header),
    /// An all-zero block: the end-of-archive marker.
    End,
}

/// Number of padding bytes after `size` bytes of member data.
pub fn padding(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

/// Parses a header block. Rejects anything but regular files with safe names.
pub fn parse_header(b: &[u8; BLOCK]) -> Result<Block, TarError> {
    if b.iter().all(|&x| x == 0) {
        return Ok(Block::End);
    }
    let stored = parse_octal(&b[148..156], "chksum")? as u32;
    let computed = checksum(b);
    if stored != computed {
        return Err(TarError::Checksum { stored, computed });
    }
    if &b[257..262] != b"ustar" {
        return Err(TarError::Magic(
            String::from_utf8_lossy(&b[257..263]).into_owned(),
        ));
    }
    let name = cstr(&b[0..100])?;
    let kind = b[156];
    if kind != b'0' && kind != 0 {
        return Err(TarError::NotRegular {
            name,
            kind: kind as char,
        });
    }
    // Bundles never need the prefix field (build_header refuses names over
    // 100 bytes), and readers disagree on it: a v7 reader ignores it and
    // GNU's old format keeps atime/ctime there. Refusing any byte in it
    // means every reader sees the name we check.
    if b[345..500].iter().any(|&x| x != 0) {
        return Err(TarError::Prefix { name });
    }
    check_name(&name)?;
    let size = parse_size(&b[124..136])?;
    // The member's data and padding must be addressable: a base-256 size
    // near u64::MAX would overflow `size + padding` in any reader.
    if size.checked_add(padding(size)).is_none() {
        return Err(TarError::Size { name, size });
    }
    let mtime = parse_octal(&b[136..148], "mtime")?;
    Ok(Block::Member(Header { name, size, mtime }))
}

/// Builds a header block for a regular file (mode 0644, owner 0:0).
pub fn build_header(h: &Header) -> Result<[u8; BLOCK], TarError> {
    check_name(&h.name)?;
    if h.name.len() > 100 {
        return Err(TarError::NameTooLong(h.name.clone()));
    }
    let mut b = [0u8; BLOCK];
    b[..h.name.len()].copy_from_slice(h.name.as_bytes());
    put_octal(&mut b[100..108], 0o644);
    put_octal(&mut b[108..116], 0);
    put_octal(&mut b[116..124], 0);
    if h.size <= OCTAL_SIZE_MAX {
        put_octal(&mut b[124..136], h.size);
    } else {
        // GNU base-256: high bit of the first byte set, big-endian number.
        let field = &mut b[124..136];
        field[0] = 0x80;
        field[4..12].copy_from_slice(&h.size.to_be_bytes());
    }
    put_octal(&mut b[136..148], h.mtime.min(OCTAL_SIZE_MAX));
    b[156] = b'0';
    b[257..263].copy_from_slice(b"ustar\0");
    b[263..265].copy_from_slice(b"00");
    b[265..269].copy_from_slice(b"root");
    b[297..301].copy_from_slice(b"root");
    let sum = checksum(&b);
    let s = format!("{sum:06o}\0 ");
    b[148..156].copy_from_slice(s.as_bytes());
    Ok(b)
}

/// A member name must be relative, made of normal components, and printable.
pub fn check_name(name: &str) -> Result<(), TarError> {
    let bad = name.is_empty()
        || name.starts_with('/')
        || name
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
        || name.chars().any(|c| c.is_control() || c == '\\');
    if bad {
        Err(TarError::UnsafeName(name.to_string()))
    } else {
        Ok(())
    }
}

fn checksum(b: &[u8; BLOCK]) -> u32 {
    b.iter()
        .enumerate()
        .map(|(i, &x)| {
            if (148..156).contains(&i) {
                32
            } else {
                x as u32
            }
        })
        .sum()
}

fn cstr(field: &[u8]) -> Result<String, TarError> {
    let end = field.iter().position(|&x| x == 0).unwrap_or(field.len());
    String::from_utf8(field[..end].to_vec()).map_err(|_| TarError::NameEncoding)
}

fn parse_size(field: &[u8]) -> Result<u64, TarError> {
    if field[0] & 0x80 != 0 {
        if field[0] != 0x80 || field[1..4].iter().any(|&x| x != 0) {
            return Err(TarError::Number { field: "size" });
        }
        let mut n = [0u8; 8];
        n.copy_from_slice(&field[4..12]);
        return Ok(u64::from_be_bytes(n));
    }
    parse_octal(field, "size")
}

fn parse_octal(field: &[u8], name: &'static str) -> Result<u64, TarError> {
    let s = field
        .iter()
        .copied()
        .skip_while(|&c| c == b' ')
        .take_while(|&c| c != 0 && c != b' ')
        .collect::<Vec<u8>>();
    if s.is_empty() {
        return Ok(0);
    }
    let mut n: u64 = 0;
    for c in s {
        if !(b'0'..=b'7').contains(&c) {
            return Err(TarError::Number { field: name });
        }
        n = n
            .checked_mul(8)
            .and_then(|n| n.checked_add((c - b'0') as u64))
            .ok_or(TarError::Number { field: name })?;
    }
    Ok(n)
}

fn put_octal(field: &mut [u8], v: u64) {
    let width = field.len() - 1;
    let s = format!("{v:0width$o}");
    field[..width].copy_from_slice(s.as_bytes());
    field[width] = 0;
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_small_and_huge() {
        for size in [0, 1, 511, 512, OCTAL_SIZE_MAX, OCTAL_SIZE_MAX + 1, 1 << 40] {
            let h = Header {
                name: "images/00-rootfs.img".into(),
                size,
                mtime: 1_700_000_000,
            };
            let b = build_header(&h).unwrap();
            assert_eq!(parse_header(&b).unwrap(), Block::Member(h));
        }
    }

    #[test]
    fn zero_block_is_end() {
        assert_eq!(parse_header(&[0; BLOCK]).unwrap(), Block::End);
    }

    #[test]
    fn bad_names() {
        for n in [
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            "a//b",
            "./a",
            "a\nb",
            "a\\b",
        ] {
            assert!(check_name(n).is_err(), "{n:?}");
        }
        assert!(check_name("images/00-rootfs.img.zst").is_ok());
    }

    #[test]
    fn checksum_detects_flip() {
        let h = Header {
            name: "manifest.json".into(),
            size: 10,
            mtime: 0,
        };
        let mut b = build_header(&h).unwrap();
        b[5] ^= 1;
        assert!(matches!(parse_header(&b), Err(TarError::Checksum { .. })));
    }

    #[test]
    fn symlink_refused() {
        let h = Header {
            name: "x".into(),
            size: 0,
            mtime: 0,
        };
        let mut b = build_header(&h).unwrap();
        b[156] = b'2';
        // fix the checksum
        let sum = checksum(&b);
        b[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        assert!(matches!(parse_header(&b), Err(TarError::NotRegular { .. })));
    }

    fn fix_checksum(b: &mut [u8; BLOCK]) {
        let sum = checksum(b);
        b[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    }

    fn header(name: &str, size: u64) -> [u8; BLOCK] {
        build_header(&Header {
            name: name.into(),
            size,
            mtime: 0,
        })
        .unwrap()
    }

    #[test]
    fn prefix_field_refused() {
        // "images" + "00-rootfs.img" would join to the expected name.
        let mut b = header("00-rootfs.img", 10);
        b[345..351].copy_from_slice(b"images");
        fix_checksum(&mut b);
        assert_eq!(
            parse_header(&b),
            Err(TarError::Prefix {
                name: "00-rootfs.img".into()
            })
        );
        // Not even a byte after a NUL (GNU's old format keeps times there).
        let mut b = header("x", 10);
        b[360] = b'1';
        fix_checksum(&mut b);
        assert!(matches!(parse_header(&b), Err(TarError::Prefix { .. })));
    }

    #[test]
    fn sizes_whose_padding_overflows_are_refused() {
        for size in [u64::MAX, u64::MAX - 1, u64::MAX - 510] {
            let b = header("a", size);
            assert_eq!(
                parse_header(&b),
                Err(TarError::Size {
                    name: "a".into(),
                    size
                }),
                "{size}"
            );
        }
        // The largest padded size that fits is fine.
        let top = u64::MAX - 511;
        assert!(matches!(parse_header(&header("a", top)), Ok(Block::Member(h)) if h.size == top));
    }

    #[test]
    fn base256_sizes() {
        // Negative (0xff lead) and wider than 64 bits are malformed.
        for lead in [[0xffu8, 0, 0, 0], [0x80, 0, 0, 1], [0x81, 0, 0, 0]] {
            let mut b = header("a", 1 << 40);
            b[124..128].copy_from_slice(&lead);
            fix_checksum(&mut b);
            assert_eq!(parse_header(&b), Err(TarError::Number { field: "size" }));
        }
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), BLOCK)) {
            let b: [u8; BLOCK] = bytes.try_into().unwrap();
            let _ = parse_header(&b);
        }

        #[test]
        fn size_round_trip(size in 0..=u64::MAX - 511, mtime in 0u64..OCTAL_SIZE_MAX) {
            let h = Header { name: "a/b".into(), size, mtime };
            prop_assert_eq!(parse_header(&build_header(&h).unwrap()).unwrap(), Block::Member(h));
        }
    }
}

//! Device-mapper ioctl buffers (`linux/dm-ioctl.h`, interface version 4),
//! encoded as bytes. Pure: [`crate::sys`] hands the buffer to
//! `ioctl(/dev/mapper/control, ...)`.
//!
//! A request is one `struct dm_ioctl` (312 bytes) followed, for
//! `DM_TABLE_LOAD`, by `struct dm_target_spec` (40 bytes) and the target's
//! NUL-terminated parameter string, padded to 8 bytes. All integers are in
//! the machine's byte order.
//!
//! ```text
//! struct dm_ioctl {                    struct dm_target_spec {
//!   u32 version[3];       //   0         u64 sector_start;     //  0
//!   u32 data_size;        //  12         u64 length;           //  8
//!   u32 data_start;       //  16         s32 status;           // 16
//!   u32 target_count;     //  20         u32 next;             // 20
//!   s32 open_count;       //  24         char target_type[16]; // 24
//!   u32 flags;            //  28       };                      // 40
//!   u32 event_nr;         //  32
//!   u32 padding;          //  36
//!   u64 dev;              //  40
//!   char name[128];       //  48
//!   char uuid[129];       // 176
//!   char data[7];         // 305
//! };                      // 312
//! ```

/// `sizeof(struct dm_ioctl)`.
pub const IOCTL_SIZE: usize = 312;
/// `sizeof(struct dm_target_spec)`.
pub const SPEC_SIZE: usize = 40;
/// `DM_NAME_LEN` (including the NUL).
pub const NAME_LEN: usize = 128;
/// `DM_MAX_TYPE_NAME` (including the NUL).
pub const TYPE_LEN: usize = 16;
/// Interface version we speak. The kernel accepts any request whose major
/// matches and whose minor is not newer than its own; 4.0.0 is the oldest.
pub const VERSION: [u32; 3] = [4, 0, 0];
/// `DM_READONLY_FLAG`.
pub const READONLY_FLAG: u32 = 1 << 0;
/// `DM_SUSPEND_FLAG`: with `DM_DEV_SUSPEND`, suspend; without, resume.
pub const SUSPEND_FLAG: u32 = 1 << 1;
/// `DM_IOCTL`, the ioctl "type" byte.
pub const IOCTL_TYPE: u8 = 0xfd;

const OFF_DATA_SIZE: usize = 12;
const OFF_DATA_START: usize = 16;
const OFF_TARGET_COUNT: usize = 20;
const OFF_FLAGS: usize = 28;
const OFF_DEV: usize = 40;
const OFF_NAME: usize = 48;

/// The commands this initramfs needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// `DM_DEV_CREATE`: a new, empty mapped device named `name`.
    DevCreate,
    /// `DM_DEV_REMOVE`.
    DevRemove,
    /// `DM_DEV_SUSPEND`: suspend, or resume (make the loaded table live).
    DevSuspend,
    /// `DM_TABLE_LOAD`: load the inactive table.
    TableLoad,
}

impl Command {
    /// The ioctl number (`DM_*_CMD`).
    pub fn nr(self) -> u8 {
        match self {
            Command::DevCreate => 3,
            Command::DevRemove => 4,
            Command::DevSuspend => 6,
            Command::TableLoad => 9,
        }
    }

    /// `_IOWR(DM_IOCTL, nr, struct dm_ioctl)`.
    pub fn opcode(self) -> u32 {
        const IOC_READ_WRITE: u32 = 3;
        (IOC_READ_WRITE << 30)
            | ((IOCTL_SIZE as u32) << 16)
            | (u32::from(IOCTL_TYPE) << 8)
            | u32::from(self.nr())
    }

    pub fn name(self) -> &'static str {
        match self {
            Command::DevCreate => "DM_DEV_CREATE",
            Command::DevRemove => "DM_DEV_REMOVE",
            Command::DevSuspend => "DM_DEV_SUSPEND",
            Command::TableLoad => "DM_TABLE_LOAD",
        }
    }
}

/// One target of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub sector_start: u64,
    pub sectors: u64,
    pub target_type: String,
    pub params: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DmError {
    #[error("device-mapper name {0:?}: must be 1..127 bytes without '/'")]
    BadName(String),
    #[error("device-mapper target type {0:?}: must be 1..15 bytes")]
    BadType(String),
    #[error("device-mapper target parameters contain a NUL byte")]
    NulInParams,
    #[error("device-mapper request too large ({0} bytes)")]
    TooLarge(usize),
    #[error("device-mapper reply too short ({0} bytes)")]
    ShortReply(usize),
}

fn put_u32(buf: &mut [u8], off: usize, v: u32) {
    buf[off..off + 4].copy_from_slice(&v.to_ne_bytes());
}

fn put_u64(buf: &mut [u8], off: usize, v: u64) {
    buf[off..off + 8].copy_from_slice(&v.to_ne_bytes());
}

fn get_u32(buf: &[u8], off: usize) -> u32 {
    let mut b = [0; 4];
    b.copy_from_slice(&buf[off..off + 4]);
    u32::from_ne_bytes(b)
}

fn get_u64(buf: &[u8], off: usize) -> u64 {
    let mut b = [0; 8];
    b.copy_from_slice(&buf[off..off + 8]);
    u64::from_ne_bytes(b)
}

/// The request buffer for device `name` with `flags` and `targets` (empty
/// except for `DM_TABLE_LOAD`).
pub fn encode(name: &str, flags: u32, targets: &[Target]) -> Result<Vec<u8>, DmError> {
    if name.is_empty() || name.len() >= NAME_LEN || name.contains('/') || name.contains('\0') {
        return Err(DmError::BadName(name.to_string()));
    }
    let mut buf = vec![0u8; IOCTL_SIZE];
    for (i, v) in VERSION.iter().enumerate() {
        put_u32(&mut buf, 4 * i, *v);
    }
    put_u32(&mut buf, OFF_DATA_START, IOCTL_SIZE as u32);
    put_u32(&mut buf, OFF_TARGET_COUNT, targets.len() as u32);
    put_u32(&mut buf, OFF_FLAGS, flags);
    buf[OFF_NAME..OFF_NAME + name.len()].copy_from_slice(name.as_bytes());
    for t in targets {
        if t.target_type.is_empty() || t.target_type.len() >= TYPE_LEN {
            return Err(DmError::BadType(t.target_type.clone()));
        }
        if t.params.contains('\0') {
            return Err(DmError::NulInParams);
        }
        // Spec + params + NUL, padded so the next spec is 8-aligned; `next`
        // is the distance to it, as libdevmapper writes it.
        let len = (SPEC_SIZE + t.params.len() + 1).next_multiple_of(8);
        let at = buf.len();
        buf.resize(at + len, 0);
        put_u64(&mut buf, at, t.sector_start);
        put_u64(&mut buf, at + 8, t.sectors);
        put_u32(&mut buf, at + 20, len as u32);
        buf[at + 24..at + 24 + t.target_type.len()].copy_from_slice(t.target_type.as_bytes());
        buf[at + SPEC_SIZE..at + SPEC_SIZE + t.params.len()].copy_from_slice(t.params.as_bytes());
    }
    let size = u32::try_from(buf.len()).map_err(|_| DmError::TooLarge(buf.len()))?;
    put_u32(&mut buf, OFF_DATA_SIZE, size);
    Ok(buf)
}

/// What the kernel wrote back into the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub version: [u32; 3],
    pub flags: u32,
    /// The mapped device's number, in the kernel's `huge_encode_dev`
    /// layout (the same as glibc's `makedev` for majors below 4096).
    pub dev: u64,
    pub name: String,
}

/// Reads the header of a buffer after the ioctl returned.
pub fn decode(buf: &[u8]) -> Result<Reply, DmError> {
    if buf.len() < IOCTL_SIZE {
        return Err(DmError::ShortReply(buf.len()));
    }
    let name = &buf[OFF_NAME..OFF_NAME + NAME_LEN];
    let end = name.iter().position(|b| *b == 0).unwrap_or(NAME_LEN);
    Ok(Reply {
        version: [get_u32(buf, 0), get_u32(buf, 4), get_u32(buf, 8)],
        flags: get_u32(buf, OFF_FLAGS),
        dev: get_u64(buf, OFF_DEV),
        name: String::from_utf8_lossy(&name[..end]).into_owned(),
    })
}

/// Splits a `huge_encode_dev` value into (major, minor).
pub fn split_dev(dev: u64) -> (u32, u32) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (major as u32, minor as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u32_at(b: &[u8], off: usize) -> u32 {
        u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
    }

    #[test]
    fn opcodes_match_the_kernel_header() {
        // strace shows e.g. ioctl(3, DM_DEV_CREATE, ...) == 0xc138fd03.
        assert_eq!(Command::DevCreate.opcode(), 0xc138_fd03);
        assert_eq!(Command::DevRemove.opcode(), 0xc138_fd04);
        assert_eq!(Command::DevSuspend.opcode(), 0xc138_fd06);
        assert_eq!(Command::TableLoad.opcode(), 0xc138_fd09);
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn create_request_byte_layout() {
        let b = encode("tandem-root-a", 0, &[]).unwrap();
        assert_eq!(b.len(), 312);
        let mut want = vec![0u8; 312];
        want[0] = 4; // version 4.0.0
        want[12..16].copy_from_slice(&312u32.to_le_bytes()); // data_size
        want[16..20].copy_from_slice(&312u32.to_le_bytes()); // data_start
        want[48..61].copy_from_slice(b"tandem-root-a"); // name, NUL-padded
        assert_eq!(b, want);
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn table_load_byte_layout() {
        let params = "1 254:2 254:2 4096 4096 1 2 sha256 ab -";
        let b = encode(
            "r",
            READONLY_FLAG,
            &[Target {
                sector_start: 0,
                sectors: 8,
                target_type: "verity".into(),
                params: params.into(),
            }],
        )
        .unwrap();
        // 312 + 40 + 39 bytes + NUL = 392, already a multiple of 8.
        let spec_len = (40 + params.len() + 1).next_multiple_of(8);
        assert_eq!(spec_len, 80);
        assert_eq!(b.len(), 312 + spec_len);
        assert_eq!(u32_at(&b, 12), b.len() as u32, "data_size");
        assert_eq!(u32_at(&b, 16), 312, "data_start");
        assert_eq!(u32_at(&b, 20), 1, "target_count");
        assert_eq!(u32_at(&b, 28), 1, "flags = DM_READONLY_FLAG");
        assert_eq!(&b[48..50], b"r\0");
        let s = &b[312..];
        assert_eq!(&s[0..8], &0u64.to_le_bytes(), "sector_start");
        assert_eq!(&s[8..16], &8u64.to_le_bytes(), "length");
        assert_eq!(u32_at(s, 16), 0, "status");
        assert_eq!(u32_at(s, 20), spec_len as u32, "next");
        assert_eq!(&s[24..40], b"verity\0\0\0\0\0\0\0\0\0\0");
        assert_eq!(&s[40..40 + params.len()], params.as_bytes());
        assert!(s[40 + params.len()..].iter().all(|b| *b == 0));
    }

    #[test]
    fn padding_rounds_to_eight() {
        for n in 0..20 {
            let p = "x".repeat(n);
            let t = Target {
                sector_start: 0,
                sectors: 1,
                target_type: "zero".into(),
                params: p,
            };
            let b = encode("n", 0, &[t]).unwrap();
            assert_eq!(b.len() % 8, 0);
            assert!(b.len() > 312 + 40 + n, "room for the NUL");
        }
    }

    #[test]
    fn rejects_bad_input() {
        let long = "x".repeat(128);
        assert_eq!(encode(&long, 0, &[]), Err(DmError::BadName(long.clone())));
        assert!(encode(&long[..127], 0, &[]).is_ok());
        assert!(encode("", 0, &[]).is_err());
        assert!(encode("a/b", 0, &[]).is_err());
        let t = |ty: &str, p: &str| Target {
            sector_start: 0,
            sectors: 1,
            target_type: ty.into(),
            params: p.into(),
        };
        assert!(encode("n", 0, &[t("0123456789abcdef", "")]).is_err());
        assert!(encode("n", 0, &[t("", "")]).is_err());
        assert_eq!(
            encode("n", 0, &[t("zero", "a\0b")]),
            Err(DmError::NulInParams)
        );
    }

    #[test]
    fn decode_reads_back_the_header() {
        let mut b = encode("tandem-root-b", SUSPEND_FLAG, &[]).unwrap();
        // what the kernel writes: its version and the new device (253:3)
        b[4..8].copy_from_slice(&47u32.to_ne_bytes());
        b[40..48].copy_from_slice(&((253u64 << 8) | 3).to_ne_bytes());
        let r = decode(&b).unwrap();
        assert_eq!(r.version, [4, 47, 0]);
        assert_eq!(r.flags, SUSPEND_FLAG);
        assert_eq!(r.name, "tandem-root-b");
        assert_eq!(split_dev(r.dev), (253, 3));
        assert_eq!(decode(&b[..311]), Err(DmError::ShortReply(311)));
    }

    #[test]
    fn split_dev_handles_large_minors() {
        // huge_encode_dev: minor low 8 bits, major 12 bits, minor high bits.
        let (major, minor) = (253u64, 0x12345u64);
        let dev = (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12);
        assert_eq!(split_dev(dev), (253, 0x12345));
    }
}

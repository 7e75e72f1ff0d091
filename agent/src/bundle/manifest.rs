//! The bundle manifest: what a bundle contains and for whom. Pure.
//!
//! The manifest is JSON. Its exact bytes are what the signatures cover, so
//! parsing never needs a canonical form. Format 1 readers refuse unknown
//! fields and unknown entries in `features`: a newer bundle that needs a
//! capability this agent lacks is refused instead of half understood.

use serde::{Deserialize, Serialize};

use crate::slot::{SlotClass, SlotGroup};

/// The manifest format this agent writes and reads.
pub const FORMAT: u32 = 1;
/// Features this agent understands (see docs/bundle-format.md).
pub const KNOWN_FEATURES: &[&str] = &[GROUP_IMAGES];
/// Images with a `group`: a class may carry one image per slot group
/// (a unified kernel image whose signed command line names its slot).
pub const GROUP_IMAGES: &str = "group-images";
pub const MAX_IMAGES: usize = 32;
/// Bounds of an image's `frame_size` and chunk size (powers of two); the
/// installer's write buffers hold a whole number of either.
pub const MIN_FRAME_SIZE: u32 = 4 << 10;
pub const MAX_FRAME_SIZE: u32 = 1 << 20;
/// Most entries a chunk index may have (4 MiB of hashes: 128 GiB in 1 MiB
/// chunks), so the installer knows its memory before reading it.
pub const MAX_CHUNKS: u64 = 1 << 17;
/// Most entries a content-defined chunk table may have (40 MiB: about
/// 8 GiB of image at an 8 KiB average).
pub const MAX_CDC_CHUNKS: u64 = 1 << 20;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    #[error("manifest is not valid JSON for format {FORMAT}: {0}")]
    Syntax(String),
    #[error("manifest format {0} is not supported by this agent (supports {FORMAT})")]
    UnsupportedFormat(u32),
    #[error("manifest requires feature {0:?}, which this agent does not support")]
    UnknownFeature(String),
    #[error("manifest has an empty or over-long compatible string")]
    Compatible,
    #[error("manifest has images with a slot group but does not list feature \"{GROUP_IMAGES}\"")]
    GroupFeature,
    #[error("manifest has a per-group image for slot class \"{0}\" but none for slot group {1}")]
    GroupMissing(SlotClass, SlotGroup),
    #[error("manifest lists no images")]
    NoImages,
    #[error("manifest lists {0} images; at most {MAX_IMAGES} are allowed")]
    TooManyImages(usize),
    #[error("manifest lists slot class \"{0}\" twice (images {1} and {2})")]
    DuplicateClass(SlotClass, usize, usize),
    #[error("image {index}: sha256 must be 64 lowercase hex digits")]
    BadHash { index: usize },
    #[error("image {index}: size must be greater than zero")]
    ZeroSize { index: usize },
    #[error("image {index}: payload_size {payload} must equal size {size} when uncompressed")]
    PayloadSize {
        index: usize,
        payload: u64,
        size: u64,
    },
    #[error("image {index}: frame_size {size} {what}")]
    FrameSize {
        index: usize,
        size: u32,
        what: &'static str,
    },
    #[error("image {index}: bad chunk index entry: {what}")]
    Chunks { index: usize, what: String },
    #[error("image {index}: bad verity data: {what}")]
    Verity { index: usize, what: &'static str },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    pub version: semver::Version,
    pub compatible: String,
    pub security_epoch: u64,
    pub created: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<String>,
    pub images: Vec<Image>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Zstd,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Image {
    pub slot_class: SlotClass,
    /// Written only by installs into this slot group; the class then has
    /// one image for each group (feature `group-images`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<SlotGroup>,
    /// Bytes written to the slot.
    pub size: u64,
    /// SHA-256 of the bytes written to the slot, lowercase hex.
    pub sha256: String,
    pub compression: Compression,
    /// Bytes of the payload member in the bundle.
    pub payload_size: u64,
    /// With zstd: the payload is independent frames that each decode to
    /// this many bytes, the last one to the rest (`bundle::frames`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame_size: Option<u32>,
    /// The image's chunk index: a member before its payload with the
    /// SHA-256 of every `size`-byte chunk (`bundle::chunks`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunks: Option<Chunks>,
    /// Content-defined chunks: a table member before the payload with each
    /// chunk's SHA-256, length and stored length; the payload is the chunks
    /// in order, each one zstd frame (or raw, uncompressed), so a device
    /// can fetch any of them by byte range (`bundle::chunks`, adaptive
    /// updates). Excludes `frame_size` and `chunks`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cdc: Option<Cdc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verity: Option<Verity>,
}

/// The chunking and table of a content-defined image (`bundle::cdc`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cdc {
    pub min: u32,
    pub avg: u32,
    pub max: u32,
    /// Entries in the table.
    pub count: u64,
    /// SHA-256 of the table member, lowercase hex.
    pub sha256: String,
}

impl Cdc {
    pub fn params(&self) -> crate::bundle::cdc::Params {
        crate::bundle::cdc::Params {
            min: self.min,
            avg: self.avg,
            max: self.max,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Chunks {
    /// Bytes per chunk, a power of two from 4 KiB to 1 MiB; the last chunk
    /// is the rest of the image.
    pub size: u32,
    /// SHA-256 of the index member, lowercase hex.
    pub sha256: String,
}

/// dm-verity parameters, as `veritysetup format` prints them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Verity {
    pub root_hash: String,
    pub salt: String,
    /// Byte offset of the hash tree inside the image.
    pub hash_offset: u64,
    pub data_block_size: u32,
    pub hash_block_size: u32,
    pub hash_algorithm: String,
}

impl Manifest {
    /// Parses and validates manifest bytes.
    pub fn parse(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        // Read the format first so a newer manifest gets a precise error.
        #[derive(Deserialize)]
        struct Probe {
            format: u32,
        }
        match serde_json::from_slice::<Probe>(bytes) {
            Ok(p) if p.format != FORMAT => return Err(ManifestError::UnsupportedFormat(p.format)),
            _ => {}
        }
        let m: Manifest =
            serde_json::from_slice(bytes).map_err(|e| ManifestError::Syntax(e.to_string()))?;
        m.validate()?;
        Ok(m)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("manifest serializes");
        v.push(b'\n');
        v
    }

    pub fn validate(&self) -> Result<(), ManifestError> {
        if self.format != FORMAT {
            return Err(ManifestError::UnsupportedFormat(self.format));
        }
        if let Some(f) = self
            .features
            .iter()
            .find(|f| !KNOWN_FEATURES.contains(&f.as_str()))
        {
            return Err(ManifestError::UnknownFeature(f.clone()));
        }
        if self.compatible.is_empty() || self.compatible.len() > 256 {
            return Err(ManifestError::Compatible);
        }
        if self.images.is_empty() {
            return Err(ManifestError::NoImages);
        }
        if self.images.len() > MAX_IMAGES {
            return Err(ManifestError::TooManyImages(self.images.len()));
        }
        let grouped = self.images.iter().any(|i| i.group.is_some());
        if grouped && !self.features.iter().any(|f| f == GROUP_IMAGES) {
            return Err(ManifestError::GroupFeature);
        }
        for (index, img) in self.images.iter().enumerate() {
            if let Some(first) = self.images[..index]
                .iter()
                .position(|o| o.slot_class == img.slot_class && !o.for_other_group(img))
            {
                return Err(ManifestError::DuplicateClass(
                    img.slot_class.clone(),
                    first,
                    index,
                ));
            }
            img.validate(index)?;
        }
        for img in self.images.iter().filter(|i| i.group.is_some()) {
            for g in SlotGroup::ALL {
                if !self
                    .images
                    .iter()
                    .any(|o| o.slot_class == img.slot_class && o.group == Some(g))
                {
                    return Err(ManifestError::GroupMissing(img.slot_class.clone(), g));
                }
            }
        }
        Ok(())
    }

    /// The images an install into `target` writes, with their indexes.
    pub fn images_for(&self, target: SlotGroup) -> impl Iterator<Item = (usize, &Image)> {
        self.images
            .iter()
            .enumerate()
            .filter(move |(_, i)| i.applies_to(target))
    }

    /// The tar member name that carries image `index`.
    pub fn member_name(&self, index: usize) -> String {
        member_name(index, &self.images[index])
    }
}

/// The tar member that carries image `index`'s chunk index (or, for a
/// content-defined image, its chunk table).
pub fn chunks_member_name(index: usize, img: &Image) -> String {
    let ext = if img.cdc.is_some() { "cdc" } else { "chunks" };
    format!("images/{index:02}-{}.{ext}", img.slot_class)
}

pub fn member_name(index: usize, img: &Image) -> String {
    let ext = match img.compression {
        Compression::None => "img",
        Compression::Zstd => "img.zst",
    };
    format!("images/{index:02}-{}.{ext}", img.slot_class)
}

fn is_hex(s: &str, len: Option<usize>) -> bool {
    len.is_none_or(|l| s.len() == l)
        && s.len().is_multiple_of(2)
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Image {
    /// The class, and the group if the image has one (`uki@b`).
    pub fn label(&self) -> String {
        match self.group {
            Some(g) => format!("{}@{g}", self.slot_class),
            None => self.slot_class.to_string(),
        }
    }

    /// Whether an install into `target` writes this image.
    pub fn applies_to(&self, target: SlotGroup) -> bool {
        self.group.is_none_or(|g| g == target)
    }

    /// Both carry a group, and not the same one.
    fn for_other_group(&self, other: &Image) -> bool {
        matches!((self.group, other.group), (Some(x), Some(y)) if x != y)
    }

    fn validate(&self, index: usize) -> Result<(), ManifestError> {
        if !is_hex(&self.sha256, Some(64)) {
            return Err(ManifestError::BadHash { index });
        }
        if self.size == 0 {
            return Err(ManifestError::ZeroSize { index });
        }
        if self.compression == Compression::None && self.payload_size != self.size {
            return Err(ManifestError::PayloadSize {
                index,
                payload: self.payload_size,
                size: self.size,
            });
        }
        if let Some(size) = self.frame_size {
            let what = if self.compression != Compression::Zstd {
                Some("is only allowed with zstd compression")
            } else if !valid_unit(size) {
                Some("must be a power of two from 4 KiB to 1 MiB")
            } else {
                None
            };
            if let Some(what) = what {
                return Err(ManifestError::FrameSize { index, size, what });
            }
        }
        if let Some(c) = &self.chunks {
            let what = if !valid_unit(c.size) {
                Some(format!(
                    "size {} must be a power of two from 4 KiB to 1 MiB",
                    c.size
                ))
            } else if self.size.div_ceil(u64::from(c.size)) > MAX_CHUNKS {
                Some(format!(
                    "{} chunks of {} bytes; at most {MAX_CHUNKS} are allowed",
                    self.size.div_ceil(u64::from(c.size)),
                    c.size
                ))
            } else if !is_hex(&c.sha256, Some(64)) {
                Some("sha256 must be 64 lowercase hex digits".to_string())
            } else {
                None
            };
            if let Some(what) = what {
                return Err(ManifestError::Chunks { index, what });
            }
        }
        if let Some(c) = &self.cdc {
            let what = if self.frame_size.is_some() || self.chunks.is_some() {
                Some("cdc excludes frame_size and chunks".to_string())
            } else if let Err(e) = c.params().validate() {
                Some(e)
            } else if c.count == 0 || c.count > MAX_CDC_CHUNKS {
                Some(format!(
                    "count {} must be from 1 to {MAX_CDC_CHUNKS}",
                    c.count
                ))
            } else if c.count > self.size || self.size.div_ceil(u64::from(c.max)) > c.count {
                Some(format!(
                    "{} chunks of at most {} bytes cannot make {} bytes",
                    c.count, c.max, self.size
                ))
            } else if !is_hex(&c.sha256, Some(64)) {
                Some("sha256 must be 64 lowercase hex digits".to_string())
            } else {
                None
            };
            if let Some(what) = what {
                return Err(ManifestError::Chunks { index, what });
            }
        }
        if let Some(v) = &self.verity {
            // What dm-verity itself requires: a sha256 root hash is 32
            // bytes, and the hash tree starts on a block boundary after at
            // least one data block. (Found by fuzzing: hash_offset 4194303
            // was accepted and passed to the kernel, where the initramfs
            // refuses it, so the new slot could never boot.)
            let what = if v.hash_algorithm != "sha256" {
                Some("only sha256 is supported")
            } else if !is_hex(&v.root_hash, Some(64)) {
                Some("root_hash must be 64 lowercase hex digits (sha256)")
            } else if !is_hex(&v.salt, None) || v.salt.len() > 512 {
                Some("salt must be hex, at most 256 bytes")
            } else if !valid_block(v.data_block_size) || !valid_block(v.hash_block_size) {
                Some("block sizes must be powers of two from 512 to 1 MiB")
            } else if v.hash_offset > self.size {
                Some("hash_offset lies beyond the image")
            } else if v.hash_offset == 0
                || !v.hash_offset.is_multiple_of(u64::from(v.data_block_size))
                || !v.hash_offset.is_multiple_of(u64::from(v.hash_block_size))
            {
                Some("hash_offset must be a positive multiple of both block sizes")
            } else {
                None
            };
            if let Some(what) = what {
                return Err(ManifestError::Verity { index, what });
            }
        }
        Ok(())
    }
}

/// A frame or chunk size: a power of two from 4 KiB to 1 MiB.
fn valid_unit(n: u32) -> bool {
    n.is_power_of_two() && (MIN_FRAME_SIZE..=MAX_FRAME_SIZE).contains(&n)
}

fn valid_block(n: u32) -> bool {
    n.is_power_of_two() && (512..=1 << 20).contains(&n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            format: FORMAT,
            version: "1.2.3".parse().unwrap(),
            compatible: "tandem-demo".into(),
            security_epoch: 0,
            created: "2026-11-26T00:00:00Z".into(),
            description: None,
            features: vec![],
            images: vec![Image {
                slot_class: SlotClass::new("rootfs").unwrap(),
                group: None,
                size: 4096,
                sha256: "ab".repeat(32),
                compression: Compression::None,
                payload_size: 4096,
                frame_size: None,
                chunks: None,
                cdc: None,
                verity: None,
            }],
        }
    }

    #[test]
    fn per_group_images_need_the_feature_and_both_groups() {
        use crate::slot::SlotGroup::{A, B};
        let base = sample();
        let with = |groups: &[Option<SlotGroup>], feature: bool| {
            let mut m = base.clone();
            let img = m.images[0].clone();
            m.images = groups
                .iter()
                .map(|&group| Image {
                    group,
                    ..img.clone()
                })
                .collect();
            if feature {
                m.features.push(GROUP_IMAGES.into());
            }
            m
        };
        assert_eq!(with(&[Some(A), Some(B)], true).validate(), Ok(()));
        assert_eq!(
            with(&[Some(A), Some(B)], false).validate(),
            Err(ManifestError::GroupFeature)
        );
        assert_eq!(
            with(&[Some(A)], true).validate(),
            Err(ManifestError::GroupMissing(
                base.images[0].slot_class.clone(),
                B
            ))
        );
        for dup in [[Some(A), Some(A)], [None, Some(A)], [Some(B), None]] {
            assert!(
                matches!(
                    with(&dup, true).validate(),
                    Err(ManifestError::DuplicateClass(_, 0, 1))
                ),
                "{dup:?}"
            );
        }
        let m = with(&[Some(A), Some(B)], true);
        let b: Vec<usize> = m.images_for(B).map(|(i, _)| i).collect();
        assert_eq!(b, [1]);
        assert_eq!(m.images[1].label(), "rootfs@b");
        // An ungrouped manifest is unchanged on the wire.
        assert!(!String::from_utf8(base.to_bytes())
            .unwrap()
            .contains("group"));
        // The feature alone, with no grouped image, is accepted.
        assert_eq!(with(&[None], true).validate(), Ok(()));
    }

    #[test]
    fn round_trip() {
        let m = sample();
        assert_eq!(Manifest::parse(&m.to_bytes()).unwrap(), m);
        assert_eq!(m.member_name(0), "images/00-rootfs.img");
        assert!(!String::from_utf8(m.to_bytes())
            .unwrap()
            .contains("frame_size"));

        let mut framed = sample();
        framed.images[0].compression = Compression::Zstd;
        framed.images[0].frame_size = Some(1 << 20);
        let text = String::from_utf8(framed.to_bytes()).unwrap();
        assert!(text.contains(r#""frame_size": 1048576"#), "{text}");
        assert_eq!(Manifest::parse(text.as_bytes()).unwrap(), framed);
    }

    #[test]
    fn validation_table() {
        type Mutate = fn(&mut Manifest);
        type Expect = fn(&ManifestError) -> bool;
        let cases: &[(&str, Mutate, Expect)] = &[
            (
                "format",
                |m| m.format = 2,
                |e| matches!(e, ManifestError::UnsupportedFormat(2)),
            ),
            (
                "feature",
                |m| m.features.push("chunks".into()),
                |e| matches!(e, ManifestError::UnknownFeature(_)),
            ),
            (
                "compatible",
                |m| m.compatible.clear(),
                |e| *e == ManifestError::Compatible,
            ),
            (
                "no images",
                |m| m.images.clear(),
                |e| *e == ManifestError::NoImages,
            ),
            (
                "dup",
                |m| {
                    let i = m.images[0].clone();
                    m.images.push(i)
                },
                |e| matches!(e, ManifestError::DuplicateClass(_, 0, 1)),
            ),
            (
                "hash",
                |m| m.images[0].sha256 = "AB".repeat(32),
                |e| matches!(e, ManifestError::BadHash { index: 0 }),
            ),
            (
                "zero",
                |m| {
                    m.images[0].size = 0;
                    m.images[0].payload_size = 0
                },
                |e| matches!(e, ManifestError::ZeroSize { .. }),
            ),
            (
                "payload",
                |m| m.images[0].payload_size = 1,
                |e| matches!(e, ManifestError::PayloadSize { .. }),
            ),
            (
                "too many",
                |m| {
                    let i = m.images[0].clone();
                    m.images = (0..33)
                        .map(|n| Image {
                            slot_class: SlotClass::new(&format!("c{n}")).unwrap(),
                            ..i.clone()
                        })
                        .collect();
                },
                |e| matches!(e, ManifestError::TooManyImages(33)),
            ),
            (
                "chunk size",
                |m| {
                    m.images[0].chunks = Some(Chunks {
                        size: 1000,
                        sha256: "ab".repeat(32),
                    })
                },
                |e| matches!(e, ManifestError::Chunks { index: 0, .. }),
            ),
            (
                "chunk index hash",
                |m| {
                    m.images[0].chunks = Some(Chunks {
                        size: 4096,
                        sha256: "xy".into(),
                    })
                },
                |e| matches!(e, ManifestError::Chunks { index: 0, .. }),
            ),
            (
                "too many chunks",
                |m| {
                    m.images[0].size = (MAX_CHUNKS + 1) * 4096;
                    m.images[0].payload_size = m.images[0].size;
                    m.images[0].chunks = Some(Chunks {
                        size: 4096,
                        sha256: "ab".repeat(32),
                    })
                },
                |e| matches!(e, ManifestError::Chunks { index: 0, .. }),
            ),
            (
                "frames without zstd",
                |m| m.images[0].frame_size = Some(1 << 20),
                |e| matches!(e, ManifestError::FrameSize { size: 1048576, .. }),
            ),
            (
                "frame size not a power of two",
                |m| {
                    m.images[0].compression = Compression::Zstd;
                    m.images[0].frame_size = Some(1_000_000)
                },
                |e| matches!(e, ManifestError::FrameSize { .. }),
            ),
            (
                "frame size beyond 1 MiB",
                |m| {
                    m.images[0].compression = Compression::Zstd;
                    m.images[0].frame_size = Some(2 << 20)
                },
                |e| matches!(e, ManifestError::FrameSize { .. }),
            ),
            (
                "frame size below 4 KiB",
                |m| {
                    m.images[0].compression = Compression::Zstd;
                    m.images[0].frame_size = Some(2048)
                },
                |e| matches!(e, ManifestError::FrameSize { .. }),
            ),
            (
                "verity",
                |m| {
                    m.images[0].verity = Some(Verity {
                        root_hash: "00".repeat(32),
                        salt: "00".into(),
                        hash_offset: 1 << 20,
                        data_block_size: 4096,
                        hash_block_size: 4096,
                        hash_algorithm: "sha256".into(),
                    })
                },
                |e| matches!(e, ManifestError::Verity { .. }),
            ),
        ];
        for (name, mutate, check) in cases {
            let mut m = sample();
            mutate(&mut m);
            let err = Manifest::parse(&m.to_bytes()).unwrap_err();
            assert!(check(&err), "{name}: got {err}");
        }
    }

    #[test]
    fn verity_parameters_dm_verity_could_not_use_are_refused() {
        let good = Verity {
            root_hash: "ab".repeat(32),
            salt: "00".into(),
            hash_offset: 1 << 20,
            data_block_size: 4096,
            hash_block_size: 4096,
            hash_algorithm: "sha256".into(),
        };
        type Mutate = fn(&mut Verity);
        let cases: &[(&str, Mutate)] = &[
            ("hash_offset off a block boundary", |v| {
                v.hash_offset = 4194303
            }),
            ("hash_offset 0", |v| v.hash_offset = 0),
            ("hash_offset off the hash blocks", |v| {
                v.data_block_size = 512;
                v.hash_block_size = 1 << 20;
                v.hash_offset = 512 * 3;
            }),
            ("root hash too long", |v| v.root_hash.push_str("ab")),
            ("root hash too short", |v| v.root_hash.truncate(62)),
        ];
        let mut m = sample();
        m.images[0].size = 8 << 20;
        m.images[0].payload_size = 8 << 20;
        m.images[0].verity = Some(good.clone());
        assert_eq!(Manifest::parse(&m.to_bytes()).unwrap(), m);
        for (name, mutate) in cases {
            let mut v = good.clone();
            mutate(&mut v);
            m.images[0].verity = Some(v);
            let e = Manifest::parse(&m.to_bytes()).unwrap_err();
            assert!(
                matches!(e, ManifestError::Verity { index: 0, .. }),
                "{name}: {e}"
            );
        }
    }

    #[test]
    fn unknown_field_refused() {
        let s = String::from_utf8(sample().to_bytes())
            .unwrap()
            .replacen('{', "{\"extra\": 1,", 1);
        assert!(
            matches!(Manifest::parse(s.as_bytes()), Err(ManifestError::Syntax(e)) if e.contains("extra"))
        );
    }

    #[test]
    fn garbage_refused() {
        for g in [&b""[..], b"\x00\x01", b"[]", b"{}", b"null"] {
            assert!(Manifest::parse(g).is_err());
        }
    }
}

//! Hostile input: crafted bundles, each refused with its specific error,
//! with the booted group byte-identical and the target group never marked
//! valid. Refusals that can be decided before writing leave the target's
//! bytes untouched too.

mod common;

use common::*;
use tandem::bundle::chunks::ChunkList;
use tandem::bundle::manifest::{
    chunks_member_name, member_name, Chunks, Compression, Manifest, ManifestError, MAX_CHUNKS,
};
use tandem::bundle::reader::{END_SLACK, MANIFEST_NAME, SIGNATURES_NAME};
use tandem::bundle::signature::{SignatureError, SignatureList};
use tandem::bundle::tar::TarError;
use tandem::bundle::{BundleError, ZSTD_WINDOW_LOG_MAX};
use tandem::fsm::SlotState;
use tandem::install::pipeline::PipelineError;
use tandem::install::policy::PolicyError;
use tandem::install::InstallError;
use tandem::slot::SlotGroup;

type Check = fn(&InstallError) -> bool;

/// Where a refusal may happen relative to writing the target slot.
#[derive(PartialEq, Debug)]
enum When {
    BeforeWrite,
    DuringWrite,
}

struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    check: Check,
    when: When,
}

fn bundle_err(e: &InstallError) -> Option<&BundleError> {
    match e {
        InstallError::Bundle(b) => Some(b),
        _ => None,
    }
}

fn cases(fx: &Fx) -> Vec<Case> {
    let img = pattern(300_000, 7);
    let m = manifest_for("1.1.0", &[("rootfs", &img)]);
    let good = signed_bundle(&m, &[&img], &fx.key);
    let mb = m.to_bytes();
    let name0 = member_name(0, &m.images[0]);
    let mut v = Vec::new();

    // 1. One payload byte flipped.
    let mut b = good.clone();
    let at = b.len() - 1024 - 512 - 150_000;
    b[at] ^= 0x40;
    v.push(Case {
        name: "tampered payload byte",
        bytes: b,
        when: When::DuringWrite,
        check: |e| matches!(e, InstallError::HashMismatch { index: 0, .. }),
    });

    // 2. Manifest edited after signing (same length, so the tar still parses).
    let tampered = String::from_utf8(mb.clone())
        .unwrap()
        .replace("1.1.0", "9.1.0");
    let sb = sign(&mb, &[&fx.key]);
    v.push(Case {
        name: "tampered manifest",
        when: When::BeforeWrite,
        bytes: raw_archive(&[
            (MANIFEST_NAME, tampered.as_bytes()),
            (SIGNATURES_NAME, &sb),
            (&name0, &img),
        ]),
        check: |e| {
            matches!(
                bundle_err(e),
                Some(BundleError::Signature(SignatureError::Bad { .. }))
            )
        },
    });

    // 3. Signed by a key the device does not trust.
    v.push(Case {
        name: "unknown key",
        when: When::BeforeWrite,
        bytes: signed_bundle(&m, &[&img], &fx.other_key),
        check: |e| {
            matches!(
                bundle_err(e),
                Some(BundleError::Signature(SignatureError::UnknownKey(_)))
            )
        },
    });

    // 4. No signature at all.
    v.push(Case {
        name: "missing signature",
        when: When::BeforeWrite,
        bytes: raw_archive(&[
            (MANIFEST_NAME, &mb),
            (SIGNATURES_NAME, b"{\"signatures\": []}"),
            (&name0, &img),
        ]),
        check: |e| {
            matches!(
                bundle_err(e),
                Some(BundleError::Signature(SignatureError::Missing))
            )
        },
    });

    // 5. No signatures member at all: the payload comes where it should be.
    v.push(Case {
        name: "signatures member absent",
        when: When::BeforeWrite,
        bytes: raw_archive(&[(MANIFEST_NAME, &mb), (&name0, &img)]),
        check: |e| matches!(bundle_err(e), Some(BundleError::UnexpectedMember { .. })),
    });

    // 6-11. Truncated at several offsets: inside the first header, inside the
    // manifest, inside the signatures, inside the payload header, mid-payload,
    // and at the very end of the payload data (padding and end marker lost).
    let sig_len = sign(&mb, &[&fx.key]).len();
    let manifest_end = 512 + mb.len().next_multiple_of(512);
    let sig_end = manifest_end + 512 + sig_len.next_multiple_of(512);
    for (name, cut, when) in [
        ("truncated in first header", 100, When::BeforeWrite),
        ("truncated in manifest", 600, When::BeforeWrite),
        (
            "truncated in signatures",
            manifest_end + 520,
            When::BeforeWrite,
        ),
        (
            "truncated in payload header",
            sig_end + 200,
            When::DuringWrite,
        ),
        (
            "truncated mid-payload",
            sig_end + 512 + 100_000,
            When::DuringWrite,
        ),
        (
            "truncated after payload data",
            sig_end + 512 + img.len() + 10,
            When::DuringWrite,
        ),
    ] {
        v.push(Case {
            name,
            bytes: good[..cut].to_vec(),
            when,
            check: |e| {
                matches!(
                    e,
                    InstallError::Truncated { .. }
                        | InstallError::Bundle(BundleError::Truncated { .. })
                )
            },
        });
    }

    // 12. Image larger than the slot.
    let big = pattern(SLOT_SIZE as usize + 1, 8);
    let mbig = manifest_for("1.1.0", &[("rootfs", &big)]);
    v.push(Case {
        name: "image larger than slot",
        when: When::BeforeWrite,
        bytes: signed_bundle(&mbig, &[&big], &fx.key),
        check: |e| matches!(e, InstallError::Policy(PolicyError::TooLarge { .. })),
    });

    // 13. The manifest lists an image the archive does not carry.
    v.push(Case {
        name: "missing image",
        when: When::DuringWrite,
        bytes: raw_archive(&[
            (MANIFEST_NAME, &mb),
            (SIGNATURES_NAME, &sign(&mb, &[&fx.key])),
        ]),
        check: |e| {
            matches!(
                bundle_err(e),
                Some(BundleError::MissingImage { index: 0, .. })
            )
        },
    });

    // 14. The same image member twice.
    v.push(Case {
        name: "duplicate image member",
        when: When::DuringWrite,
        bytes: raw_archive(&[
            (MANIFEST_NAME, &mb),
            (SIGNATURES_NAME, &sign(&mb, &[&fx.key])),
            (&name0, &img),
            (&name0, &img),
        ]),
        check: |e| matches!(bundle_err(e), Some(BundleError::Trailing { .. })),
    });

    // 15. The manifest lists the same slot class twice.
    let mut md = manifest_for("1.1.0", &[("rootfs", &img)]);
    md.images.push(md.images[0].clone());
    let mdb = serde_json::to_vec(&md).unwrap();
    v.push(Case {
        name: "duplicate slot class in manifest",
        when: When::BeforeWrite,
        bytes: raw_archive(&[
            (MANIFEST_NAME, &mdb),
            (SIGNATURES_NAME, &sign(&mdb, &[&fx.key])),
        ]),
        check: |e| {
            matches!(
                bundle_err(e),
                Some(BundleError::Manifest(ManifestError::DuplicateClass(..)))
            )
        },
    });

    // 16-17. Member names with `..` and absolute paths (headers written by hand).
    for (name, evil) in [
        ("member name with ..", "../../etc/shadow"),
        ("absolute member name", "/etc/shadow"),
    ] {
        let mut b = raw_archive(&[(MANIFEST_NAME, &mb)]);
        b.truncate(b.len() - 1024);
        b.extend(evil_header(evil, 10));
        b.extend([0u8; 512]);
        v.push(Case {
            name,
            bytes: b,
            when: When::BeforeWrite,
            check: |e| {
                matches!(
                    bundle_err(e),
                    Some(BundleError::Tar {
                        source: TarError::UnsafeName(_),
                        ..
                    })
                )
            },
        });
    }

    // 18. Wrong compatible (properly signed).
    let mut mc = m.clone();
    mc.compatible = "other-board".into();
    v.push(Case {
        name: "wrong compatible",
        when: When::BeforeWrite,
        bytes: signed_bundle(&mc, &[&img], &fx.key),
        check: |e| matches!(e, InstallError::Policy(PolicyError::Compatible { .. })),
    });

    // 19. Downgrade below the running 1.0.0.
    v.push(Case {
        name: "downgrade",
        when: When::BeforeWrite,
        bytes: signed_bundle(
            &manifest_for("0.9.9", &[("rootfs", &img)]),
            &[&img],
            &fx.key,
        ),
        check: |e| matches!(e, InstallError::Policy(PolicyError::Downgrade { .. })),
    });

    // 20. Random garbage.
    v.push(Case {
        name: "garbage",
        bytes: pattern(70_000, 99),
        when: When::BeforeWrite,
        check: |e| matches!(bundle_err(e), Some(BundleError::Tar { offset: 0, .. })),
    });

    // 21. A manifest member of 2 MiB.
    let huge = vec![b' '; 2 << 20];
    v.push(Case {
        name: "huge manifest",
        bytes: raw_archive(&[(MANIFEST_NAME, &huge)]),
        when: When::BeforeWrite,
        check: |e| {
            matches!(
                bundle_err(e),
                Some(BundleError::TooLarge {
                    what: "manifest",
                    ..
                })
            )
        },
    });

    // 22. Empty file.
    v.push(Case {
        name: "empty file",
        bytes: vec![],
        when: When::BeforeWrite,
        check: |e| matches!(bundle_err(e), Some(BundleError::Empty)),
    });

    // 23. Payload member size differs from the manifest's payload_size.
    v.push(Case {
        name: "payload size mismatch",
        when: When::DuringWrite,
        bytes: raw_archive(&[
            (MANIFEST_NAME, &mb),
            (SIGNATURES_NAME, &sign(&mb, &[&fx.key])),
            (&name0, &img[..1000]),
        ]),
        check: |e| matches!(bundle_err(e), Some(BundleError::PayloadSize { .. })),
    });

    // 24. A zstd payload that inflates beyond the declared size.
    let bomb = vec![0u8; 3 << 20];
    let z = zstd::encode_all(&bomb[..], 3).unwrap();
    let mut mz = manifest_for("1.1.0", &[("rootfs", &bomb[..100_000])]);
    mz.images[0].compression = Compression::Zstd;
    mz.images[0].payload_size = z.len() as u64;
    v.push(Case {
        name: "zstd inflates past declared size",
        when: When::DuringWrite,
        bytes: signed_bundle(&mz, &[&z], &fx.key),
        check: |e| {
            matches!(
                e,
                InstallError::Payload {
                    source: PipelineError::TooLong { .. },
                    ..
                }
            )
        },
    });

    // 25. A corrupt zstd stream (signed manifest, broken payload).
    let mut zc = zstd::encode_all(&img[..], 3).unwrap();
    let mid = zc.len() / 2;
    zc[mid] ^= 0xFF;
    zc[mid + 1] ^= 0xFF;
    let mut mzc = manifest_for("1.1.0", &[("rootfs", &img)]);
    mzc.images[0].compression = Compression::Zstd;
    mzc.images[0].payload_size = zc.len() as u64;
    v.push(Case {
        name: "corrupt zstd stream",
        when: When::DuringWrite,
        bytes: signed_bundle(&mzc, &[&zc], &fx.key),
        check: |e| {
            matches!(
                e,
                InstallError::Payload {
                    source: PipelineError::Read { .. },
                    ..
                } | InstallError::HashMismatch { .. }
            )
        },
    });

    // 26. A member after the last image.
    v.push(Case {
        name: "trailing member",
        when: When::DuringWrite,
        bytes: raw_archive(&[
            (MANIFEST_NAME, &mb),
            (SIGNATURES_NAME, &sign(&mb, &[&fx.key])),
            (&name0, &img),
            ("extra.sh", b"rm -rf /"),
        ]),
        check: |e| matches!(bundle_err(e), Some(BundleError::Trailing { .. })),
    });

    // 27. Unknown manifest format / feature.
    let newer = String::from_utf8(mb.clone())
        .unwrap()
        .replace("\"format\": 1", "\"format\": 7");
    v.push(Case {
        name: "newer manifest format",
        when: When::BeforeWrite,
        bytes: raw_archive(&[
            (MANIFEST_NAME, newer.as_bytes()),
            (SIGNATURES_NAME, &sign(newer.as_bytes(), &[&fx.key])),
        ]),
        check: |e| {
            matches!(
                bundle_err(e),
                Some(BundleError::Manifest(ManifestError::UnsupportedFormat(7)))
            )
        },
    });

    // 28. Slot class the device does not have.
    let mu = manifest_for("1.1.0", &[("appfs", &img)]);
    v.push(Case {
        name: "unknown slot class",
        when: When::BeforeWrite,
        bytes: signed_bundle(&mu, &[&img], &fx.key),
        check: |e| matches!(e, InstallError::Policy(PolicyError::UnknownClass { .. })),
    });

    // 29-31. Framed zstd whose frames are not what the signed manifest says.
    let framed = |data: &[u8], frame: u32| {
        let mut out = Vec::new();
        tandem::bundle::frames::encode(&mut &data[..], &mut out, frame, 3).unwrap();
        out
    };
    let big = framed(&img, 8192);
    let mut mf = manifest_for("1.1.0", &[("rootfs", &img)]);
    mf.images[0].compression = Compression::Zstd;
    mf.images[0].frame_size = Some(4096);
    mf.images[0].payload_size = big.len() as u64;
    v.push(Case {
        name: "zstd frames larger than frame_size",
        when: When::DuringWrite,
        bytes: signed_bundle(&mf, &[&big], &fx.key),
        check: |e| frame_read_error(e, "zstd frame 0"),
    });
    let mut extra = framed(&img, 4096);
    extra.extend_from_slice(&framed(b"and then some", 4096));
    let mut mx = mf.clone();
    mx.images[0].payload_size = extra.len() as u64;
    v.push(Case {
        name: "zstd frame after the image's last",
        when: When::DuringWrite,
        bytes: signed_bundle(&mx, &[&extra], &fx.key),
        check: |e| frame_read_error(e, "data after the last frame"),
    });
    let mut mo = mf.clone();
    mo.images[0].frame_size = Some(3000);
    v.push(Case {
        name: "frame_size not a power of two",
        when: When::BeforeWrite,
        bytes: signed_bundle(&mo, &[&big], &fx.key),
        check: |e| {
            matches!(
                bundle_err(e),
                Some(BundleError::Manifest(ManifestError::FrameSize {
                    size: 3000,
                    ..
                }))
            )
        },
    });

    // 32-36. Chunk indexes: the payload, the index, or its place is wrong.
    let list = ChunkList::of(&img, 4096);
    let mut mc = manifest_for("1.1.0", &[("rootfs", &img)]);
    mc.images[0].chunks = Some(Chunks {
        size: 4096,
        sha256: sha(list.as_bytes()),
    });
    let mcb = mc.to_bytes();
    let msig = sign(&mcb, &[&fx.key]);
    let cname = chunks_member_name(0, &mc.images[0]);
    let with_index = |index: &[u8], payload: &[u8]| {
        raw_archive(&[
            (MANIFEST_NAME, &mcb),
            (SIGNATURES_NAME, &msig),
            (&cname, index),
            (&name0, payload),
        ])
    };
    let mut tampered = img.clone();
    tampered[200_000] ^= 0x10; // chunk 48
    v.push(Case {
        name: "payload byte tampered, chunk index intact",
        when: When::DuringWrite,
        bytes: with_index(list.as_bytes(), &tampered),
        check: |e| {
            matches!(e, InstallError::Payload { source: PipelineError::Chunk(m), .. }
                if m.chunk == 48 && m.offset == 48 * 4096)
        },
    });
    let mut bad_index = list.as_bytes().to_vec();
    bad_index[5] ^= 1;
    v.push(Case {
        name: "chunk index tampered",
        when: When::BeforeWrite,
        bytes: with_index(&bad_index, &img),
        check: |e| {
            matches!(bundle_err(e), Some(BundleError::ChunkIndex { what, .. })
                if what.contains("manifest's hash"))
        },
    });
    v.push(Case {
        name: "chunk index cut short",
        when: When::BeforeWrite,
        bytes: with_index(&list.as_bytes()[..64], &img),
        check: |e| {
            matches!(bundle_err(e), Some(BundleError::ChunkIndex { what, .. })
                if what.contains("one hash per chunk"))
        },
    });
    let mut long_index = list.as_bytes().to_vec();
    long_index.extend_from_slice(&[0u8; 32]);
    v.push(Case {
        name: "chunk index too long",
        when: When::BeforeWrite,
        bytes: with_index(&long_index, &img),
        check: |e| {
            matches!(
                bundle_err(e),
                Some(BundleError::TooLarge {
                    what: "chunk index",
                    ..
                })
            )
        },
    });
    v.push(Case {
        name: "chunk index missing",
        when: When::BeforeWrite,
        bytes: signed_bundle(&mc, &[&img], &fx.key),
        check: |e| {
            matches!(bundle_err(e), Some(BundleError::UnexpectedMember { expected, .. })
                if expected.ends_with(".chunks"))
        },
    });

    v.extend(json_cases(fx, &m, &img));
    v.extend(tar_cases(fx, &good, &m, &img));
    v.extend(manifest_limit_cases(fx, &img));
    v
}

/// A signed bundle whose manifest member holds `manifest` verbatim.
fn with_manifest(fx: &Fx, manifest: &[u8], img: &[u8]) -> Vec<u8> {
    raw_archive(&[
        (MANIFEST_NAME, manifest),
        (SIGNATURES_NAME, &sign(manifest, &[&fx.key])),
        ("images/00-rootfs.img", img),
    ])
}

fn manifest_syntax(e: &InstallError, want: &str) -> bool {
    matches!(bundle_err(e), Some(BundleError::Manifest(ManifestError::Syntax(msg)))
        if msg.contains(want))
}

fn signature_syntax(e: &InstallError, want: &str) -> bool {
    matches!(bundle_err(e), Some(BundleError::Signature(SignatureError::Syntax(msg)))
        if msg.contains(want))
}

/// The JSON members: duplicate keys, trailing data, bad UTF-8, nesting.
/// serde_json refuses each with the line and column; none is ever taken
/// with a second meaning (a duplicate `version` must not pick either).
fn json_cases(fx: &Fx, m: &Manifest, img: &[u8]) -> Vec<Case> {
    let mb = String::from_utf8(m.to_bytes()).unwrap();
    let sb = String::from_utf8(sign(mb.as_bytes(), &[&fx.key])).unwrap();
    let name0 = member_name(0, &m.images[0]);
    let with_sigs = |sigs: &[u8]| {
        raw_archive(&[
            (MANIFEST_NAME, mb.as_bytes()),
            (SIGNATURES_NAME, sigs),
            (&name0, img),
        ])
    };
    let dup_manifest = mb.replacen('{', "{\n  \"version\": \"9.9.9\",", 1);
    let dup_image_key = mb.replacen("\"size\":", "\"size\": 1, \"size\":", 1);
    let dup_sigs = sb.replacen('{', "{\"signatures\": [],", 1);
    let dup_sig_key = sb.replacen(
        "\"key_id\":",
        "\"key_id\": \"0000000000000000\", \"key_id\":",
        1,
    );
    let mut manifest_trailing = mb.clone().into_bytes();
    manifest_trailing.extend_from_slice(b"{\"format\": 1}");
    let mut sigs_trailing = sb.clone().into_bytes();
    sigs_trailing.extend_from_slice(b"]");
    let mut manifest_utf8 = mb.clone().into_bytes();
    let at = mb.find("tandem-test").unwrap() + 6;
    manifest_utf8[at] = 0xff;
    let mut sigs_utf8 = sb.clone().into_bytes();
    let at = sb.find("ed25519").unwrap() + 2;
    sigs_utf8[at] = 0xc3; // a lead byte without its continuation
    let deep = |open: &str, close: &str, n: usize| format!("{}{}", open.repeat(n), close.repeat(n));
    let deep_manifest = format!(
        "{{\"format\": 1, \"description\": {}}}",
        deep("[", "]", 10_000)
    );
    let deep_sigs = format!("{{\"signatures\": {}}}", deep("[", "]", 10_000));
    let deep_objects = deep("{\"a\":", "}", 10_000);
    vec![
        Case {
            name: "duplicate key in manifest",
            when: When::BeforeWrite,
            bytes: with_manifest(fx, dup_manifest.as_bytes(), img),
            check: |e| manifest_syntax(e, "duplicate field `version`"),
        },
        Case {
            name: "duplicate key in manifest image",
            when: When::BeforeWrite,
            bytes: with_manifest(fx, dup_image_key.as_bytes(), img),
            check: |e| manifest_syntax(e, "duplicate field `size`"),
        },
        Case {
            name: "duplicate key in signatures",
            when: When::BeforeWrite,
            bytes: with_sigs(dup_sigs.as_bytes()),
            check: |e| signature_syntax(e, "duplicate field `signatures`"),
        },
        Case {
            name: "duplicate key in a signature",
            when: When::BeforeWrite,
            bytes: with_sigs(dup_sig_key.as_bytes()),
            check: |e| signature_syntax(e, "duplicate field `key_id`"),
        },
        Case {
            name: "trailing data after manifest JSON",
            when: When::BeforeWrite,
            bytes: with_manifest(fx, &manifest_trailing, img),
            check: |e| manifest_syntax(e, "trailing characters"),
        },
        Case {
            name: "trailing data after signatures",
            when: When::BeforeWrite,
            bytes: with_sigs(&sigs_trailing),
            check: |e| signature_syntax(e, "trailing characters"),
        },
        Case {
            name: "invalid UTF-8 in manifest",
            when: When::BeforeWrite,
            bytes: with_manifest(fx, &manifest_utf8, img),
            check: |e| manifest_syntax(e, "invalid unicode code point"),
        },
        Case {
            name: "invalid UTF-8 in signatures",
            when: When::BeforeWrite,
            bytes: with_sigs(&sigs_utf8),
            check: |e| signature_syntax(e, "invalid unicode code point"),
        },
        Case {
            name: "10000 nested arrays in manifest",
            when: When::BeforeWrite,
            bytes: with_manifest(fx, deep_manifest.as_bytes(), img),
            check: |e| manifest_syntax(e, "line 1 column"),
        },
        Case {
            name: "10000 nested objects as manifest",
            when: When::BeforeWrite,
            bytes: with_manifest(fx, deep_objects.as_bytes(), img),
            check: |e| manifest_syntax(e, "line 1 column"),
        },
        Case {
            name: "10000 nested arrays in signatures",
            when: When::BeforeWrite,
            bytes: with_sigs(deep_sigs.as_bytes()),
            check: |e| signature_syntax(e, "line 1 column"),
        },
    ]
}

/// A header of `kind` (tar typeflag) for `name`, checksum fixed.
fn typed_header(name: &str, size: u64, kind: u8) -> [u8; 512] {
    let mut b = evil_header(name, size);
    b[156] = kind;
    fix_checksum(&mut b);
    b
}

fn fix_checksum(b: &mut [u8; 512]) {
    b[148..156].fill(b' ');
    let sum: u32 = b.iter().map(|&x| x as u32).sum();
    b[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

fn tar_source(e: &InstallError) -> Option<(u64, &TarError)> {
    match bundle_err(e) {
        Some(BundleError::Tar { offset, source }) => Some((*offset, source)),
        _ => None,
    }
}

/// Tar headers a bundle never has. Those in front of the manifest are
/// refused before anything else; those where the payload belongs are
/// refused at its header (the target is already marked invalid).
fn tar_cases(fx: &Fx, good: &[u8], m: &Manifest, img: &[u8]) -> Vec<Case> {
    let mb = m.to_bytes();
    let sb = sign(&mb, &[&fx.key]);
    let name0 = member_name(0, &m.images[0]);
    let payload_at = 512 + mb.len().next_multiple_of(512) + 512 + sb.len().next_multiple_of(512);
    let mut v = Vec::new();
    // Headers some tar writes in front of a member: pax (x, g) and GNU
    // long names (L, K). Bundles never carry them, and honouring them
    // would let a header's name differ from what our check saw.
    for (name, kind) in [
        ("pax extended header (x) first", b'x'),
        ("pax global header (g) first", b'g'),
        ("GNU long name (L) first", b'L'),
        ("GNU long link (K) first", b'K'),
    ] {
        let mut b = typed_header("././@LongLink", 20, kind).to_vec();
        b.extend_from_slice(&[b'a'; 512]);
        b.extend_from_slice(&raw_archive(&[
            (MANIFEST_NAME, &mb),
            (SIGNATURES_NAME, &sb),
        ]));
        v.push(Case {
            name,
            bytes: b,
            when: When::BeforeWrite,
            check: match kind {
                b'x' => |e| {
                    matches!(
                        tar_source(e),
                        Some((0, TarError::NotRegular { kind: 'x', .. }))
                    )
                },
                b'g' => |e| {
                    matches!(
                        tar_source(e),
                        Some((0, TarError::NotRegular { kind: 'g', .. }))
                    )
                },
                b'L' => |e| {
                    matches!(
                        tar_source(e),
                        Some((0, TarError::NotRegular { kind: 'L', .. }))
                    )
                },
                _ => |e| {
                    matches!(
                        tar_source(e),
                        Some((0, TarError::NotRegular { kind: 'K', .. }))
                    )
                },
            },
        });
    }
    // Links and a directory where the payload belongs, named as it is.
    let prefix = raw_archive(&[(MANIFEST_NAME, &mb), (SIGNATURES_NAME, &sb)]);
    let prefix = &prefix[..prefix.len() - 1024];
    for (name, kind) in [
        ("payload member is a symlink", b'2'),
        ("payload member is a hardlink", b'1'),
        ("payload member is a directory", b'5'),
    ] {
        let mut b = prefix.to_vec();
        let mut h = typed_header(&name0, 0, kind);
        h[157..168].copy_from_slice(b"/dev/sda\0\0\0"); // link target
        fix_checksum(&mut h);
        b.extend_from_slice(&h);
        b.extend_from_slice(&[0; 1024]);
        v.push(Case {
            name,
            bytes: b,
            when: When::DuringWrite,
            check: match kind {
                b'2' => |e| matches!(tar_source(e), Some((_, TarError::NotRegular { kind: '2', name })) if name.starts_with("images/")),
                b'1' => |e| matches!(tar_source(e), Some((_, TarError::NotRegular { kind: '1', .. }))),
                _ => |e| matches!(tar_source(e), Some((_, TarError::NotRegular { kind: '5', .. }))),
            },
        });
    }
    // A member behind a lone zero block after the last image: a reader
    // that stops at the first zero block never sees it, one that reads on
    // (GNU tar -i) does. Nothing may follow the end marker but zeros.
    let mut b = raw_archive(&[(MANIFEST_NAME, &mb), (SIGNATURES_NAME, &sb), (&name0, img)]);
    let end = b.len() - 1024;
    b.truncate(end + 512);
    b.extend_from_slice(&evil_header("extra.sh", 8));
    b.extend_from_slice(b"rm -rf /");
    b.resize(b.len() + 504 + 1024, 0);
    v.push(Case {
        name: "member hidden after a lone zero block",
        bytes: b,
        when: When::DuringWrite,
        check: |e| matches!(bundle_err(e), Some(BundleError::AfterEnd { .. })),
    });
    // One bit of the payload header's mtime changed: the checksum says so.
    let mut b = good.to_vec();
    b[payload_at + 140] ^= 1;
    v.push(Case {
        name: "bad checksum in payload header",
        bytes: b,
        when: When::DuringWrite,
        check: |e| matches!(tar_source(e), Some((_, TarError::Checksum { .. }))),
    });
    // The payload's name split into prefix "images" and name
    // "00-rootfs.img": it would join to the expected name.
    let mut b = good.to_vec();
    let h: &mut [u8; 512] = (&mut b[payload_at..payload_at + 512]).try_into().unwrap();
    h[..100].fill(0);
    h[..13].copy_from_slice(b"00-rootfs.img");
    h[345..351].copy_from_slice(b"images");
    fix_checksum(h);
    v.push(Case {
        name: "payload name in the ustar prefix",
        bytes: b,
        when: When::DuringWrite,
        check: |e| matches!(tar_source(e), Some((_, TarError::Prefix { name })) if name == "00-rootfs.img"),
    });
    // Base-256 sizes: a manifest header claiming 1 TiB is refused before
    // a byte of it is read; a payload header of u64::MAX cannot be
    // skipped or padded; a negative one is malformed.
    let base256 = |b: &mut [u8], at: usize, lead: [u8; 4], n: u64| {
        let h: &mut [u8; 512] = (&mut b[at..at + 512]).try_into().unwrap();
        h[124..128].copy_from_slice(&lead);
        h[128..136].copy_from_slice(&n.to_be_bytes());
        fix_checksum(h);
    };
    let mut b = good.to_vec();
    base256(&mut b, 0, [0x80, 0, 0, 0], 1 << 40);
    v.push(Case {
        name: "base-256 manifest size of 1 TiB",
        bytes: b,
        when: When::BeforeWrite,
        check: |e| matches!(bundle_err(e), Some(BundleError::TooLarge { what: "manifest", size, .. }) if *size == 1 << 40),
    });
    let mut b = good.to_vec();
    base256(&mut b, payload_at, [0x80, 0, 0, 0], u64::MAX);
    v.push(Case {
        name: "base-256 payload size u64::MAX",
        bytes: b,
        when: When::DuringWrite,
        check: |e| {
            matches!(
                tar_source(e),
                Some((_, TarError::Size { size: u64::MAX, .. }))
            )
        },
    });
    let mut b = good.to_vec();
    base256(&mut b, payload_at, [0xff, 0xff, 0xff, 0xff], u64::MAX);
    v.push(Case {
        name: "negative base-256 payload size",
        bytes: b,
        when: When::DuringWrite,
        check: |e| matches!(tar_source(e), Some((_, TarError::Number { field: "size" }))),
    });
    v
}

/// Manifests at and past their limits: image count, image size, chunk
/// count, and a zstd window beyond ZSTD_WINDOW_LOG_MAX.
fn manifest_limit_cases(fx: &Fx, img: &[u8]) -> Vec<Case> {
    let mut v = Vec::new();
    let mut m0 = manifest_for("1.1.0", &[("rootfs", img)]);
    m0.images.clear();
    v.push(Case {
        name: "manifest with 0 images",
        when: When::BeforeWrite,
        bytes: signed_bundle(&m0, &[], &fx.key),
        check: |e| {
            matches!(
                bundle_err(e),
                Some(BundleError::Manifest(ManifestError::NoImages))
            )
        },
    });
    let classes: Vec<String> = (0..33).map(|i| format!("c{i}")).collect();
    let many: Vec<(&str, &[u8])> = classes.iter().map(|c| (c.as_str(), &img[..10])).collect();
    let m33 = manifest_for("1.1.0", &many);
    v.push(Case {
        name: "manifest with 33 images",
        when: When::BeforeWrite,
        bytes: signed_bundle(&m33, &[], &fx.key),
        check: |e| {
            matches!(
                bundle_err(e),
                Some(BundleError::Manifest(ManifestError::TooManyImages(33)))
            )
        },
    });
    let mz = manifest_for("1.1.0", &[("rootfs", b"")]);
    v.push(Case {
        name: "image of size 0",
        when: When::BeforeWrite,
        bytes: signed_bundle(&mz, &[b""], &fx.key),
        check: |e| {
            matches!(
                bundle_err(e),
                Some(BundleError::Manifest(ManifestError::ZeroSize { index: 0 }))
            )
        },
    });
    // More chunks than an index may have: refused from the manifest,
    // before the slot size is even compared.
    let mut mc = manifest_for("1.1.0", &[("rootfs", img)]);
    mc.images[0].size = (MAX_CHUNKS + 1) * 4096;
    mc.images[0].payload_size = mc.images[0].size;
    mc.images[0].chunks = Some(Chunks {
        size: 4096,
        sha256: "ab".repeat(32),
    });
    v.push(Case {
        name: "too many chunks in chunk index",
        when: When::BeforeWrite,
        bytes: signed_bundle(&mc, &[], &fx.key),
        check: |e| matches!(bundle_err(e), Some(BundleError::Manifest(ManifestError::Chunks { index: 0, what })) if what.contains("at most")),
    });
    // An unframed zstd payload whose frame asks for a 128 MiB window: the
    // decoder refuses it before allocating (window_log_max).
    let z = zstd_with_window_log(img, ZSTD_WINDOW_LOG_MAX + 4);
    let mut mw = manifest_for("1.1.0", &[("rootfs", img)]);
    mw.images[0].compression = Compression::Zstd;
    mw.images[0].payload_size = z.len() as u64;
    v.push(Case {
        name: "zstd window beyond the limit",
        when: When::DuringWrite,
        bytes: signed_bundle(&mw, &[&z], &fx.key),
        check: |e| matches!(e, InstallError::Payload { source: PipelineError::Read { offset: 0, source }, .. }
            if source.to_string().contains("too much memory")),
    });
    v
}

/// One zstd frame of `data` whose header declares a window of 2^`log`
/// bytes (the data needs far less, so only the header says it).
fn zstd_with_window_log(data: &[u8], log: u32) -> Vec<u8> {
    use zstd::zstd_safe::{CCtx, CParameter};
    let mut c = CCtx::create();
    c.set_parameter(CParameter::ContentSizeFlag(false)).unwrap();
    let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(data.len()));
    c.compress2(&mut out, data).unwrap();
    assert_eq!(
        out[4] & 0x20,
        0,
        "no single-segment frame: it has a window descriptor"
    );
    out[5] = ((log - 10) << 3) as u8;
    out
}

fn frame_read_error(e: &InstallError, want: &str) -> bool {
    matches!(e, InstallError::Payload { source: PipelineError::Read { source, .. }, .. }
        if source.to_string().contains(want))
}

fn evil_header(name: &str, size: u64) -> [u8; 512] {
    let mut b = [0u8; 512];
    b[..name.len()].copy_from_slice(name.as_bytes());
    b[100..107].copy_from_slice(b"0000644");
    b[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
    b[136..147].copy_from_slice(b"00000000000");
    b[156] = b'0';
    b[257..263].copy_from_slice(b"ustar\0");
    b[263..265].copy_from_slice(b"00");
    b[148..156].fill(b' ');
    let sum: u32 = b.iter().map(|&x| x as u32).sum();
    b[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    b
}

#[test]
fn every_hostile_bundle_is_refused_and_the_booted_slot_untouched() {
    let fx = Fx::new(&["rootfs"]);
    let all = cases(&fx);
    assert!(all.len() >= 15);
    for (i, c) in all.iter().enumerate() {
        refused(&fx, i, c);
    }
}

/// Installs case `i` and checks it is refused as the case says, the booted
/// slot untouched and the target never marked valid.
fn refused(fx: &Fx, i: usize, c: &Case) {
    let booted = fx.slot(SlotGroup::A, "rootfs");
    let target_before = fx.slot(SlotGroup::B, "rootfs");
    let path = fx.path(&format!("hostile-{i}.tnd"));
    std::fs::write(&path, &c.bytes).unwrap();
    let e = match fx.install(&path) {
        Ok(_) => panic!("case {i} ({}) was installed", c.name),
        Err(e) => e,
    };
    assert!((c.check)(&e), "case {i} ({}): wrong error: {e}", c.name);
    let outcome = tandem::ops::install_outcome(&e);
    assert_eq!(
        outcome,
        tandem::ops::Outcome::Refused,
        "case {i} ({}): not classified as a refusal",
        c.name
    );
    assert_eq!(
        fx.slot(SlotGroup::A, "rootfs"),
        booted,
        "case {i} ({}): booted slot changed",
        c.name
    );
    let st = fx.state();
    let target_state = st.slot(SlotGroup::B).state;
    assert_ne!(target_state, SlotState::Installed, "case {i} ({})", c.name);
    assert!(st
        .last_operation
        .unwrap()
        .error
        .unwrap()
        .contains(&e.to_string()[..20.min(e.to_string().len())]));
    if c.when == When::BeforeWrite {
        assert_eq!(
            fx.slot(SlotGroup::B, "rootfs"),
            target_before,
            "case {i} ({}): target written",
            c.name
        );
    } else {
        assert_eq!(target_state, SlotState::Invalid, "case {i} ({})", c.name);
    }
    eprintln!("case {i:2} {:<34} -> {e}", c.name);
}

/// Signature lists that try to reach a threshold of two, or hide a bad
/// signature beside good ones, on a device trusting two keys.
#[test]
fn signature_tricks_against_a_threshold_of_two_are_refused() {
    let fx = Fx::two_trusted_keys_threshold_two();
    let img = pattern(20_000, 3);
    let m = manifest_for("1.1.0", &[("rootfs", &img)]);
    let mb = m.to_bytes();
    let name0 = member_name(0, &m.images[0]);
    let bundle = |sigs: &SignatureList| {
        raw_archive(&[
            (MANIFEST_NAME, &mb),
            (SIGNATURES_NAME, &sigs.to_bytes()),
            (&name0, &img),
        ])
    };
    let one = SignatureList::parse(&sign(&mb, &[&fx.key])).unwrap();
    let mut twice = one.clone();
    twice.signatures.push(one.signatures[0].clone());
    // The other trusted key's signature, but over different bytes.
    let mut other_bad = one.clone();
    let other = SignatureList::parse(&sign(b"another manifest", &[&fx.other_key])).unwrap();
    other_bad.signatures.push(other.signatures[0].clone());
    // Both good, then a corrupt copy of the first: still refused.
    let mut good_and_bad = SignatureList::parse(&sign(&mb, &[&fx.key, &fx.other_key])).unwrap();
    let mut corrupt = good_and_bad.signatures[0].clone();
    corrupt.signature = flip_signature_bit(&corrupt.signature);
    good_and_bad.signatures.push(corrupt);
    let cases = [
        Case {
            name: "one signature listed twice",
            when: When::BeforeWrite,
            bytes: bundle(&twice),
            // One key counted twice is still one key.
            check: |e| {
                matches!(
                    bundle_err(e),
                    Some(BundleError::Signature(SignatureError::BelowThreshold {
                        valid: 1,
                        threshold: 2
                    }))
                )
            },
        },
        Case {
            name: "good signature beside a bad one of another trusted key",
            when: When::BeforeWrite,
            bytes: bundle(&other_bad),
            check: |e| {
                matches!(
                    bundle_err(e),
                    Some(BundleError::Signature(SignatureError::Bad { .. }))
                )
            },
        },
        Case {
            name: "two good signatures and a corrupt copy of one",
            when: When::BeforeWrite,
            bytes: bundle(&good_and_bad),
            // Refused, not ignored: see SignatureList::verify.
            check: |e| {
                matches!(
                    bundle_err(e),
                    Some(BundleError::Signature(SignatureError::Bad { .. }))
                )
            },
        },
    ];
    for (i, c) in cases.iter().enumerate() {
        refused(&fx, 100 + i, c);
    }
}

/// A tar's record padding after the end marker is fine; past END_SLACK it
/// is refused like any other data there.
#[test]
fn zero_padding_after_the_end_marker() {
    let fx = Fx::new(&["rootfs"]);
    let img = pattern(5000, 4);
    let good = signed_bundle(
        &manifest_for("1.1.0", &[("rootfs", &img)]),
        &[&img],
        &fx.key,
    );
    let padded = |zeros: u64| {
        let mut b = good.clone();
        b.resize(b.len() + zeros as usize, 0);
        let path = fx.path(&format!("padded-{zeros}.tnd"));
        std::fs::write(&path, b).unwrap();
        path
    };
    // GNU tar pads to 10 KiB records.
    fx.install(&padded(10240 - (good.len() as u64 % 10240)))
        .unwrap();
    let e = fx.install(&padded(END_SLACK + 1024)).unwrap_err();
    assert!(
        matches!(bundle_err(&e), Some(BundleError::AfterEnd { .. })),
        "{e}"
    );
}

/// The base64 signature with one bit of its first byte flipped.
fn flip_signature_bit(b64: &str) -> String {
    use base64::engine::general_purpose::STANDARD as B64;
    use base64::Engine as _;
    let mut raw = B64.decode(b64).unwrap();
    raw[0] ^= 1;
    B64.encode(raw)
}

#[test]
fn lower_security_epoch_refused_even_with_allow_downgrade() {
    let mut fx = Fx::new(&["rootfs"]);
    fx.extra_image_config = "[image]\nsecurity_epoch = 3\n".into();
    let img = pattern(1000, 1);
    let b = fx.bundle_with(
        "e.tnd",
        "5.0.0",
        2,
        "tandem-test",
        &[("rootfs", &img, Compression::None)],
        std::slice::from_ref(&fx.key),
    );
    let snap = fx.snapshot();
    let e = fx
        .install_opts(
            &b,
            &tandem::install::Options {
                allow_downgrade: true,
                force: true,
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(
        matches!(
            e,
            InstallError::Policy(PolicyError::Epoch {
                bundle: 2,
                floor: 3
            })
        ),
        "{e}"
    );
    assert_eq!(fx.snapshot(), snap);
}

#[test]
fn below_threshold_refused() {
    let fx = Fx::two_trusted_keys_threshold_two();
    let b = fx.bundle(
        "t.tnd",
        "1.1.0",
        &[("rootfs", &pattern(1000, 1), Compression::None)],
    );
    let snap = fx.snapshot();
    let e = fx.install(&b).unwrap_err();
    assert!(
        matches!(
            e,
            InstallError::Bundle(BundleError::Signature(SignatureError::BelowThreshold {
                valid: 1,
                threshold: 2
            }))
        ),
        "{e}"
    );
    assert_eq!(fx.snapshot(), snap);
}

#[test]
fn a_failed_install_after_a_good_one_leaves_the_target_invalid() {
    let fx = Fx::new(&["rootfs"]);
    let img = pattern(300_000, 7);
    fx.install(&fx.bundle("ok.tnd", "1.1.0", &[("rootfs", &img, Compression::None)]))
        .unwrap();
    assert_eq!(fx.state().slot(SlotGroup::B).state, SlotState::Installed);
    let m = manifest_for("1.2.0", &[("rootfs", &img)]);
    let mut b = signed_bundle(&m, &[&img], &fx.key);
    let n = b.len();
    b.truncate(n - 1024 - 200_000);
    std::fs::write(fx.path("cut.tnd"), &b).unwrap();
    assert!(fx.install(&fx.path("cut.tnd")).is_err());
    let st = fx.state();
    assert_eq!(st.slot(SlotGroup::B).state, SlotState::Invalid);
    assert_eq!(
        st.slot(SlotGroup::B).version,
        None,
        "no stale version on an invalid slot"
    );
}

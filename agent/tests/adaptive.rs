//! Content-defined chunk tables: full installs that check every chunk
//! before writing it, and adaptive installs that take what the booted slot
//! already has and fetch the rest by byte range (file and HTTP sources).

mod common;

use common::*;
use tandem::bundle::manifest::Compression;
use tandem::bundle::UnverifiedBundle;
use tandem::slot::SlotGroup;

/// An image like a filesystem: runs of distinct data, zeros, repeats.
fn fs_image(len: usize, seed: u8) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    let mut s = u64::from(seed) * 0x9e37_79b9 + 1;
    while v.len() < len {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        let run = 4096 * (1 + (s % 16) as usize);
        if s % 5 == 0 {
            v.extend(std::iter::repeat_n(0u8, run));
        } else {
            let mut t = s;
            v.extend((0..run).map(|_| {
                t ^= t << 13;
                t ^= t >> 7;
                t ^= t << 17;
                // Compressible, like text and code.
                b"abcdefghij"[(t % 10) as usize]
            }));
        }
    }
    v.truncate(len);
    v
}

fn cdc_fx() -> Fx {
    let mut fx = Fx::new(&["rootfs"]);
    fx.cdc = Some(tandem::bundle::cdc::DEFAULT);
    fx
}

#[test]
fn a_cdc_bundle_installs_and_every_chunk_is_checked() {
    for compression in [Compression::Zstd, Compression::None] {
        let fx = cdc_fx();
        let img = fs_image(3 << 20, 1);
        let b = fx.bundle("u.tnd", "1.1.0", &[("rootfs", &img, compression)]);
        let m = UnverifiedBundle::open(std::fs::File::open(&b).unwrap())
            .unwrap()
            .manifest()
            .clone();
        let c = m.images[0].cdc.as_ref().expect("a chunk table");
        assert!(c.count > 100, "{c:?}");
        assert!(m.images[0].frame_size.is_none() && m.images[0].chunks.is_none());
        fx.install(&b).unwrap();
        assert!(
            fx.slot(SlotGroup::B, "rootfs")[..img.len()] == img[..],
            "{compression:?}"
        );
    }
}

#[test]
fn a_tampered_chunk_is_refused_before_it_is_written() {
    let fx = cdc_fx();
    let img = fs_image(2 << 20, 2);
    let b = fx.bundle("u.tnd", "1.1.0", &[("rootfs", &img, Compression::None)]);
    let mut data = std::fs::read(&b).unwrap();
    // A byte in the middle of the payload (uncompressed: image bytes).
    let at = data.len() / 2;
    data[at] ^= 0x20;
    std::fs::write(&b, &data).unwrap();
    let before = fx.slot(SlotGroup::B, "rootfs");
    let e = fx.install(&b).unwrap_err().to_string();
    assert!(e.contains("does not match the chunk index"), "{e}");
    let after = fx.slot(SlotGroup::B, "rootfs");
    // Only whole verified chunks before the bad one were written; the
    // header region (first 128 KiB) was zeroed, nothing past the chunk.
    let changed_end = after
        .iter()
        .zip(&before)
        .rposition(|(a, b)| a != b)
        .unwrap_or(0);
    assert!(
        changed_end < at,
        "bytes at or after the tampered chunk were written"
    );
}

use common::http::serve;
use tandem::install::{adaptive, Options};

/// v2 from v1: some blocks rewritten, a run inserted (everything after it
/// shifts, as when a file grows in a rebuilt filesystem), a tail appended.
fn v2_of(v1: &[u8]) -> Vec<u8> {
    let mut v2 = v1.to_vec();
    for at in [100_000usize, 900_000, 1_700_000] {
        v2[at..at + 4096].fill(0x5a);
    }
    v2.splice(1_200_000..1_200_000, fs_image(40_000, 99));
    v2.truncate(v1.len());
    v2
}

/// A device booted from `booted` in slot a, a bundle of `new` on HTTP.
fn serve_update(booted: &[u8], new: &[u8]) -> (Fx, common::http::Server, u64) {
    let mut fx = cdc_fx();
    fx.extra_config = "[http]\nstall_timeout_secs = 2\nretries = 1\n".into();
    let mut slot = booted.to_vec();
    slot.resize(SLOT_SIZE as usize, 0);
    std::fs::write(fx.path("rootfs-a.img"), slot).unwrap();
    let b = fx.bundle("u.tnd", "1.1.0", &[("rootfs", new, Compression::Zstd)]);
    let bytes = std::fs::read(b).unwrap();
    let len = bytes.len() as u64;
    (fx, serve(bytes, vec![]), len)
}

fn install(fx: &Fx, url: &str) -> Result<tandem::install::Report, tandem::ops::Error> {
    tandem::ops::install(&fx.settings(), url, &Options::default(), &mut |_| {})
}

#[test]
fn only_what_the_booted_slot_lacks_is_fetched() {
    let v1 = fs_image(3 << 20, 7);
    let v2 = v2_of(&v1);
    let (fx, s, bundle_len) = serve_update(&v1, &v2);
    let r = install(&fx, &s.url).unwrap();
    assert!(fx.slot(SlotGroup::B, "rootfs")[..v2.len()] == v2[..]);
    let t = r.transfer.expect("an adaptive install");
    let sent = s.log.lock().unwrap().sent;
    assert!(!t.full, "{t:?}");
    assert!(t.reused > 2 * (v2.len() as u64) / 3, "{t:?}");
    // The server sent what the install says it fetched, and far less than
    // the bundle.
    assert!(
        sent <= t.fetched,
        "server sent {sent}, install counted {t:?}"
    );
    assert!(sent < bundle_len / 4, "sent {sent} of {bundle_len}");
    let ranges = s.log.lock().unwrap().ranges.clone();
    assert_eq!(ranges.len() as u64, t.requests, "{ranges:?}");
    assert!(ranges.iter().all(|r| r.starts_with("bytes=")), "{ranges:?}");
    assert!(ranges.len() < 30, "coalesced: {ranges:?}");
}

/// By range too, an install fetches only its own group's variant.
#[test]
fn an_adaptive_install_skips_the_other_groups_image() {
    let mut fx = Fx::new(&["rootfs", "uki"]);
    fx.cdc = Some(tandem::bundle::cdc::DEFAULT);
    fx.extra_config = "[http]\nstall_timeout_secs = 2\nretries = 1\n".into();
    let root = fs_image(1 << 20, 30);
    let (for_a, for_b) = (fs_image(600_000, 31), fs_image(600_000, 32));
    let b = fx.bundle(
        "u.tnd",
        "1.1.0",
        &[
            ("rootfs", &root, Compression::Zstd),
            ("uki@a", &for_a, Compression::None),
            ("uki@b", &for_b, Compression::None),
        ],
    );
    let bytes = std::fs::read(b).unwrap();
    let len = bytes.len() as u64;
    let s = serve(bytes, vec![]);
    let r = install(&fx, &s.url).unwrap();
    assert!(r.transfer.is_some(), "adaptive");
    assert!(fx.slot(SlotGroup::B, "uki")[..for_b.len()] == for_b[..]);
    // a's variant is stored uncompressed: fetching it would show.
    let sent = s.log.lock().unwrap().sent;
    assert!(sent + 550_000 < len, "sent {sent} of {len}");
}

#[test]
fn reinstalling_what_runs_fetches_almost_nothing() {
    let v1 = fs_image(3 << 20, 8);
    let (fx, s, bundle_len) = serve_update(&v1, &v1);
    let r = install(&fx, &s.url).unwrap();
    assert!(fx.slot(SlotGroup::B, "rootfs")[..v1.len()] == v1[..]);
    let t = r.transfer.unwrap();
    // The booted slot starts with the image (its hash matches the
    // manifest's): it is copied, and not even the chunk table is fetched.
    assert_eq!(t.reused, v1.len() as u64, "{t:?}");
    assert!(!t.full, "{t:?}");
    let log = s.log.lock().unwrap();
    // The head and the end of the archive.
    assert_eq!(log.ranges.len(), 2, "{:?}", log.ranges);
    assert_eq!(t.requests, 2, "{t:?}");
    let table = (v1.len() as u64 / (16 << 10)) * 40;
    assert!(
        log.sent < (20 << 10) && log.sent < table + (16 << 10),
        "sent {} of {bundle_len}: {t:?}",
        log.sent
    );
}

/// An install that stopped part-way (power cut, cancelled) left most of
/// the new image in the target slot: the next attempt fetches only what
/// is not there yet, and the slot still ends up the image byte for byte.
#[test]
fn an_interrupted_install_resumes_from_what_the_target_holds() {
    let v1 = fs_image(3 << 20, 21);
    let v3 = fs_image(3 << 20, 22); // nothing in common with v1
    let (fx, s, _) = serve_update(&v1, &v3);
    // The first 70 % arrived, but its header region was zeroed first.
    let mut target = vec![0xEEu8; SLOT_SIZE as usize];
    let done = v3.len() * 7 / 10;
    target[..done].copy_from_slice(&v3[..done]);
    target[..128 << 10].fill(0);
    std::fs::write(fx.path("rootfs-b.img"), &target).unwrap();
    let r = install(&fx, &s.url).unwrap();
    assert!(fx.slot(SlotGroup::B, "rootfs")[..v3.len()] == v3[..]);
    let t = r.transfer.unwrap();
    assert!(!t.full, "{t:?}");
    assert!(
        t.reused > (done as u64) - (256 << 10) && t.reused < done as u64,
        "the chunks in place, but not those in the header region: {t:?}"
    );
    // Against a target holding nothing of v3: the whole payload.
    let (fx, s, _) = serve_update(&v1, &v3);
    let r = install(&fx, &s.url).unwrap();
    assert!(r.transfer.unwrap().full);
}

/// A booted slot whose content is the image but for one byte is not
/// copied whole: the table is fetched and only the chunk that differs.
#[test]
fn a_booted_slot_one_byte_off_is_not_taken_for_the_image() {
    let v1 = fs_image(3 << 20, 8);
    let mut booted = v1.clone();
    booted[2 << 20] ^= 1;
    let (fx, s, _) = serve_update(&booted, &v1);
    let r = install(&fx, &s.url).unwrap();
    assert!(fx.slot(SlotGroup::B, "rootfs")[..v1.len()] == v1[..]);
    let t = r.transfer.unwrap();
    assert!(
        t.reused < v1.len() as u64 && t.reused > v1.len() as u64 - (128 << 10),
        "{t:?}"
    );
    assert!(t.requests >= 4, "head, table, a chunk, end: {t:?}");
}

#[test]
fn nothing_to_reuse_falls_back_to_the_whole_payload() {
    let v1 = fs_image(3 << 20, 9);
    let other = fs_image(3 << 20, 10);
    let (fx, s, bundle_len) = serve_update(&other, &v1);
    let r = install(&fx, &s.url).unwrap();
    assert!(fx.slot(SlotGroup::B, "rootfs")[..v1.len()] == v1[..]);
    let t = r.transfer.unwrap();
    assert!(t.full, "{t:?}");
    let sent = s.log.lock().unwrap().sent;
    assert!(
        sent <= bundle_len + (64 << 10),
        "never more than the bundle and a head: {sent} of {bundle_len}"
    );
}

#[test]
fn a_tampered_range_is_refused_and_nothing_is_armed() {
    let v1 = fs_image(3 << 20, 11);
    let v2 = v2_of(&v1);
    let mut fx = cdc_fx();
    let mut slot = v1.clone();
    slot.resize(SLOT_SIZE as usize, 0);
    std::fs::write(fx.path("rootfs-a.img"), slot).unwrap();
    fx.extra_config = "[http]\nretries = 0\n".into();
    let b = fx.bundle("u.tnd", "1.1.0", &[("rootfs", &v2, Compression::None)]);
    let mut bytes = std::fs::read(&b).unwrap();
    // Uncompressed: flip a byte of the inserted (fetched) run.
    let needle = &v2[1_200_000 + 20_000..1_200_000 + 20_064];
    let at = bytes.windows(64).position(|w| w == needle).unwrap();
    bytes[at + 10] ^= 1;
    let s = serve(bytes, vec![]);
    let e = install(&fx, &s.url).unwrap_err();
    assert_eq!(e.exit_code(), 4, "{e}");
    assert!(
        e.to_string().contains("does not match the chunk index"),
        "{e}"
    );
    let st = fx.state();
    assert!(st.slots[&SlotGroup::B].version.is_none() && !st.slots[&SlotGroup::B].armed);
}

/// The booted slot changed after it was indexed (or the index lied): the
/// chunk read from it does not match, so it is fetched instead, and the
/// slot still gets exactly the image.
#[test]
fn a_booted_chunk_that_does_not_match_is_fetched_instead() {
    use tandem::bundle::cdc;
    use tandem::install::pipeline;
    let d = tempfile::tempdir().unwrap();
    let img = fs_image(1 << 20, 12);
    // The payload: raw chunks; the table says where each is.
    let mut payload = Vec::new();
    let c = cdc::compress(&mut &img[..], &mut payload, &cdc::DEFAULT, None, 1).unwrap();
    let table = tandem::bundle::chunks::ChunkList::table_of(&c.entries, cdc::DEFAULT.max).unwrap();
    // A "booted slot" holding the image, but with one chunk damaged (one
    // whose content appears nowhere else).
    let unique = (0..table.len())
        .find(|&i| {
            (0..table.len())
                .filter(|&j| table.hash(j) == table.hash(i))
                .count()
                == 1
        })
        .unwrap();
    let mut booted = img.clone();
    let (a, _) = table.span(unique);
    booted[a as usize + 5] ^= 0xff;
    std::fs::write(d.path().join("booted"), &booted).unwrap();
    let reader = tandem::sys::SlotReader::open(&d.path().join("booted")).unwrap();
    // An index that claims every chunk is where it is in the image.
    let ix = adaptive::SlotIndex::of((0..table.len()).map(|i| {
        let (a, b) = table.span(i);
        (table.hash(i).try_into().unwrap(), a, (b - a) as u32)
    }));
    let plan = adaptive::plan(&table, &ix, &mut |_| false);
    assert!(plan.ranges.is_empty() && plan.reuse == img.len() as u64);
    let p = d.path().join("payload");
    std::fs::write(&p, &payload).unwrap();
    let src: tandem::fetch::Shared = std::sync::Arc::new(std::sync::Mutex::new(Box::new(
        tandem::fetch::FileSource::new(std::fs::File::open(&p).unwrap(), "payload"),
    )));
    let mut chunks = adaptive::Adaptive::new(&table, &plan, &reader, src, 0, false, None);
    let slot = d.path().join("slot");
    std::fs::write(&slot, vec![0u8; 2 << 20]).unwrap();
    let mut w = tandem::sys::SlotWriter::open(&slot, None).unwrap();
    pipeline::stream_chunks(
        &table,
        &mut chunks,
        &mut w,
        img.len() as u64,
        2,
        &mut |_| {},
    )
    .unwrap();
    assert!(std::fs::read(&slot).unwrap()[..img.len()] == img[..]);
    assert_eq!(chunks.stats.requests, 1, "one chunk fetched");
    assert_eq!(
        chunks.stats.reused,
        img.len() as u64 - (table.span(unique).1 - a)
    );
}

/// `tandem bundle diff OLD NEW`: what a device on OLD would fetch.
#[test]
fn bundle_diff_says_what_a_device_would_fetch() {
    let fx = cdc_fx();
    let v1 = fs_image(3 << 20, 13);
    let v2 = v2_of(&v1);
    let old = fx.bundle("old.tnd", "1.0.0", &[("rootfs", &v1, Compression::Zstd)]);
    let new = fx.bundle("new.tnd", "1.1.0", &[("rootfs", &v2, Compression::Zstd)]);
    let raw = fx.write_image("v1.img", &v1);
    let run = |old: &std::path::Path| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_tandem"))
            .args(["bundle", "diff"])
            .arg(old)
            .arg(&new)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    for out in [run(&old), run(&raw)] {
        let pct: f64 = out
            .rsplit_once(" bytes (")
            .and_then(|(_, r)| r.split_once(" %"))
            .and_then(|(p, _)| p.parse().ok())
            .unwrap_or_else(|| panic!("{out}"));
        assert!(pct > 0.0 && pct < 25.0, "{out}");
        assert!(
            out.contains("image 0 (rootfs):") && out.contains("reuse"),
            "{out}"
        );
    }
    // Against itself: the head only; not even the table.
    let same = run(&new);
    assert!(
        same.contains("holds it already: nothing to fetch"),
        "{same}"
    );
    assert!(same.contains("in 1 request(s)"), "{same}");
}

/// `bundle diff` with per-group images: an install into b reuses the
/// booted group's (a's) image and fetches only b's; `--into a` the other
/// way round. Once, OLD's images of one class overwrote each other (the
/// last one, b's, won) and both of NEW's counted.
#[test]
fn bundle_diff_counts_the_target_groups_image_against_the_booted_ones() {
    let fx = cdc_fx();
    let root = fs_image(1 << 20, 21);
    let (uki_a, uki_b) = (fs_image(1 << 20, 22), fs_image(1 << 20, 23));
    let old = fx.bundle(
        "old.tnd",
        "1.0.0",
        &[
            ("rootfs", &root, Compression::Zstd),
            ("uki@a", &uki_a, Compression::Zstd),
            ("uki@b", &uki_b, Compression::Zstd),
        ],
    );
    // NEW's b is OLD's a byte for byte, and NEW's a is OLD's b.
    let new = fx.bundle(
        "new.tnd",
        "1.1.0",
        &[
            ("rootfs", &root, Compression::Zstd),
            ("uki@a", &uki_b, Compression::Zstd),
            ("uki@b", &uki_a, Compression::Zstd),
        ],
    );
    let run = |into: &[&str]| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_tandem"))
            .args(["bundle", "diff"])
            .arg(&old)
            .arg(&new)
            .args(into)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    for (args, target, other, booted) in [
        (&[][..], "uki@b", "uki@a", "a"),
        (&["--into", "b"][..], "uki@b", "uki@a", "a"),
        (&["--into", "a"][..], "uki@a", "uki@b", "b"),
    ] {
        let out = run(args);
        let line = |label: &str| {
            out.lines()
                .find(|l| l.contains(&format!("({label}):")))
                .unwrap_or_else(|| panic!("no {label} in {out}"))
                .to_string()
        };
        assert!(line(target).contains("holds it already"), "{args:?}: {out}");
        assert!(
            line(other).contains("for the other group"),
            "{args:?}: {out}"
        );
        assert!(
            line("rootfs").contains("holds it already"),
            "{args:?}: {out}"
        );
        assert!(
            out.contains(&format!("in group {booted}, installing into")),
            "{args:?}: {out}"
        );
        assert!(out.contains("in 1 request(s)"), "{args:?}: {out}");
    }
}

//! Measures chunkings for adaptive updates on a pair of slot images:
//! for each chunking, the compressed size of all of NEW's chunks (the full
//! payload), of those not found in OLD (what a device on OLD fetches), and
//! the index; beside them the floor: NEW's 4 KiB blocks found nowhere in
//! OLD, compressed together. Used by bench/adaptive-bench.sh.
//!
//! cargo run --release --example chunkstat OLD NEW

use std::collections::HashSet;

use sha2::{Digest, Sha256};
use tandem::bundle::cdc::{self, Params};
use tandem::bundle::writer::ZSTD_LEVEL;

fn fixed(data: &[u8], size: usize) -> Vec<&[u8]> {
    data.chunks(size).collect()
}

fn cdc_chunks<'a>(data: &'a [u8], p: &Params) -> Vec<&'a [u8]> {
    let mut v = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let n = cdc::cut(rest, p);
        v.push(&rest[..n]);
        rest = &rest[n..];
    }
    v
}

/// A way of cutting an image into chunks.
type Chunker = Box<dyn Fn(&[u8]) -> Vec<&[u8]>>;

fn main() {
    let mut args: Vec<String> = std::env::args().collect();
    // --floor: print only the floor's compressed bytes.
    let floor_only = args.len() > 1 && args[1] == "--floor";
    if floor_only {
        args.remove(1);
    }
    let old = std::fs::read(&args[1]).expect("OLD");
    let new = std::fs::read(&args[2]).expect("NEW");
    // Each chunk one zstd frame, as `bundle create` stores them.
    let mut enc = zstd::bulk::Compressor::new(ZSTD_LEVEL).unwrap();
    enc.include_checksum(false).unwrap();
    let mut z = |c: &[u8]| enc.compress(c).unwrap().len() as u64;
    // The floor.
    let old_blocks: HashSet<[u8; 32]> =
        old.chunks(4096).map(|b| Sha256::digest(b).into()).collect();
    let mut missing = Vec::new();
    for b in new.chunks(4096) {
        if !old_blocks.contains(&<[u8; 32]>::from(Sha256::digest(b))) {
            missing.extend_from_slice(b);
        }
    }
    let floor = zstd::bulk::compress(&missing, ZSTD_LEVEL).unwrap().len();
    if floor_only {
        println!("{floor}");
        return;
    }
    println!(
        "floor: {} new 4 KiB blocks of {} ({:.2} %), {} bytes compressed",
        missing.len() / 4096,
        new.len() / 4096,
        100.0 * missing.len() as f64 / new.len() as f64,
        floor
    );
    println!(
        "{:<22} {:>8} {:>12} {:>12} {:>7} {:>10} {:>7}",
        "chunking", "chunks", "full", "fetch", "fetch%", "index", "x floor"
    );
    let configs: Vec<(String, Chunker)> = vec![
        ("fixed 1 MiB".into(), Box::new(|d| fixed(d, 1 << 20))),
        ("fixed 64 KiB".into(), Box::new(|d| fixed(d, 64 << 10))),
        ("fixed 16 KiB".into(), Box::new(|d| fixed(d, 16 << 10))),
        ("fixed 4 KiB".into(), Box::new(|d| fixed(d, 4 << 10))),
        (
            "cdc 2/8/32 KiB".into(),
            Box::new(|d| {
                cdc_chunks(
                    d,
                    &Params {
                        min: 2 << 10,
                        avg: 8 << 10,
                        max: 32 << 10,
                    },
                )
            }),
        ),
        (
            "cdc 4/8/64 KiB".into(),
            Box::new(|d| cdc_chunks(d, &cdc::DEFAULT)),
        ),
        (
            "cdc 4/16/64 KiB".into(),
            Box::new(|d| {
                cdc_chunks(
                    d,
                    &Params {
                        min: 4 << 10,
                        avg: 16 << 10,
                        max: 64 << 10,
                    },
                )
            }),
        ),
        (
            "cdc 8/32/128 KiB".into(),
            Box::new(|d| {
                cdc_chunks(
                    d,
                    &Params {
                        min: 8 << 10,
                        avg: 32 << 10,
                        max: 128 << 10,
                    },
                )
            }),
        ),
        (
            "cdc 16/64/256 KiB".into(),
            Box::new(|d| {
                cdc_chunks(
                    d,
                    &Params {
                        min: 16 << 10,
                        avg: 64 << 10,
                        max: 256 << 10,
                    },
                )
            }),
        ),
    ];
    for (name, f) in &configs {
        let have: HashSet<[u8; 32]> = f(&old).iter().map(|c| Sha256::digest(c).into()).collect();
        let (mut full, mut fetch, mut n) = (0u64, 0u64, 0u64);
        let mut seen = HashSet::new();
        for c in f(&new) {
            let size = z(c);
            full += size;
            n += 1;
            let h: [u8; 32] = Sha256::digest(c).into();
            // A chunk repeated within NEW is fetched once.
            if !have.contains(&h) && seen.insert(h) {
                fetch += size;
            }
        }
        let index = n * 40;
        println!(
            "{:<22} {:>8} {:>12} {:>12} {:>6.2}% {:>10} {:>7.2}",
            name,
            n,
            full,
            fetch + index,
            100.0 * (fetch + index) as f64 / full as f64,
            index,
            (fetch + index) as f64 / floor.max(1) as f64
        );
    }
}

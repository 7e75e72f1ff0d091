//! Replays the inputs kept under fuzz/regressions/<target>/ — minimized
//! crashers of the fuzz targets, each one a bug that was fixed — through
//! the same checks the fuzz targets run (fuzz/checks/<target>.rs, compiled
//! here against this crate). A regression panics here as it did there.
//! `scripts/fuzz.sh` adds these inputs to each target's corpus as well.

use std::path::PathBuf;

#[path = "../../fuzz/checks/bls_entry.rs"]
mod bls_entry;
#[path = "../../fuzz/checks/bundle.rs"]
mod bundle;
#[path = "../../fuzz/checks/chunk_index.rs"]
mod chunk_index;
#[path = "../../fuzz/checks/config.rs"]
mod config;
#[path = "../../fuzz/checks/frames.rs"]
mod frames;
#[path = "../../fuzz/checks/grubenv.rs"]
mod grubenv;
#[path = "../../fuzz/checks/manifest.rs"]
mod manifest;
#[path = "../../fuzz/checks/signatures.rs"]
mod signatures;
#[path = "../../fuzz/checks/state.rs"]
mod state;
#[path = "../../fuzz/checks/tar_header.rs"]
mod tar_header;
#[path = "../../fuzz/checks/tuf_metadata.rs"]
mod tuf_metadata;
#[path = "../../fuzz/checks/uboot_env.rs"]
mod uboot_env;
#[path = "../../fuzz/checks/uboot_text.rs"]
mod uboot_text;

type Check = fn(&[u8]);

/// Runs every input kept for `target`; returns how many there were.
fn replay(target: &str, check: Check) -> usize {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/regressions")
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return 0;
    };
    let mut paths: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
    paths.sort();
    for p in &paths {
        let data = std::fs::read(p).unwrap();
        eprintln!("{target}: {}", p.display());
        check(&data);
    }
    paths.len()
}

#[test]
fn every_kept_input_passes_its_target_check() {
    let targets: [(&str, Check); 13] = [
        ("bls_entry", bls_entry::check),
        ("bundle", bundle::check),
        ("chunk_index", chunk_index::check),
        ("config", config::check),
        ("frames", frames::check),
        ("grubenv", grubenv::check),
        ("manifest", |d| {
            manifest::check(d);
        }),
        ("signatures", signatures::check),
        ("state", state::check),
        ("tar_header", tar_header::check),
        ("tuf_metadata", tuf_metadata::check),
        ("uboot_env", uboot_env::check),
        ("uboot_text", uboot_text::check),
    ];
    let n: usize = targets.iter().map(|(t, c)| replay(t, *c)).sum();
    assert!(n > 0, "no regression inputs found under fuzz/regressions/");
}

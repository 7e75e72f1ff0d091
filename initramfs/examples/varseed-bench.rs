//! How long `/var` seeding takes on a real filesystem: builds a tree like
//! the debian image's `/var` (FILES files of about 3 KiB in DIRS
//! directories, the dpkg database's shape) and seeds an empty directory
//! on the filesystem under test from it, twice (the second time finds
//! everything there), and prints the times.
//!
//! `cargo run --release -p tandem-initramfs --example varseed-bench -- DIR`
//! with DIR on the filesystem to measure (an ext4 on a loop device:
//! bench/varseed-bench.sh). Environment: FILES (default 729), DIRS (40).

use std::path::Path;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(dir) = args.get(1) else {
        eprintln!("usage: varseed-bench DIR (on the filesystem to measure)");
        std::process::exit(2);
    };
    let num = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let (files, dirs) = (num("FILES", 729), num("DIRS", 40).max(1));
    let root = Path::new(dir);
    let (image, data) = (root.join("image/var"), root.join("data/var"));
    for i in 0..files {
        let d = image.join(format!("lib/d{}", i % dirs));
        std::fs::create_dir_all(&d).expect("mkdir");
        let body = format!("Package: p{i}\n").repeat(200);
        std::fs::write(d.join(format!("p{i}.list")), body).expect("write");
    }
    std::fs::create_dir_all(&data).expect("mkdir data");
    let stamp = root.join("data").join(tandem_initramfs::varseed::STAMP);
    let t = Instant::now();
    let out = tandem_initramfs::varseed::run(&image, &data, &stamp, "1.0.0").expect("seed");
    let first = t.elapsed();
    let t = Instant::now();
    let again = tandem_initramfs::varseed::run(&image, &data, &stamp, "1.1.0").expect("seed");
    let second = t.elapsed();
    println!(
        "varseed: {files} files in {dirs} directories: first boot {:.3} s ({out:?}), next image {:.3} s ({again:?})",
        first.as_secs_f64(),
        second.as_secs_f64()
    );
}

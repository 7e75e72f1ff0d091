//! `tandem-qemu`: the rig's command line. Subcommands:
//! - `relay ADDR` — byte relay used by QEMU's guestfwd (internal);
//! - `boot DISK --expect MARKER [--timeout S] [--arch aarch64 --uboot-env ENV]`
//!   — boot a disk, wait for a marker.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use tandem_qemu::{Arch, Disk, Vm, VmConfig};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args.first().map(String::as_str) {
        Some("relay") if args.len() == 2 => tandem_qemu::http::relay(&args[1]).map_err(|e| e.to_string()),
        Some("boot") if args.len() >= 2 => boot(&args[1..]),
        Some("demo") if args.len() >= 2 => demo(&args[1..]),
        Some("scenarios") if args.len() >= 2 => scenarios(&args[1..]),
        _ => Err("usage: tandem-qemu demo IMAGES_DIR [--tandem PATH]\n       tandem-qemu scenarios IMAGES_DIR [--power-cuts N] [--only NUMBER|NAME[,...]] [--seed S] [--cut-phases N] [--tandem PATH]\n       tandem-qemu boot DISK.img [--expect MARKER] [--timeout SECONDS] [--arch x86_64|aarch64] [--uboot-env ENV.img]\n       tandem-qemu relay HOST:PORT".into()),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn scenarios(args: &[String]) -> Result<(), String> {
    let images = PathBuf::from(&args[0]);
    let mut cuts = 20usize;
    let mut only: Option<String> = None;
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(1);
    let mut tandem = PathBuf::from("tandem");
    let mut phases = usize::MAX;
    let mut it = args[1..].iter();
    while let Some(a) = it.next() {
        let v = it.next().ok_or(format!("{a} needs a value"))?;
        match a.as_str() {
            "--power-cuts" => cuts = v.parse().map_err(|_| format!("bad number {v}"))?,
            "--only" => only = Some(v.clone()),
            "--seed" => seed = v.parse().map_err(|_| format!("bad seed {v}"))?,
            "--tandem" => tandem = PathBuf::from(v),
            "--cut-phases" => phases = v.parse().map_err(|_| format!("bad number {v}"))?,
            _ => return Err(format!("unknown option {a}")),
        }
    }
    // Before any setup: a typo in --only fails at once.
    let suite = tandem_qemu::scenarios::select(
        tandem_qemu::scenarios::suite_with_phases(cuts, seed, phases),
        only.as_deref(),
    )?;
    let work = std::env::temp_dir().join(format!("tandem-scenarios-{}", std::process::id()));
    let mut fx = tandem_qemu::scenario::Fixture::new(&images, &work).map_err(|e| e.to_string())?;
    tandem_qemu::scenarios::make_hostile_bundles(&fx.images, &tandem).map_err(|e| e.to_string())?;
    fx.tandem = Some(tandem.clone());
    println!(
        "scenarios: images {}, logs {}, power cuts {cuts}, seed {seed}, accel {}",
        fx.images.display(),
        work.display(),
        fx.accel
    );
    let start = std::time::Instant::now();
    let (passed, failed) = tandem_qemu::scenarios::run_all(&fx, suite);
    println!(
        "scenarios finished in {:.0} s",
        start.elapsed().as_secs_f64()
    );
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        return Err(format!(
            "{failed} scenario(s) failed; logs in {}",
            work.display()
        ));
    }
    // TANDEM_QEMU_KEEP_LOGS=1 keeps the consoles of a run that passed.
    if std::env::var("TANDEM_QEMU_KEEP_LOGS").as_deref() == Ok("1") {
        println!("logs kept in {}", work.display());
    } else {
        let _ = std::fs::remove_dir_all(&work);
    }
    Ok(())
}

fn demo(args: &[String]) -> Result<(), String> {
    let images = PathBuf::from(&args[0]);
    let tandem = match &args[1..] {
        [] => PathBuf::from("tandem"),
        [o, v] if o == "--tandem" => PathBuf::from(v),
        _ => return Err("usage: tandem-qemu demo IMAGES_DIR [--tandem PATH]".into()),
    };
    let work = std::env::temp_dir().join(format!("tandem-demo-{}", std::process::id()));
    let mut fx = tandem_qemu::scenario::Fixture::new(&images, &work).map_err(|e| e.to_string())?;
    fx.tandem = Some(tandem);
    println!(
        "demo: images from {}, VM logs in {}",
        images.display(),
        work.display()
    );
    let t = tandem_qemu::channel::demo(&fx, false)
        .map_err(|e| format!("{e}\n(logs in {})", work.display()))?;
    println!("demo: finished in {:.1} s", t.total().as_secs_f64());
    Ok(())
}

fn boot(args: &[String]) -> Result<(), String> {
    let disk = PathBuf::from(&args[0]);
    let mut expect = "login:".to_string();
    let mut timeout = 120u64;
    let mut arch = Arch::X86_64;
    let mut uboot_env = None;
    let mut it = args[1..].iter();
    while let Some(a) = it.next() {
        let v = it.next().ok_or(format!("{a} needs a value"))?;
        match a.as_str() {
            "--expect" => expect = v.clone(),
            "--timeout" => timeout = v.parse().map_err(|_| format!("bad timeout {v}"))?,
            "--uboot-env" => uboot_env = Some(PathBuf::from(v)),
            "--arch" => {
                arch = match v.as_str() {
                    "x86_64" => Arch::X86_64,
                    "aarch64" => Arch::Aarch64,
                    _ => return Err(format!("unknown arch {v}")),
                }
            }
            _ => return Err(format!("unknown option {a}")),
        }
    }
    let dir = std::env::temp_dir().join(format!("tandem-qemu-{}", std::process::id()));
    let mut cfg = VmConfig::new("vm", arch, &dir);
    cfg.disks.push(Disk::raw(&disk));
    cfg.uboot_env = uboot_env;
    let mut vm = Vm::start(&cfg).map_err(|e| e.to_string())?;
    let line = vm
        .expect(&expect, Duration::from_secs(timeout))
        .map_err(|e| format!("{e}\n(logs in {})", dir.display()))?;
    println!("[{:.1} s] {}", line.at.as_secs_f64(), line.text);
    Ok(())
}

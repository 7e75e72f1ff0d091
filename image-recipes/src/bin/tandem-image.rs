//! `tandem-image build RECIPE.toml --agent TANDEM --key KEY [--out DIR] [--disk]`; man page
//! image-recipes/man/tandem-image.1.

use std::path::PathBuf;
use std::process::ExitCode;

use tandem_image::{build, options::Agent, recipe::Recipe, BuildOptions};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What the tandem-image package ships beside this binary
/// (/usr/lib/tandem-image/NAME for /usr/bin/tandem-image): the defaults of
/// --agent and --init.
fn shipped(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let p = exe.parent()?.parent()?.join("lib/tandem-image").join(name);
    p.is_file().then_some(p)
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) != Some("build") || args.len() < 2 {
        return Err("usage: tandem-image build RECIPE.toml --agent PATH|PACKAGE.deb --key SECRET.key [--out DIR] [--work DIR] [--cache DIR] [--disk] [--init STATIC_INIT] [--version V] [--bootloader grub|systemd-boot|u-boot] [--uki] [--efi-key KEY.pem --efi-cert CERT.pem] [--file DEST=SRC]...".into());
    }
    let recipe_path = PathBuf::from(&args[1]);
    let mut out = PathBuf::from("out");
    let mut work: Option<PathBuf> = None;
    let mut cache = PathBuf::from("/var/cache/tandem-image");
    let mut agent: Option<PathBuf> = None;
    let mut key: Option<PathBuf> = None;
    let mut disk = false;
    let mut init: Option<PathBuf> = None;
    let mut version: Option<semver::Version> = None;
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    let mut bootloader: Option<tandem_image::recipe::Bootloader> = None;
    let mut uki = false;
    let (mut efi_key, mut efi_cert): (Option<PathBuf>, Option<PathBuf>) = (None, None);
    let mut it = args[2..].iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--out" => out = val()?.into(),
            "--work" => work = Some(val()?.into()),
            "--cache" => cache = val()?.into(),
            "--agent" => agent = Some(val()?.into()),
            "--key" => key = Some(val()?.into()),
            "--version" => version = Some(val()?.parse().map_err(|e| format!("--version: {e}"))?),
            "--disk" => disk = true,
            "--bootloader" => bootloader = Some(val()?.parse()?),
            "--uki" => uki = true,
            "--efi-key" => efi_key = Some(val()?.into()),
            "--efi-cert" => efi_cert = Some(val()?.into()),
            "--init" => init = Some(val()?.into()),
            "--file" => {
                let v = val()?;
                let (dest, src) = v
                    .split_once('=')
                    .ok_or(format!("--file {v}: expected DEST=SRC"))?;
                let src = std::fs::canonicalize(src).map_err(|e| format!("--file {src}: {e}"))?;
                files.push((dest.to_string(), src));
            }
            _ => return Err(format!("unknown option {a}")),
        }
    }
    let mut r = Recipe::load(&recipe_path).map_err(|e| e.to_string())?;
    if let Some(v) = version {
        r.version = v;
    }
    if let Some(b) = bootloader {
        r.set_bootloader(b)
            .map_err(|e| format!("--bootloader: {e}"))?;
    }
    if uki {
        r.set_uki().map_err(|e| format!("--uki: {e}"))?;
    }
    let efi_signer = match (efi_key, efi_cert) {
        (None, None) => None,
        (Some(key), Some(cert)) if r.uki => Some(tandem_image::uki::Signer { key, cert }),
        (Some(_), Some(_)) => {
            return Err("--efi-key/--efi-cert sign unified kernel images: add --uki (or uki = true in the recipe)".into())
        }
        _ => return Err("--efi-key and --efi-cert go together".into()),
    };
    // Absolute sources override or add files (recipe-relative joins keep them).
    for (dest, src) in files {
        r.files.insert(dest, src);
    }
    let o = BuildOptions {
        recipe_dir: recipe_path.parent().map(PathBuf::from).unwrap_or_default(),
        work: work.unwrap_or_else(|| out.join("work")),
        out,
        cache,
        agent: Agent::from_path(&agent.or_else(|| shipped("tandem")).ok_or(
            "--agent PATH (a static tandem binary, or the tandem .deb for a debian base) is required",
        )?),
        signing_key: key.ok_or("--key SECRET.key is required")?,
        make_disk: disk,
        init: init.or_else(|| shipped("tandem-initramfs")),
        efi_signer,
    };
    let t = std::time::Instant::now();
    let res = build(&r, &o).map_err(|e| e.to_string())?;
    let size = |p: &PathBuf| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    println!(
        "slot image: {} ({} bytes)",
        res.slot_image.display(),
        size(&res.slot_image)
    );
    println!(
        "bundle:     {} ({} bytes)",
        res.bundle.display(),
        size(&res.bundle)
    );
    if let Some(d) = &res.disk {
        println!("disk:       {} ({} bytes)", d.display(), size(d));
    }
    if let Some(e) = &res.uboot_env {
        println!("u-boot env: {} ({} bytes)", e.display(), size(e));
    }
    for (g, p) in &res.ukis {
        println!("uki {g}:      {} ({} bytes)", p.display(), size(p));
    }
    if let Some(h) = &res.verity_root_hash {
        println!("verity:     root hash {h}");
    }
    println!("built in {:.1} s", t.elapsed().as_secs_f64());
    Ok(())
}

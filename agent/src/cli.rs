//! Command-line interface. `main` parses arguments, runs, and maps errors to
//! documented exit codes (docs/cli.md):
//! 0 ok, 1 other error, 2 usage, 3 configuration, 4 bundle refused,
//! 5 another operation is running, 6 source unreachable,
//! 7 refused because of a slot's state (e.g. rollback to an untried slot).

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use sha2::{Digest, Sha256};

use crate::bundle::keys::{self, KeyError, Keyring};
use crate::bundle::manifest::Compression;
use crate::bundle::writer::{self, BundleMeta, ImageInput, WriteError};
use crate::bundle::{BundleError, UnverifiedBundle};
use crate::config::{self, ConfigError, Settings};
use crate::fetch::{self, FetchError, Source};
use crate::install::{self, Context, InstallError, Progress};
use crate::slot::{booted_from_cmdline, SlotClass};
use crate::state::{StateError, Store};
use crate::{status, sys};

#[derive(Parser, Debug)]
#[command(name = "tandem", version, about = "A/B image update agent")]
pub struct Cli {
    /// Main configuration file [default: ROOT/etc/tandem/tandem.toml]
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Prefix for the configuration file and drop-in directories
    #[arg(long, global = true, value_name = "DIR", default_value = "/")]
    root: PathBuf,
    /// More log output (-v info, -vv debug); TANDEM_LOG overrides
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Generate an ed25519 signing key pair (PREFIX.key, PREFIX.pub)
    Keygen {
        /// Path prefix for the key files
        #[arg(long, short)]
        output: PathBuf,
        /// Comment stored with the public key
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Create, sign, verify and inspect bundles
    #[command(subcommand)]
    Bundle(BundleCmd),
    /// Verify a bundle and write it into the inactive slot group
    Install {
        /// A path, file://, http:// or https:// URL
        source: String,
        /// Allow a version older than the running one (never a lower security epoch)
        #[arg(long)]
        allow_downgrade: bool,
        /// Reboot into the new slot group once it is armed
        #[arg(long)]
        reboot: bool,
    },
    /// Commit the booted slot group: the bootloader keeps booting it
    MarkGood,
    /// Mark a slot group bad (default: the booted one) so it is not booted
    MarkBad {
        /// a or b
        slot: Option<crate::slot::SlotGroup>,
    },
    /// Make the other slot group primary, if it is known to be good
    Rollback,
    /// Show both slot groups, the booted and primary slot, and the last operation
    Status {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum BundleCmd {
    /// Build a bundle from image files, streaming
    Create(CreateArgs),
    /// Add signatures to a bundle (in place unless --output is given)
    Sign {
        bundle: PathBuf,
        #[arg(long = "key", required = true)]
        keys: Vec<PathBuf>,
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Check signatures against a keyring and every payload's hash
    Verify {
        bundle: String,
        /// Keyring directory [default: from the configuration]
        #[arg(long)]
        keyring: Option<PathBuf>,
        #[arg(long)]
        threshold: Option<usize>,
    },
    /// Print the manifest and signer key ids (not verified)
    Info {
        bundle: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
struct CreateArgs {
    #[arg(long, short)]
    output: PathBuf,
    /// Bundle version (semver)
    #[arg(long)]
    version: semver::Version,
    /// Product/hardware string the device must match
    #[arg(long)]
    compatible: String,
    #[arg(long, default_value_t = 0)]
    security_epoch: u64,
    #[arg(long)]
    description: Option<String>,
    /// CLASS=PATH, in install order; repeat for several slot classes
    #[arg(long = "image", required = true, value_name = "CLASS=PATH")]
    images: Vec<String>,
    #[arg(long, value_enum, default_value_t = CompressionArg::None)]
    compression: CompressionArg,
    /// Creation time, Unix seconds [default: SOURCE_DATE_EPOCH, else now]
    #[arg(long)]
    created: Option<u64>,
    /// Signing key; repeat to sign with several. None makes an unsigned bundle.
    #[arg(long = "key")]
    keys: Vec<PathBuf>,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum CompressionArg {
    None,
    Zstd,
}

/// Errors of the command line, each with its exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Install(#[from] InstallError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error("bundle refused: {0}")]
    Bundle(#[from] BundleError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Control(#[from] crate::control::ControlError),
    #[error(transparent)]
    Boot(#[from] crate::boot::BootError),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Other(String),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            CliError::Config(_) => 3,
            CliError::Bundle(BundleError::Io { .. }) => 6,
            CliError::Bundle(_) => 4,
            CliError::Install(e) if e.is_refusal() => 4,
            CliError::Install(InstallError::State(StateError::Busy(_)))
            | CliError::State(StateError::Busy(_)) => 5,
            CliError::Install(InstallError::Fetch(_)) | CliError::Fetch(_) => 6,
            CliError::Install(InstallError::Slot(_) | InstallError::BootedUnknown { .. }) => 3,
            CliError::Control(crate::control::ControlError::Refused(_)) => 7,
            CliError::Control(crate::control::ControlError::State(StateError::Busy(_))) => 5,
            CliError::Control(
                crate::control::ControlError::Slot(_)
                | crate::control::ControlError::BootedUnknown(_),
            ) => 3,
            _ => 1,
        }
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("TANDEM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

pub fn run(cli: Cli) -> Result<(), CliError> {
    let load = || config::load(&cli.root, cli.config.as_deref());
    match cli.command {
        Command::Keygen { output, comment } => keygen(&output, &comment),
        Command::Bundle(BundleCmd::Create(a)) => create(a),
        Command::Bundle(BundleCmd::Sign {
            bundle,
            keys,
            output,
        }) => {
            let keys = read_keys(&keys)?;
            let out = output.unwrap_or_else(|| bundle.clone());
            let sigs = writer::sign(&bundle, &out, &keys)?;
            println!("{}: {} signature(s)", out.display(), sigs.signatures.len());
            Ok(())
        }
        Command::Bundle(BundleCmd::Verify {
            bundle,
            keyring,
            threshold,
        }) => {
            let (ring, threshold, http) = match keyring {
                Some(dir) => (
                    Keyring::load_dir(&dir)?,
                    threshold.unwrap_or(1),
                    default_http(),
                ),
                None => {
                    let s = load()?;
                    (
                        Keyring::load_dir(&s.keyring_dir)?,
                        threshold.unwrap_or(s.threshold),
                        s.http,
                    )
                }
            };
            verify(&bundle, &ring, threshold, &http)
        }
        Command::Bundle(BundleCmd::Info { bundle, json }) => info(&bundle, json),
        Command::Install {
            source,
            allow_downgrade,
            reboot,
        } => {
            let s = load()?;
            run_install(&s, &source, allow_downgrade, reboot)
        }
        Command::MarkGood => {
            let s = load()?;
            let g = with_control(&s, |c| c.mark_good())?;
            println!("slot group {g} committed");
            Ok(())
        }
        Command::MarkBad { slot } => {
            let s = load()?;
            let g = with_control(&s, |c| c.mark_bad(slot))?;
            println!("slot group {g} marked bad");
            Ok(())
        }
        Command::Rollback => {
            let s = load()?;
            let g = with_control(&s, |c| c.rollback())?;
            println!("slot group {g} is now primary; reboot to switch to it");
            Ok(())
        }
        Command::Status { json } => {
            let s = load()?;
            let st = status_of(&s)?;
            if json {
                print!("{}", st.to_json());
            } else {
                print!("{}", st.to_text());
            }
            Ok(())
        }
    }
}

fn default_http() -> crate::config::HttpSettings {
    crate::config::HttpSettings {
        connect_timeout_secs: 15,
        stall_timeout_secs: 30,
        retries: 5,
    }
}

fn keygen(prefix: &Path, comment: &str) -> Result<(), CliError> {
    let seed = sys::random_seed().map_err(|e| CliError::Other(format!("random source: {e}")))?;
    let sk = keys::keypair_from_seed(seed);
    let with = |ext: &str| {
        let mut p = prefix.as_os_str().to_owned();
        p.push(ext);
        PathBuf::from(p)
    };
    let (kp, pp) = (with(".key"), with(".pub"));
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |e: std::io::Error| CliError::Other(format!("{}: {e}", p.display()))
    };
    sys::write_private_new(&kp, keys::format_secret(&sk, comment).as_bytes()).map_err(io(&kp))?;
    std::fs::write(&pp, keys::format_public(&sk.verifying_key(), comment)).map_err(io(&pp))?;
    println!(
        "key id {}\nsecret key: {} (keep it off devices)\npublic key: {} (install into the keyring directory)",
        keys::key_id(&sk.verifying_key()),
        kp.display(),
        pp.display()
    );
    Ok(())
}

fn read_keys(paths: &[PathBuf]) -> Result<Vec<ed25519_dalek::SigningKey>, CliError> {
    paths
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p)
                .map_err(|e| CliError::Other(format!("{}: {e}", p.display())))?;
            Ok(keys::parse_secret(&text, &p.display().to_string())?)
        })
        .collect()
}

fn create(a: CreateArgs) -> Result<(), CliError> {
    let compression = match a.compression {
        CompressionArg::None => Compression::None,
        CompressionArg::Zstd => Compression::Zstd,
    };
    let inputs = a
        .images
        .iter()
        .map(|spec| {
            let (class, path) = spec
                .split_once('=')
                .ok_or_else(|| CliError::Usage(format!("--image {spec:?}: expected CLASS=PATH")))?;
            Ok(ImageInput {
                slot_class: SlotClass::new(class)
                    .map_err(|e| CliError::Usage(format!("--image {spec:?}: {e}")))?,
                path: PathBuf::from(path),
                compression,
                verity: None,
            })
        })
        .collect::<Result<Vec<_>, CliError>>()?;
    let created = match a.created {
        Some(t) => t,
        None => match std::env::var("SOURCE_DATE_EPOCH") {
            Ok(v) => v
                .parse()
                .map_err(|_| CliError::Usage(format!("SOURCE_DATE_EPOCH={v:?} is not a number")))?,
            Err(_) => sys::now_unix(),
        },
    };
    let keys = read_keys(&a.keys)?;
    let meta = BundleMeta {
        version: a.version,
        compatible: a.compatible,
        security_epoch: a.security_epoch,
        created_unix: created,
        description: a.description,
    };
    let m = writer::create(&a.output, &meta, &inputs, &keys)?;
    println!(
        "{}: version {} for {:?}, {} image(s), {} signature(s)",
        a.output.display(),
        m.version,
        m.compatible,
        m.images.len(),
        keys.len()
    );
    if keys.is_empty() {
        eprintln!("warning: the bundle is unsigned; sign it with `tandem bundle sign` before use");
    }
    Ok(())
}

fn open_source(
    src: &str,
    http: &crate::config::HttpSettings,
) -> Result<Box<dyn Read + Send>, CliError> {
    Ok(fetch::open(&Source::parse(src), http)?)
}

fn verify(
    src: &str,
    ring: &Keyring,
    threshold: usize,
    http: &crate::config::HttpSettings,
) -> Result<(), CliError> {
    let mut b = UnverifiedBundle::open(open_source(src, http)?)?.verify(ring, threshold)?;
    let signers: Vec<String> = b.signers().iter().map(|k| k.to_string()).collect();
    let mut buf = vec![0u8; 1 << 20];
    while let Some((index, img, payload)) = b.next_image()? {
        let mut r = crate::bundle::decode(payload, img.compression)
            .map_err(|e| CliError::Other(format!("image {index}: {e}")))?;
        let mut h = Sha256::new();
        let mut n: u64 = 0;
        loop {
            let k =
                r.read(&mut buf)
                    .map_err(|e| match crate::bundle::reader::truncated_at(&e) {
                        Some(offset) => CliError::Bundle(BundleError::Truncated {
                            offset,
                            what: format!("image {index}"),
                        }),
                        None => CliError::Bundle(BundleError::Io {
                            offset: 0,
                            source: e,
                        }),
                    })?;
            if k == 0 {
                break;
            }
            n += k as u64;
            if n > img.size {
                return Err(CliError::Other(format!(
                    "image {index} ({}): larger than the declared {} bytes",
                    img.slot_class, img.size
                )));
            }
            h.update(&buf[..k]);
        }
        let got = hex::encode(h.finalize());
        if n != img.size || got != img.sha256 {
            return Err(CliError::Other(format!(
                "image {index} ({}): hash mismatch: manifest {} / {} bytes, payload {got} / {n} bytes",
                img.slot_class, img.sha256, img.size
            )));
        }
        println!(
            "image {index} ({}): {} bytes, sha256 ok",
            img.slot_class, img.size
        );
    }
    println!(
        "bundle OK: version {}, signed by {}",
        b.manifest().version,
        signers.join(", ")
    );
    Ok(())
}

fn info(src: &str, json: bool) -> Result<(), CliError> {
    let b = UnverifiedBundle::open(open_source(src, &default_http())?)?;
    let m = b.manifest();
    let signers: Vec<&str> = b
        .signatures()
        .signatures
        .iter()
        .map(|s| s.key_id.as_str())
        .collect();
    if json {
        let v = serde_json::json!({
            "info_version": 1,
            "verified": false,
            "signatures": signers,
            "manifest": m,
        });
        println!("{}", serde_json::to_string_pretty(&v).expect("json"));
        return Ok(());
    }
    println!("version:        {}", m.version);
    println!("compatible:     {}", m.compatible);
    println!("security epoch: {}", m.security_epoch);
    println!("created:        {}", m.created);
    if let Some(d) = &m.description {
        println!("description:    {d}");
    }
    println!(
        "signatures:     {} (not verified here; use `tandem bundle verify`)",
        if signers.is_empty() {
            "none".into()
        } else {
            signers.join(", ")
        }
    );
    for (i, img) in m.images.iter().enumerate() {
        println!(
            "image {i}: {:<8} {} bytes, {:?}, payload {} bytes, sha256 {}",
            img.slot_class.as_str(),
            img.size,
            img.compression,
            img.payload_size,
            img.sha256
        );
    }
    Ok(())
}

fn context(s: &Settings) -> Result<Context<'_>, CliError> {
    let cmdline = sys::read_cmdline(&s.cmdline_path).map_err(|source| InstallError::Cmdline {
        path: s.cmdline_path.clone(),
        source,
    })?;
    Ok(Context {
        settings: s,
        cmdline,
        now: sys::now_unix(),
    })
}

fn with_control<T>(
    s: &Settings,
    f: impl FnOnce(&mut crate::control::Control<'_>) -> Result<T, crate::control::ControlError>,
) -> Result<T, CliError> {
    let ctx = context(s)?;
    let mut boot = crate::boot::open(&s.boot)?;
    let mut c = crate::control::Control {
        settings: s,
        cmdline: ctx.cmdline,
        now: ctx.now,
        boot: boot
            .as_deref_mut()
            .map(|b| b as &mut dyn crate::boot::Bootloader),
    };
    Ok(f(&mut c)?)
}

fn run_install(
    s: &Settings,
    source: &str,
    allow_downgrade: bool,
    reboot: bool,
) -> Result<(), CliError> {
    let ctx = context(s)?;
    let mut boot = crate::boot::open(&s.boot)?;
    let tty = std::io::stderr().is_terminal();
    let mut last_pct = u64::MAX;
    let mut last_decile = u64::MAX;
    let mut show = |p: Progress<'_>| match p {
        Progress::Verified {
            version,
            target,
            signers,
        } => eprintln!(
            "verified {version} ({signers} trusted signature(s)); writing slot group {target}"
        ),
        Progress::Writing {
            index,
            class,
            done,
            total,
        } => {
            let pct = done * 100 / total.max(1);
            if pct == last_pct {
                return;
            }
            last_pct = pct;
            if tty {
                eprint!(
                    "\r  image {index} ({class}): {pct:3}% {} / {} MiB",
                    done >> 20,
                    total >> 20
                );
                let _ = std::io::stderr().flush();
            } else if pct / 10 != last_decile {
                last_decile = pct / 10;
                eprintln!("  image {index} ({class}): {pct}%");
            }
        }
        Progress::ImageDone { index, class } => {
            if tty {
                eprintln!();
            }
            eprintln!("  image {index} ({class}): written, synced, sha256 verified");
            last_pct = u64::MAX;
            last_decile = u64::MAX;
        }
    };
    let src = Source::parse(source);
    let r = install::install(
        &ctx,
        &src.to_string(),
        || fetch::open(&src, &s.http),
        &install::Options { allow_downgrade },
        boot.as_deref_mut()
            .map(|b| b as &mut dyn crate::boot::Bootloader),
        &mut show,
    )?;
    println!(
        "installed {} into slot group {} ({} image(s), {} bytes)",
        r.version, r.target, r.images, r.bytes
    );
    match r.armed {
        Some(n) => println!("slot group {} armed for {n} trial boot(s)", r.target),
        None => println!(
            "no bootloader configured: slot group {} is not armed",
            r.target
        ),
    }
    if reboot {
        if r.armed.is_none() {
            return Err(CliError::Usage(
                "--reboot needs a boot backend; the new slot group was not armed".into(),
            ));
        }
        eprintln!("rebooting into slot group {}", r.target);
        sys::reboot().map_err(|e| CliError::Other(format!("reboot failed: {e}")))?;
    }
    Ok(())
}

fn status_of(s: &Settings) -> Result<status::Status, CliError> {
    let store = Store::new(&s.state_dir);
    let state = store.load()?;
    let booted = sys::read_cmdline(&s.cmdline_path)
        .ok()
        .and_then(|c| booted_from_cmdline(&c, &s.slot_parameter).ok().flatten());
    let view = match crate::boot::open(&s.boot) {
        Ok(Some(mut b)) => Some(status::boot_view(b.as_mut())),
        Ok(None) => None,
        Err(e) => Some(status::BootView {
            error: Some(e.to_string()),
            ..Default::default()
        }),
    };
    Ok(status::build(
        s,
        &state,
        booted,
        view.as_ref(),
        store.is_locked(),
    ))
}

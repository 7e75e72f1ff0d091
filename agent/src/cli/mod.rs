//! Command-line interface: a front end over `ops`. `main` parses arguments,
//! runs, and exits with the error's [`ops::Outcome`] code (docs/cli.md).
//!
//! When the daemon runs (or is D-Bus activatable), install, cancel,
//! mark-good, mark-bad, rollback and status go through it; otherwise, or
//! with `--direct`, the CLI does the work itself.

mod bundle;
mod progress;
mod repo;
pub mod status_view;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config;
use crate::control::BootCheck;
use crate::install;
use crate::ops::{self, Error};
use bundle::BundleCmd;

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
    /// Work directly, even when the daemon runs (same as TANDEM_NO_DAEMON=1)
    #[arg(long, global = true)]
    direct: bool,
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
        /// A path, a file://, http:// or https:// URL, or oci://HOST[:PORT]/REPO:TAG (or @sha256:…)
        source: String,
        /// Allow a version older than the running one (never a lower security epoch)
        #[arg(long)]
        allow_downgrade: bool,
        /// Install even a version that failed on this device before
        #[arg(long)]
        force: bool,
        /// Reboot into the new slot group once it is armed
        #[arg(long)]
        reboot: bool,
    },
    /// After boot: run health checks on a trial boot and commit or fall
    /// back; record a bootloader fallback. Run it from a unit ordered before
    /// boot-complete.target, or from a plain init.
    BootCheck,
    /// Commit the booted slot group: the bootloader keeps booting it
    MarkGood,
    /// Mark a slot group bad (default: the booted one) so it is not booted
    MarkBad {
        /// a or b
        slot: Option<crate::slot::SlotGroup>,
        /// Even when the other group could not boot either (the bootloader
        /// is then left to its last resort)
        #[arg(long)]
        force: bool,
    },
    /// Arm the installed other group for a trial boot (after an install
    /// that was cut off before it could)
    Arm {
        /// Reboot into it once it is armed
        #[arg(long)]
        reboot: bool,
    },
    /// Make the other slot group primary, if it is known to be good
    Rollback,
    /// Stop the daemon's running install (the target group stays invalid)
    Cancel,
    /// Serve the D-Bus API on the system bus (docs/dbus.md) and run the
    /// channel and hawkBit loops; run by tandem.service
    Daemon {
        /// No D-Bus API: only the loops of [channel] and [hawkbit], for a
        /// device without a system bus
        #[arg(long)]
        no_bus: bool,
    },
    /// Talk to the hawkBit (DDI) fleet server of [hawkbit] (docs/fleet.md)
    #[command(subcommand)]
    Hawkbit(HawkbitCmd),
    /// Check the update channel of [channel] now and act as its strategy
    /// says: stage an update, arm it when the strategy allows (the daemon
    /// does this on its interval; docs/channel.md)
    Check {
        /// Print the result as JSON (docs/channel.md)
        #[arg(long)]
        json: bool,
        /// Reboot if the check armed a group (the daemon always does)
        #[arg(long)]
        reboot: bool,
    },
    /// Arm the update the channel loop staged and reboot into it (the
    /// manual strategy; under fleet_lock after taking a reboot slot)
    Apply {
        /// Arm it, but do not reboot
        #[arg(long)]
        no_reboot: bool,
    },
    /// Publish a channel: a static TUF repository of bundles (docs/channel.md)
    #[command(subcommand)]
    Repo(repo::RepoCmd),
    /// Show both slot groups, the booted and primary slot, and the last operation
    Status {
        /// Print the report as JSON (versioned: docs/status.md,
        /// docs/status.schema.json)
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum HawkbitCmd {
    /// Poll once and do what the server asks: register, install, report
    /// (the daemon does this in a loop)
    Poll,
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

pub fn run(cli: Cli) -> Result<(), Error> {
    let load = || config::load(&cli.root, cli.config.as_deref());
    let daemon = || {
        if cli.direct {
            None
        } else {
            crate::dbus::client::connect()
        }
    };
    use crate::dbus::client;
    match cli.command {
        Command::Keygen { output, comment } => bundle::keygen(&output, &comment),
        Command::Bundle(cmd) => bundle::run(cmd, &load),
        Command::Install {
            source,
            allow_downgrade,
            force,
            reboot,
        } => {
            if let Some(conn) = daemon() {
                let mut printer = progress::Printer::new(std::io::stderr().is_terminal());
                let opts = crate::dbus::service::InstallOptions {
                    allow_downgrade,
                    force,
                    reboot,
                    name: None,
                };
                let r = client::install(&conn, &source, &opts, &mut |s| printer.show(s));
                printer.finish();
                println!("{}", r?);
                return Ok(());
            }
            let s = load()?;
            run_install(&s, &source, allow_downgrade, force, reboot)
        }
        Command::BootCheck => boot_check(&load()?),
        Command::MarkGood => {
            let g = match daemon() {
                Some(conn) => client::mark_good(&conn)?,
                None => ops::mark_good(&load()?)?.to_string(),
            };
            println!("slot group {g} committed");
            Ok(())
        }
        Command::MarkBad { slot, force } => {
            let g = match daemon() {
                Some(conn) => client::mark_bad(&conn, slot, force)?,
                None => ops::mark_bad(&load()?, slot, force)?.to_string(),
            };
            println!("slot group {g} marked bad");
            Ok(())
        }
        Command::Arm { reboot } => {
            let g = match daemon() {
                Some(conn) => client::arm(&conn)?,
                None => ops::arm(&load()?)?.to_string(),
            };
            println!("slot group {g} armed for a trial boot");
            if reboot {
                eprintln!("rebooting into slot group {g}");
                ops::reboot()?;
            }
            Ok(())
        }
        Command::Rollback => {
            let g = match daemon() {
                Some(conn) => client::rollback(&conn)?,
                None => ops::rollback(&load()?)?.to_string(),
            };
            println!("slot group {g} is now primary; reboot to switch to it");
            Ok(())
        }
        Command::Cancel => {
            let conn = daemon().ok_or_else(|| {
                Error::Usage(
                    "the tandem daemon is not running: only its installs can be cancelled (stop a direct `tandem install` with Ctrl-C)".into(),
                )
            })?;
            client::cancel(&conn)?;
            println!("cancel requested");
            Ok(())
        }
        Command::Daemon { no_bus: false } => crate::dbus::service::serve(load()?),
        Command::Daemon { no_bus: true } => ops::daemon::serve_without_bus(load()?),
        Command::Hawkbit(HawkbitCmd::Poll) => {
            let s = load()?;
            let server = ops::fleet::connect(&s)?;
            let p = ops::fleet::poll_once(&s, &server, &ops::fleet::NoJobs)?;
            println!(
                "{}",
                if p.did.is_empty() {
                    "nothing to do"
                } else {
                    &p.did
                }
            );
            if p.reboot {
                eprintln!("rebooting into the new slot group");
                ops::reboot()?;
            }
            Ok(())
        }
        Command::Check { json, reboot } => {
            let s = load()?;
            let mut ch = crate::ops::channel_tuf::TufChannel::open(&s)?;
            let c = ops::channel::check_once(&s, &mut ch, &ops::fleet::NoJobs)?;
            if json {
                let v = serde_json::json!({
                    "check_version": 1,
                    "step": c.step,
                    "message": c.message,
                    "found": c.found,
                    "reboot": c.reboot,
                });
                println!("{}", serde_json::to_string_pretty(&v).expect("json"));
            } else {
                println!("{}", c.message);
            }
            if c.reboot && reboot {
                eprintln!("rebooting into the new slot group");
                ops::reboot()?;
            }
            Ok(())
        }
        Command::Apply { no_reboot } => {
            println!("{}", ops::channel::apply(&load()?, !no_reboot)?);
            Ok(())
        }
        Command::Repo(cmd) => repo::run(cmd),
        Command::Status { json } => {
            // From the daemon when it runs (any user may ask it; the state
            // store is root's alone), else from the state files directly.
            let st = match daemon() {
                Some(conn) => {
                    let text = client::status(&conn)?;
                    if json {
                        print!("{text}");
                        return Ok(());
                    }
                    serde_json::from_str::<crate::status::Status>(&text).map_err(|e| {
                        Error::Other(format!("the daemon's status does not parse: {e}"))
                    })?
                }
                None => ops::status(&load()?)?,
            };
            if json {
                print!("{}", st.to_json());
            } else {
                let color = status_view::use_color(std::io::stdout().is_terminal());
                print!("{}", status_view::render(&st, color));
            }
            Ok(())
        }
    }
}

fn run_install(
    s: &config::Settings,
    source: &str,
    allow_downgrade: bool,
    force: bool,
    reboot: bool,
) -> Result<(), Error> {
    let mut printer = progress::Printer::new(std::io::stderr().is_terminal());
    let mut tracker = install::Tracker::default();
    let mut show = |p: install::Progress<'_>| {
        if let Some(snap) = tracker.update(p) {
            printer.show(&snap);
        }
    };
    let opts = install::Options {
        allow_downgrade,
        force,
        ..Default::default()
    };
    let r = ops::install(s, source, &opts, &mut show);
    printer.finish();
    let r = r?;
    println!("{}", ops::describe_install(&r));
    if reboot {
        if r.armed.is_none() {
            return Err(Error::Usage(
                "--reboot needs a boot backend; the new slot group was not armed".into(),
            ));
        }
        eprintln!("rebooting into slot group {}", r.target);
        ops::reboot()?;
    }
    Ok(())
}

fn boot_check(s: &config::Settings) -> Result<(), Error> {
    let outcome = ops::boot_check(s)?;
    match &outcome {
        BootCheck::Normal { booted } => println!("tandem: boot check: slot {booted} is committed; nothing to do"),
        BootCheck::Pending { armed } => println!("tandem: boot check: slot {armed} is armed; reboot to try it"),
        BootCheck::NotArmed { installed } => println!("tandem: boot check: slot {installed} is installed but was never armed (the install was cut off); `tandem arm` arms it"),
        BootCheck::Unhealthy { booted } => println!("tandem: boot check: WARNING: running slot {booted}, which is recorded invalid or bad"),
        BootCheck::Committed { booted, checks } => println!("tandem: boot check: all {checks} health check(s) passed; slot {booted} committed"),
        BootCheck::FellBack { failed, version } => println!(
            "tandem: boot check: the bootloader fell back: the trial of slot {failed} ({}) did not commit; recorded as failed",
            version.as_ref().map_or("?".into(), |v| v.to_string())
        ),
        BootCheck::Failed { booted, reason, reboot } => {
            println!("tandem: boot check: FAILED on slot {booted}: {reason}; marked bad");
            if *reboot {
                println!("tandem: rebooting into the other slot");
                ops::reboot()?;
            }
            return Err(Error::Other(format!("health check failed: {reason}")));
        }
    }
    Ok(())
}

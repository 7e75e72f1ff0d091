//! Command-line interface. `main` parses arguments, runs, and maps errors to
//! documented exit codes (docs/cli.md):
//! 0 ok, 1 other error, 2 usage, 3 configuration, 4 bundle refused,
//! 5 another operation is running, 6 source unreachable,
//! 7 refused because of a slot's state (e.g. rollback to an untried slot),
//! 8 cancelled, 9 not authorized (by the daemon).
//!
//! When the daemon runs (or is D-Bus activatable), install, cancel,
//! mark-good, mark-bad, rollback and status go through it; otherwise, or
//! with `--direct`, the CLI does the work itself.

mod bundle;
pub(crate) mod device;
mod progress;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::bundle::keys::KeyError;
use crate::bundle::writer::WriteError;
use crate::bundle::BundleError;
use crate::config::{self, ConfigError};
use crate::fetch::FetchError;
use crate::install::InstallError;
use crate::state::StateError;
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
        /// A path, file://, http:// or https:// URL
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
    },
    /// Make the other slot group primary, if it is known to be good
    Rollback,
    /// Stop the daemon's running install (the target group stays invalid)
    Cancel,
    /// Serve the D-Bus API on the system bus (docs/dbus.md); run by tandem.service
    Daemon,
    /// Show both slot groups, the booted and primary slot, and the last operation
    Status {
        #[arg(long)]
        json: bool,
    },
}

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
    #[error("{message}")]
    Daemon { code: u8, message: String },
    #[error("{0}")]
    Other(String),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Daemon { code, .. } => *code,
            CliError::Install(InstallError::Cancelled(_) | InstallError::CancelledEarly) => 8,
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
                };
                let r = client::install(&conn, &source, &opts, &mut |s| printer.show(s));
                printer.finish();
                println!("{}", r?);
                return Ok(());
            }
            let s = load()?;
            device::run_install(&s, &source, allow_downgrade, force, reboot)
        }
        Command::BootCheck => {
            let s = load()?;
            device::boot_check(&s)
        }
        Command::MarkGood => {
            let g = match daemon() {
                Some(conn) => client::mark_good(&conn)?,
                None => device::with_control(&load()?, |c| c.mark_good())?.to_string(),
            };
            println!("slot group {g} committed");
            Ok(())
        }
        Command::MarkBad { slot } => {
            let g = match daemon() {
                Some(conn) => client::mark_bad(&conn, slot)?,
                None => device::with_control(&load()?, |c| c.mark_bad(slot))?.to_string(),
            };
            println!("slot group {g} marked bad");
            Ok(())
        }
        Command::Rollback => {
            let g = match daemon() {
                Some(conn) => client::rollback(&conn)?,
                None => device::with_control(&load()?, |c| c.rollback())?.to_string(),
            };
            println!("slot group {g} is now primary; reboot to switch to it");
            Ok(())
        }
        Command::Cancel => {
            let conn = daemon().ok_or_else(|| {
                CliError::Usage(
                    "the tandem daemon is not running: only its installs can be cancelled (stop a direct `tandem install` with Ctrl-C)".into(),
                )
            })?;
            client::cancel(&conn)?;
            println!("cancel requested");
            Ok(())
        }
        Command::Daemon => crate::dbus::service::serve(load()?),
        Command::Status { json } => {
            // JSON comes from the daemon when it runs (any user may ask
            // it); the text form is built from the state files directly.
            let st = match if json { daemon() } else { None } {
                Some(conn) => {
                    print!("{}", client::status(&conn)?);
                    return Ok(());
                }
                _ => device::status_of(&load()?)?,
            };
            if json {
                print!("{}", st.to_json());
            } else {
                print!("{}", st.to_text());
            }
            Ok(())
        }
    }
}

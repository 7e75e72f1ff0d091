//! The client-under-test CLI of the TUF conformance suite
//! (theupdateframework/tuf-conformance, CLIENT-CLI.md) over `tandem::tuf`:
//!
//! ```text
//! tuf-conformance-client --metadata-dir D init ROOT
//! tuf-conformance-client --metadata-dir D --metadata-url U refresh
//! tuf-conformance-client --metadata-dir D --metadata-url U --target-name N \
//!     --target-dir T --target-base-url B download
//! ```
//!
//! Exit 0 on success, 1 on any failure. Run by scripts/tuf-conformance.sh.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context};
use clap::{Parser, Subcommand};
use tandem::config::HttpSettings;
use tandem::tuf::client::{MetadataStore, Updater};
use tandem::tuf::http::HttpFetcher;
use tandem::tuf::store::DirStore;
use tandem::tuf::Limits;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    metadata_dir: PathBuf,
    #[arg(long)]
    metadata_url: Option<String>,
    /// Repeatable: targets are processed in order by one updater, and the
    /// first that fails stops the command.
    #[arg(long)]
    target_name: Vec<String>,
    #[arg(long)]
    target_dir: Option<PathBuf>,
    #[arg(long)]
    target_base_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Trust ROOT (copied into the metadata directory, no checks).
    Init { trusted_root: PathBuf },
    /// Update the top-level metadata.
    Refresh,
    /// Refresh, then download the target into the target directory.
    Download,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn updater(args: &Args) -> anyhow::Result<Updater<HttpFetcher, DirStore>> {
    let url = args
        .metadata_url
        .as_deref()
        .context("--metadata-url is required")?;
    let settings = HttpSettings {
        retries: 0,
        ..HttpSettings::default()
    };
    Ok(Updater::new(
        HttpFetcher::new(&settings)?,
        DirStore::new(&args.metadata_dir),
        url,
        Limits::default(),
    ))
}

fn run(args: &Args) -> anyhow::Result<()> {
    match &args.command {
        Command::Init { trusted_root } => {
            let root = std::fs::read(trusted_root)
                .with_context(|| format!("reading {}", trusted_root.display()))?;
            DirStore::new(&args.metadata_dir).save("root", &root)?;
        }
        Command::Refresh => updater(args)?.refresh(now())?,
        Command::Download => {
            if args.target_name.is_empty() {
                return Err(anyhow!("--target-name is required"));
            }
            let dir = args
                .target_dir
                .as_deref()
                .context("--target-dir is required")?;
            let base = args
                .target_base_url
                .as_deref()
                .context("--target-base-url is required")?;
            let mut up = updater(args)?;
            up.refresh(now())?;
            for name in &args.target_name {
                let info = up
                    .get_target_info(name)?
                    .ok_or_else(|| anyhow!("target {name:?} is not in the repository"))?;
                if up.find_cached_target(name, &info, dir).is_none() {
                    up.download_target(name, &info, base, dir)?;
                }
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

//! `tandem repo`: publish a channel as a static TUF repository
//! (docs/channel.md). Front end of [`crate::repo`].

use std::path::{Path, PathBuf};

use clap::Subcommand;

use crate::ops::Error;
use crate::repo::{self, Addition, Expiry, Repo, RepoError};
use crate::sys;

#[derive(Subcommand, Debug)]
pub enum RepoCmd {
    /// Create a repository: keys, root, targets delegating to each channel,
    /// snapshot, timestamp
    Init {
        /// The repository directory (keys/ and repository/ are made in it)
        dir: PathBuf,
        /// A channel (a delegated role listing CHANNEL/* targets); repeatable
        #[arg(long = "channel", required = true)]
        channels: Vec<String>,
    },
    /// Publish a bundle in a channel (version, compatible and epoch from
    /// its manifest)
    Add {
        dir: PathBuf,
        #[arg(long)]
        channel: String,
        /// The bundle file; its file name becomes the target name
        bundle: PathBuf,
        /// A rollout wave PERCENT@HOURS (from now), e.g. --wave 10@0 --wave
        /// 100@24; repeatable; none: everyone at once
        #[arg(long = "wave")]
        waves: Vec<String>,
        /// Publish it paused (`tandem repo resume` starts it)
        #[arg(long)]
        paused: bool,
        /// Devices fetch it from here instead (oci://HOST/REPO:TAG or an
        /// http(s) URL); the file is only hashed: its length and hash pin it
        #[arg(long)]
        location: Option<String>,
    },
    /// Withdraw a target: devices stop seeing it at their next check
    Remove {
        dir: PathBuf,
        #[arg(long)]
        channel: String,
        /// The target name (or CHANNEL/NAME)
        name: String,
    },
    /// Pause a target's rollout: devices that have not started do not start
    Pause {
        dir: PathBuf,
        #[arg(long)]
        channel: String,
        name: String,
    },
    /// Resume a paused rollout
    Resume {
        dir: PathBuf,
        #[arg(long)]
        channel: String,
        name: String,
    },
    /// Re-sign timestamp.json with a new expiry (the online key's only job;
    /// run it more often than --expires-hours)
    Timestamp {
        dir: PathBuf,
        /// Validity of the new timestamp
        #[arg(long, default_value_t = 24)]
        expires_hours: u64,
    },
    /// Replace the root key: root version+1 signed by the old and the new
    /// key (the old one is kept as keys/root.key.N)
    RotateRoot { dir: PathBuf },
    /// List a channel's targets with their versions and rollout plans
    List {
        dir: PathBuf,
        #[arg(long)]
        channel: String,
    },
}

impl From<RepoError> for Error {
    fn from(e: RepoError) -> Error {
        match e {
            RepoError::Usage(m) => Error::Usage(m),
            e => Error::Other(e.to_string()),
        }
    }
}

fn open(dir: &Path) -> Result<Repo, Error> {
    Ok(Repo::open(dir)?)
}

pub fn run(cmd: RepoCmd) -> Result<(), Error> {
    let now = sys::now_unix();
    let exp = Expiry::default();
    match cmd {
        RepoCmd::Init { dir, channels } => {
            let r = repo::init(&dir, &channels, exp, now)?;
            println!(
                "repository made in {}\nserve {} as the channel URL; ship {} in the image as [channel] root\nkeep {} offline (timestamp.key is the only online key)",
                dir.display(),
                r.metadata_dir().display(),
                r.metadata_dir().join("1.root.json").display(),
                r.keys_dir().display()
            );
        }
        RepoCmd::Add {
            dir,
            channel,
            bundle,
            waves,
            paused,
            location,
        } => {
            let r = open(&dir)?;
            let waves = waves
                .iter()
                .map(|w| repo::parse_wave(w, now))
                .collect::<Result<Vec<_>, _>>()?;
            let path = repo::add(
                &r,
                &Addition {
                    channel: &channel,
                    bundle: &bundle,
                    waves,
                    paused,
                    location,
                },
                exp,
                now,
            )?;
            println!("published {path}");
        }
        RepoCmd::Remove { dir, channel, name } => {
            repo::remove(&open(&dir)?, &channel, &name, exp, now)?;
            println!("withdrew {name} from {channel}");
        }
        RepoCmd::Pause { dir, channel, name } => {
            repo::set_paused(&open(&dir)?, &channel, &name, true, exp, now)?;
            println!("paused the rollout of {name}");
        }
        RepoCmd::Resume { dir, channel, name } => {
            repo::set_paused(&open(&dir)?, &channel, &name, false, exp, now)?;
            println!("resumed the rollout of {name}");
        }
        RepoCmd::Timestamp { dir, expires_hours } => {
            let exp = Expiry {
                timestamp: expires_hours.max(1) * 3600,
                ..exp
            };
            let v = repo::timestamp(&open(&dir)?, exp, now)?;
            println!(
                "timestamp version {v}, valid for {} h",
                expires_hours.max(1)
            );
        }
        RepoCmd::RotateRoot { dir } => {
            let v = repo::rotate_root(&open(&dir)?, exp, now)?;
            println!("root version {v} signed by the old and the new root key");
        }
        RepoCmd::List { dir, channel } => {
            for (path, custom) in repo::list(&open(&dir)?, &channel)? {
                let t = &custom["tandem"];
                println!(
                    "{path}\t{}\t{}\t{}{}",
                    t["version"].as_str().unwrap_or("?"),
                    t["compatible"].as_str().unwrap_or("?"),
                    t["waves"].as_array().map_or("all at once".into(), |w| w
                        .iter()
                        .map(|w| format!(
                            "{}%@{}",
                            w["percent"],
                            w["start"].as_str().unwrap_or("?")
                        ))
                        .collect::<Vec<_>>()
                        .join(",")),
                    if t["paused"].as_bool() == Some(true) {
                        "\tpaused"
                    } else {
                        ""
                    }
                );
            }
        }
    }
    Ok(())
}

//! The channel's [`Repository`] over the TUF client: metadata from
//! `[channel] url`, trusted metadata in the state directory
//! (`channel-metadata/`), the first root from the image
//! (`[channel] root`, in /usr), bundles streamed from the targets URL
//! pinned to their signed length and hash.

use std::path::PathBuf;

use crate::channel::decide::Skip;
use crate::channel::{meta, ChannelError, Listing, Offer, Repository};
use crate::config::{ChannelSettings, HttpSettings, OciSettings, Settings};
use crate::fetch::{self, pinned::Pinned, BundleSource, FetchError, Source};
use crate::tuf::client::{MetadataStore, Updater};
use crate::tuf::http::HttpFetcher;
use crate::tuf::store::DirStore;
use crate::tuf::{Limits, TufError};

pub struct TufChannel {
    updater: Updater<HttpFetcher, DirStore>,
    c: ChannelSettings,
    http: HttpSettings,
    oci: OciSettings,
}

/// Where the trusted metadata lives.
pub fn metadata_dir(s: &Settings) -> PathBuf {
    s.state_dir.join("channel-metadata")
}

fn setup(e: impl std::fmt::Display) -> ChannelError {
    ChannelError::Setup(e.to_string())
}

/// Network trouble is "unreachable" (try again later); anything the
/// client refused is "refused" (the metadata is bad: nothing changes).
fn classify(e: TufError) -> ChannelError {
    match e {
        TufError::Fetch { .. } => ChannelError::Unreachable(e.to_string()),
        e => ChannelError::Refused(e.to_string()),
    }
}

impl TufChannel {
    pub fn open(s: &Settings) -> Result<TufChannel, ChannelError> {
        let c = s
            .channel
            .clone()
            .ok_or_else(|| setup("no [channel] table in the configuration"))?;
        let dir = metadata_dir(s);
        crate::sys::private_dir(&s.state_dir)
            .map_err(|e| setup(format!("{}: {e}", s.state_dir.display())))?;
        crate::sys::private_dir(&dir).map_err(|e| setup(format!("{}: {e}", dir.display())))?;
        let store = DirStore::new(&dir);
        seed_root(&store, &c)?;
        let fetcher = HttpFetcher::new(&s.http).map_err(setup)?;
        Ok(TufChannel {
            updater: Updater::new(fetcher, store, &c.url, Limits::default()),
            c,
            http: s.http.clone(),
            oci: s.oci.clone(),
        })
    }
}

/// The image's root becomes the trusted one when the store has none, or an
/// older version (an update shipped a newer root): trust comes from the
/// verified image, and a root in the store is only ever one the client
/// reached from it.
fn seed_root(store: &DirStore, c: &ChannelSettings) -> Result<(), ChannelError> {
    crate::sys::check_trusted_file(&c.root)
        .map_err(|why| setup(format!("{}: {why}", c.root.display())))?;
    let image = std::fs::read(&c.root).map_err(|e| {
        setup(format!(
            "{}: {e} (the image must ship the channel's root metadata; [channel] root)",
            c.root.display()
        ))
    })?;
    let version = |b: &[u8]| -> Option<u64> {
        serde_json::from_slice::<serde_json::Value>(b).ok()?["signed"]["version"].as_u64()
    };
    let iv = version(&image)
        .ok_or_else(|| setup(format!("{}: not TUF root metadata", c.root.display())))?;
    let stored = store.load("root").map_err(setup)?;
    if stored.as_deref().and_then(version).is_none_or(|sv| sv < iv) {
        store.save("root", &image).map_err(setup)?;
    }
    Ok(())
}

impl Repository for TufChannel {
    fn check(&mut self, now: u64) -> Result<Listing, ChannelError> {
        self.updater.refresh(now).map_err(classify)?;
        let targets = self
            .updater
            .targets_of_role(&self.c.role)
            .map_err(classify)?;
        let mut l = Listing::default();
        for (path, t) in targets {
            let sha256 = t.hashes.get("sha256").map(|h| format!("sha256:{h}"));
            match meta::parse_custom(&t.custom) {
                Ok(m) => l.offers.push(Offer {
                    path,
                    length: t.length,
                    sha256,
                    meta: m,
                }),
                Err(why) => l.unusable.push(Skip {
                    path,
                    why,
                    failed_here: false,
                }),
            }
        }
        Ok(l)
    }

    fn bundle(&self, o: &Offer) -> Result<Box<dyn BundleSource>, FetchError> {
        let url = match &o.meta.location {
            Some(l) => l.clone(),
            None => {
                let consistent = self
                    .updater
                    .trusted()
                    .is_some_and(|t| t.root().consistent_snapshot);
                target_url(
                    &self.c.targets_url,
                    &o.path,
                    o.sha256.as_deref(),
                    consistent,
                )
            }
        };
        let src = fetch::open(&Source::parse(&url)?, &self.http, &self.oci)?;
        Ok(Box::new(Pinned::new(src, o.length, o.sha256.clone())))
    }
}

/// A target's URL: under consistent snapshots its file name has its hash
/// as a prefix (`DIR/HASH.NAME`).
pub fn target_url(base: &str, path: &str, sha256: Option<&str>, consistent: bool) -> String {
    let base = base.trim_end_matches('/');
    match (consistent, sha256.and_then(|h| h.strip_prefix("sha256:"))) {
        (true, Some(h)) => match path.rsplit_once('/') {
            Some((dir, name)) => format!("{base}/{dir}/{h}.{name}"),
            None => format!("{base}/{h}.{path}"),
        },
        _ => format!("{base}/{path}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_urls() {
        assert_eq!(
            target_url("http://h/t/", "stable/b.tnd", Some("sha256:ab"), true),
            "http://h/t/stable/ab.b.tnd"
        );
        assert_eq!(
            target_url("http://h/t", "b.tnd", Some("sha256:ab"), true),
            "http://h/t/ab.b.tnd"
        );
        assert_eq!(
            target_url("http://h/t", "stable/b.tnd", Some("sha256:ab"), false),
            "http://h/t/stable/b.tnd"
        );
    }
}

//! Our TUF client (`tandem::tuf`) consumes a repository made with
//! python-tuf (agent/tests/tuf/make_repo.py), served on 127.0.0.1 by a
//! small file server the test starts: the first refresh and download, a
//! delegated target (and a path the delegated role may not sign), a root
//! rotation, then a tampered target, a replayed old timestamp and an
//! expired timestamp, each refused with the trusted metadata unchanged.
//!
//! The HTTP fetcher against hostile servers needs no python: an endless
//! body is cut at the limit, a trickle by the minimum rate.
//!
//! python-tuf lives in a venv: `TANDEM_PYTUF_VENV`, default
//! /opt/tandem/python-tuf-venv (scripts/setup.sh makes it).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::tools;
use tandem::config::HttpSettings;
use tandem::tuf::client::{Fetcher, MetadataStore, Updater};
use tandem::tuf::http::HttpFetcher;
use tandem::tuf::metadata::{self, Root, Timestamp};
use tandem::tuf::store::DirStore;
use tandem::tuf::{Limits, TufError};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn version_of<T: metadata::Signed>(store: &DirStore, role: &str) -> u64 {
    let data = store.load(role).unwrap().expect("stored");
    metadata::parse::<T>(role, &data).unwrap().signed.version()
}

#[test]
fn python_tuf_repository() {
    let Some(venv) = common::pytuf::venv() else {
        tools::skip(
            "tuf_interop",
            &format!(
                "python-tuf in a venv (TANDEM_PYTUF_VENV, default {})",
                common::pytuf::DEFAULT_VENV
            ),
        );
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    let made = Command::new(venv.join("bin/python"))
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tuf/make_repo.py"))
        .arg(&repo)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "make_repo.py: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    let contents: serde_json::Value =
        serde_json::from_slice(&std::fs::read(repo.join("targets.json")).unwrap()).unwrap();
    let content = |path: &str| hex::decode(contents[path].as_str().unwrap()).unwrap();

    let server = common::http::serve_dir(&repo.join("v1"));
    let meta_dir = work.path().join("metadata");
    let dest = work.path().join("downloads");
    std::fs::create_dir_all(&meta_dir).unwrap();
    std::fs::create_dir_all(&dest).unwrap();
    let store = DirStore::new(&meta_dir);
    store
        .save("root", &std::fs::read(repo.join("root.json")).unwrap())
        .unwrap();
    let updater = || {
        let settings = HttpSettings {
            retries: 0,
            ..HttpSettings::default()
        };
        Updater::new(
            HttpFetcher::new(&settings).unwrap(),
            DirStore::new(&meta_dir),
            &format!("{}/metadata/", server.url),
            Limits::default(),
        )
    };
    let targets_url = format!("{}/targets/", server.url);

    // v1: refresh, a top-level target with its custom metadata.
    let mut up = updater();
    up.refresh(now()).unwrap();
    let info = up
        .get_target_info("os-1.0.tnd")
        .unwrap()
        .expect("os-1.0.tnd listed");
    assert_eq!(info.custom["tandem"]["version"], "1.0.0");
    let file = up
        .download_target("os-1.0.tnd", &info, &targets_url, &dest)
        .unwrap();
    assert_eq!(std::fs::read(&file).unwrap(), content("os-1.0.tnd"));

    // The delegated role: its target found and downloaded; the path it
    // lists but may not sign is not.
    let info = up
        .get_target_info("stable/os-1.1.tnd")
        .unwrap()
        .expect("delegated target");
    let file = up
        .download_target("stable/os-1.1.tnd", &info, &targets_url, &dest)
        .unwrap();
    assert_eq!(std::fs::read(&file).unwrap(), content("stable/os-1.1.tnd"));
    assert!(up.get_target_info("rogue.tnd").unwrap().is_none());
    let listed: Vec<String> = up
        .targets_of_role("stable")
        .unwrap()
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert_eq!(listed, ["stable/os-1.1.tnd"]);
    assert!(
        store.load("stable").unwrap().is_some(),
        "the delegated role is stored"
    );

    // v2: the root key rotated; a new target.
    server.serve_from(repo.join("v2"));
    let mut up = updater();
    up.refresh(now()).unwrap();
    assert_eq!(version_of::<Root>(&store, "root"), 2);
    assert_eq!(version_of::<Timestamp>(&store, "timestamp"), 2);
    let info = up
        .get_target_info("os-1.2.tnd")
        .unwrap()
        .expect("os-1.2.tnd listed");
    assert!(up.find_cached_target("os-1.2.tnd", &info, &dest).is_none());

    // A mirror serving other bytes for os-1.2.tnd: refused, nothing written.
    server.serve_from(repo.join("tampered"));
    let mut up = updater();
    up.refresh(now()).unwrap();
    let err = up
        .download_target("os-1.2.tnd", &info, &targets_url, &dest)
        .unwrap_err();
    assert!(matches!(err, TufError::Mismatch { .. }), "{err}");
    assert!(up.find_cached_target("os-1.2.tnd", &info, &dest).is_none());
    assert!(!Updater::<HttpFetcher, DirStore>::target_file_path("os-1.2.tnd", &dest).exists());

    // The old timestamp replayed: a rollback, the trusted one stays.
    server.serve_from(repo.join("replay"));
    let err = updater().refresh(now()).unwrap_err();
    assert!(
        matches!(
            err,
            TufError::Rollback {
                trusted: 2,
                got: 1,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(version_of::<Timestamp>(&store, "timestamp"), 2);

    // An expired timestamp: refused and not stored.
    server.serve_from(repo.join("expired"));
    let err = updater().refresh(now()).unwrap_err();
    assert!(matches!(err, TufError::Expired { .. }), "{err}");
    assert_eq!(version_of::<Timestamp>(&store, "timestamp"), 2);

    // Back to v2, the genuine target downloads.
    server.serve_from(repo.join("v2"));
    let mut up = updater();
    up.refresh(now()).unwrap();
    let file = up
        .download_target("os-1.2.tnd", &info, &targets_url, &dest)
        .unwrap();
    assert_eq!(std::fs::read(&file).unwrap(), content("os-1.2.tnd"));
}

/// A server that answers every request with `head`, then `chunk` every
/// `every` until the client hangs up.
fn hostile(head: &'static str, chunk: &'static [u8], every: Duration) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://{}/metadata/timestamp.json",
        listener.local_addr().unwrap()
    );
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                if conn.write_all(head.as_bytes()).is_err() {
                    return;
                }
                while conn.write_all(chunk).is_ok() {
                    std::thread::sleep(every);
                }
            });
        }
    });
    url
}

#[test]
fn an_endless_body_is_cut_at_the_limit() {
    let url = hostile(
        "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n",
        &[b'x'; 4096],
        Duration::ZERO,
    );
    let f = HttpFetcher::new(&HttpSettings::default()).unwrap();
    let err = f.fetch(&url, 16_384).unwrap_err();
    assert!(
        matches!(err, TufError::TooLong { limit: 16_384, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("timestamp.json"), "{err}");
}

#[test]
fn a_declared_length_over_the_limit_is_refused_before_reading() {
    let url = hostile(
        "HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n",
        b"",
        Duration::from_secs(1),
    );
    let f = HttpFetcher::new(&HttpSettings::default()).unwrap();
    let err = f.fetch(&url, 16_384).unwrap_err();
    assert!(matches!(err, TufError::TooLong { .. }), "{err}");
}

#[test]
fn a_trickle_is_cut_off_by_the_minimum_rate() {
    let url = hostile(
        "HTTP/1.1 200 OK\r\nContent-Length: 10000\r\n\r\n",
        b"x",
        Duration::from_millis(100),
    );
    let settings = HttpSettings {
        min_rate_bytes: 1000,
        min_rate_window_secs: 1,
        ..HttpSettings::default()
    };
    let started = std::time::Instant::now();
    let err = HttpFetcher::new(&settings)
        .unwrap()
        .fetch(&url, 16_384)
        .unwrap_err();
    assert!(err.to_string().contains("too slow"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

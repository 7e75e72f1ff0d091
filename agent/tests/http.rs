//! Installs over HTTP from a real server on 127.0.0.1 that drops the
//! connection mid-body, stalls, and answers 404 or 503.

mod common;

use std::time::{Duration, Instant};

use common::http::{serve, Fault};
use common::*;
use tandem::bundle::manifest::Compression;
use tandem::fetch::Source;
use tandem::fsm::SlotState;
use tandem::install::{self, Context, InstallError, Options};
use tandem::slot::SlotGroup;

fn fixture() -> (Fx, Vec<u8>, Vec<u8>) {
    let mut fx = Fx::new(&["rootfs"]);
    fx.extra_config =
        "[http]\nstall_timeout_secs = 1\nconnect_timeout_secs = 2\nretries = 2\n".into();
    let img = pattern(3 << 20, 11);
    let b = fx.bundle("u.tnd", "1.1.0", &[("rootfs", &img, Compression::None)]);
    let bytes = std::fs::read(b).unwrap();
    (fx, img, bytes)
}

fn install_url(fx: &Fx, url: &str) -> Result<install::Report, InstallError> {
    let settings = fx.settings();
    let ctx = Context {
        settings: &settings,
        cmdline: "tandem.slot=a".into(),
        now: 0,
    };
    let src = Source::Http(url.to_string());
    let http = settings.http.clone();
    install::install(
        &ctx,
        url,
        || tandem::fetch::open(&src, &http),
        &Options::default(),
        None,
        &mut |_| {},
    )
}

#[test]
fn plain_download() {
    let (fx, img, bytes) = fixture();
    let s = serve(bytes, vec![]);
    install_url(&fx, &s.url).unwrap();
    assert_eq!(&fx.slot(SlotGroup::B, "rootfs")[..img.len()], &img[..]);
    assert_eq!(s.log.lock().unwrap().ranges, vec![""]);
}

#[test]
fn dropped_connections_resume_with_range() {
    let (fx, img, bytes) = fixture();
    let s = serve(
        bytes,
        vec![Fault::DropAfter(1_000_000), Fault::DropAfter(500_000)],
    );
    install_url(&fx, &s.url).unwrap();
    assert_eq!(&fx.slot(SlotGroup::B, "rootfs")[..img.len()], &img[..]);
    let ranges = s.log.lock().unwrap().ranges.clone();
    assert_eq!(ranges.len(), 3, "{ranges:?}");
    assert_eq!(ranges[0], "");
    // The first resume starts where the first connection dropped (the client
    // may have consumed less than was sent, never more).
    let r1: u64 = ranges[1]
        .trim_start_matches("bytes=")
        .trim_end_matches('-')
        .parse()
        .unwrap();
    let r2: u64 = ranges[2]
        .trim_start_matches("bytes=")
        .trim_end_matches('-')
        .parse()
        .unwrap();
    assert!(r1 > 0 && r1 <= 1_000_000, "{ranges:?}");
    assert!(r2 > r1 && r2 <= r1 + 500_000, "{ranges:?}");
}

#[test]
fn a_stall_times_out_and_resumes() {
    let (fx, img, bytes) = fixture();
    let s = serve(
        bytes,
        vec![Fault::StallAfter(700_000, Duration::from_secs(4))],
    );
    let t = Instant::now();
    install_url(&fx, &s.url).unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "resumed before the stall ended"
    );
    assert_eq!(&fx.slot(SlotGroup::B, "rootfs")[..img.len()], &img[..]);
    assert_eq!(s.log.lock().unwrap().ranges.len(), 2);
}

#[test]
fn endless_stalls_give_up_with_a_clear_error() {
    let (fx, _, bytes) = fixture();
    // Progress resets the retry budget; stalls without progress use it up.
    let first = Fault::StallAfter(200_000, Duration::from_secs(3));
    let stall = Fault::StallAfter(0, Duration::from_secs(3));
    let s = serve(bytes, vec![first, stall.clone(), stall.clone(), stall]);
    let e = install_url(&fx, &s.url).unwrap_err().to_string();
    assert!(e.contains("giving up") && e.contains("stalled"), "{e}");
    assert_eq!(s.log.lock().unwrap().ranges.len(), 3, "1 try + 2 retries");
    assert_eq!(fx.state().slot(SlotGroup::B).state, SlotState::Invalid);
}

#[test]
fn not_found_fails_at_once() {
    let (fx, _, bytes) = fixture();
    let s = serve(bytes, vec![Fault::Status(404)]);
    let snap = fx.snapshot();
    let e = install_url(&fx, &s.url).unwrap_err();
    assert!(
        matches!(
            e,
            InstallError::Fetch(tandem::fetch::FetchError::NotFound { .. })
        ),
        "{e}"
    );
    assert!(e.to_string().contains("404"));
    assert_eq!(s.log.lock().unwrap().ranges.len(), 1, "no retries on 404");
    assert_eq!(fx.snapshot(), snap);
}

#[test]
fn service_unavailable_is_retried_then_given_up() {
    let (fx, _, bytes) = fixture();
    let s = serve(bytes, vec![Fault::Status(503); 10]);
    let t = Instant::now();
    let e = install_url(&fx, &s.url).unwrap_err().to_string();
    assert!(e.contains("503") && e.contains("giving up"), "{e}");
    assert_eq!(s.log.lock().unwrap().ranges.len(), 3);
    assert!(t.elapsed() < Duration::from_secs(10));
}

#[test]
fn transient_503_then_success() {
    let (fx, img, bytes) = fixture();
    let s = serve(bytes, vec![Fault::Status(503), Fault::Status(503)]);
    install_url(&fx, &s.url).unwrap();
    assert_eq!(&fx.slot(SlotGroup::B, "rootfs")[..img.len()], &img[..]);
}

#[test]
fn connection_refused_gives_up() {
    let (fx, _, _) = fixture();
    // Bind then drop to get a port with nothing listening.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let e = install_url(&fx, &format!("http://127.0.0.1:{port}/x.tnd"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("giving up"), "{e}");
}

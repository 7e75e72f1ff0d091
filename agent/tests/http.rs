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
        || tandem::fetch::open(&src, &http, &Default::default()),
        &Options::default(),
        None,
        &mut |_| {},
    )
}

#[test]
fn plain_download() {
    let (fx, img, bytes) = fixture();
    let len = bytes.len();
    let s = serve(bytes, vec![]);
    install_url(&fx, &s.url).unwrap();
    assert_eq!(&fx.slot(SlotGroup::B, "rootfs")[..img.len()], &img[..]);
    // The head by a small range, then the rest in one.
    assert_eq!(
        s.log.lock().unwrap().ranges,
        [
            "bytes=0-16383".to_string(),
            format!("bytes=16384-{}", len - 1)
        ]
    );
}

#[test]
fn dropped_connections_resume_with_range() {
    let (fx, img, bytes) = fixture();
    let s = serve(
        bytes,
        vec![
            Fault::Pass,
            Fault::DropAfter(1_000_000),
            Fault::DropAfter(500_000),
        ],
    );
    install_url(&fx, &s.url).unwrap();
    assert_eq!(&fx.slot(SlotGroup::B, "rootfs")[..img.len()], &img[..]);
    let mut ranges = s.log.lock().unwrap().ranges.clone();
    assert_eq!(ranges.len(), 4, "{ranges:?}");
    assert_eq!(ranges.remove(0), "bytes=0-16383");
    // The first resume starts where the first connection dropped (the client
    // may have consumed less than was sent, never more).
    let start = |r: &str| -> u64 {
        r.trim_start_matches("bytes=")
            .split('-')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(start(&ranges[0]), 16384);
    let (r1, r2) = (start(&ranges[1]), start(&ranges[2]));
    assert!(r1 > 16384 && r1 <= 16384 + 1_000_000, "{ranges:?}");
    assert!(r2 > r1 && r2 <= r1 + 500_000, "{ranges:?}");
}

#[test]
fn a_stall_times_out_and_resumes() {
    let (fx, img, bytes) = fixture();
    let s = serve(
        bytes,
        vec![
            Fault::Pass,
            Fault::StallAfter(700_000, Duration::from_secs(4)),
        ],
    );
    let t = Instant::now();
    install_url(&fx, &s.url).unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "resumed before the stall ended"
    );
    assert_eq!(&fx.slot(SlotGroup::B, "rootfs")[..img.len()], &img[..]);
    assert_eq!(s.log.lock().unwrap().ranges.len(), 3, "head, rest, resume");
}

#[test]
fn endless_stalls_give_up_with_a_clear_error() {
    let (fx, _, bytes) = fixture();
    // Progress resets the retry budget; stalls without progress use it up.
    let first = Fault::StallAfter(200_000, Duration::from_secs(3));
    let stall = Fault::StallAfter(0, Duration::from_secs(3));
    let s = serve(
        bytes,
        vec![Fault::Pass, first, stall.clone(), stall.clone(), stall],
    );
    let e = install_url(&fx, &s.url).unwrap_err().to_string();
    assert!(e.contains("giving up") && e.contains("stalled"), "{e}");
    assert_eq!(
        s.log.lock().unwrap().ranges.len(),
        4,
        "the head, 1 try + 2 retries"
    );
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

/// Through `ops::install`, which starts again from byte 0 when the bundle
/// changed under a resumed download.
fn ops_install(fx: &Fx, url: &str) -> Result<install::Report, tandem::ops::Error> {
    tandem::ops::install(&fx.settings(), url, &Options::default(), &mut |_| {})
}

fn range_starts(s: &common::http::Server) -> Vec<u64> {
    s.log
        .lock()
        .unwrap()
        .ranges
        .iter()
        .map(|r| {
            r.trim_start_matches("bytes=")
                .split('-')
                .next()
                .unwrap_or("")
                .parse()
                .unwrap_or(0)
        })
        .collect()
}

/// The source seam over HTTP: the length, byte ranges (one request each,
/// `bytes=A-B`), a range resumed inside itself after a dropped
/// connection, and a server that ignores Range.
#[test]
fn byte_ranges_of_a_bundle() {
    use tandem::fetch::{BundleSource, HttpSource};
    let body: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let read = |src: &mut HttpSource, a: u64, b: u64| {
        let mut v = Vec::new();
        src.range(a, b).unwrap().read_to_end(&mut v).unwrap();
        v
    };
    let http = tandem::config::HttpSettings::default();

    let s = serve(body.clone(), vec![]);
    let mut src = HttpSource::new(&s.url, &http).unwrap();
    assert_eq!(src.size().unwrap(), body.len() as u64);
    assert_eq!(read(&mut src, 1000, 1010), body[1000..1010]);
    assert_eq!(read(&mut src, 299_990, 300_000), body[299_990..]);
    // Past the end: the range ends at the end (the server answers with
    // what there is, and the reader does not ask again for the rest).
    assert_eq!(read(&mut src, 299_000, 400_000), body[299_000..]);
    assert_eq!(
        s.log.lock().unwrap().ranges,
        [
            "bytes=0-0",
            "bytes=1000-1009",
            "bytes=299990-299999",
            "bytes=299000-399999"
        ]
    );

    // Dropped after 5000 bytes of the range: resumed at 105000, up to the
    // range's own end.
    let s = serve(body.clone(), vec![Fault::DropAfter(5000)]);
    let mut src = HttpSource::new(&s.url, &http).unwrap();
    assert_eq!(read(&mut src, 100_000, 200_000), body[100_000..200_000]);
    assert_eq!(
        s.log.lock().unwrap().ranges,
        ["bytes=100000-199999", "bytes=105000-199999"]
    );

    // A server without range support: the whole body, skipped to the range.
    let s = serve(body.clone(), vec![Fault::IgnoreRange]);
    let mut src = HttpSource::new(&s.url, &http).unwrap();
    assert_eq!(read(&mut src, 250_000, 250_100), body[250_000..250_100]);
}

#[test]
fn a_resume_from_a_changed_bundle_starts_again_from_byte_0() {
    // The ETag changes, or the total length does: either way the 206 is
    // part of another file, and mixing it in is never done.
    for changed in [Fault::ETag("\"v2\"".into()), Fault::Total(12345)] {
        let (fx, img, bytes) = fixture();
        let s = serve(
            bytes,
            vec![Fault::Pass, Fault::DropAfter(1_000_000), changed.clone()],
        );
        ops_install(&fx, &s.url).unwrap();
        assert_eq!(&fx.slot(SlotGroup::B, "rootfs")[..img.len()], &img[..]);
        let starts = range_starts(&s);
        // head, rest, the resume that finds a changed bundle; then again.
        assert_eq!(starts.len(), 5, "{changed:?}: {starts:?}");
        assert!(starts[2] > 16384, "{starts:?}");
        assert_eq!(starts[3], 0, "{changed:?}: the second try starts at byte 0");
    }
    // Directly, the change is an error that says so.
    let (fx, _, bytes) = fixture();
    let s = serve(
        bytes,
        vec![
            Fault::Pass,
            Fault::DropAfter(1_000_000),
            Fault::ETag("\"v2\"".into()),
        ],
    );
    let e = install_url(&fx, &s.url).unwrap_err().to_string();
    assert!(
        e.contains("changed on the server") && e.contains("\"v2\""),
        "{e}"
    );
}

#[test]
fn redirects_are_followed() {
    let (fx, img, bytes) = fixture();
    let s = serve(bytes, vec![Fault::Redirect("/moved.tnd".into())]);
    install_url(&fx, &s.url).unwrap();
    assert_eq!(&fx.slot(SlotGroup::B, "rootfs")[..img.len()], &img[..]);
}

#[test]
fn a_trickle_is_too_slow_and_the_deadline_holds() {
    // 100 bytes a second: the stall timeout (1 s) never fires, the
    // minimum rate does.
    let (mut fx, _, bytes) = fixture();
    fx.extra_config = "[http]\nstall_timeout_secs = 3\nconnect_timeout_secs = 2\nretries = 1\nmin_rate_bytes = 1000\nmin_rate_window_secs = 2\n".into();
    let s = serve(bytes.clone(), vec![Fault::Trickle(100); 4]);
    let t = Instant::now();
    let e = install_url(&fx, &s.url).unwrap_err().to_string();
    assert!(e.contains("too slow") && e.contains("giving up"), "{e}");
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    // The whole download's deadline holds across any number of retries.
    fx.extra_config = "[http]\nstall_timeout_secs = 1\nconnect_timeout_secs = 2\nretries = 100\ndeadline_secs = 3\nmin_rate_bytes = 0\n".into();
    let stall = Fault::StallAfter(10, Duration::from_secs(2));
    let s = serve(bytes, vec![stall; 100]);
    let t = Instant::now();
    let e = install_url(&fx, &s.url).unwrap_err();
    assert!(e.to_string().contains("deadline_secs = 3"), "{e}");
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    assert_eq!(
        tandem::ops::install_outcome(&e),
        tandem::ops::Outcome::Unreachable
    );
}

#[test]
fn secrets_in_urls_are_never_stored_or_shown() {
    let (fx, _, bytes) = fixture();
    let s = serve(bytes, vec![Fault::Status(404)]);
    let url = s.url.replace("http://", "http://user:hunter2@") + "?X-Amz-Signature=s3cr3t";
    let e = ops_install(&fx, &url).unwrap_err().to_string();
    assert!(!e.contains("hunter2") && !e.contains("s3cr3t"), "{e}");
    assert!(e.contains("***@127.0.0.1") && e.contains("?***"), "{e}");
    let stored = std::fs::read_to_string(fx.path("state/state.json")).unwrap();
    assert!(
        !stored.contains("hunter2") && !stored.contains("s3cr3t"),
        "{stored}"
    );
    assert!(stored.contains("?***"), "{stored}");
}

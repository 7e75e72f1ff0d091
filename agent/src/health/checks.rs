//! The individual checks: a command, a file, an HTTP GET, a systemd unit.

use std::path::Path;
use std::time::Duration;

use super::{Check, CheckKind};

/// Runs one check. `Ok(detail)` when it passed, `Err(why)` when it failed.
pub fn run(c: &Check, timeout: Duration, tick: &mut dyn FnMut()) -> Result<String, String> {
    match &c.kind {
        CheckKind::Command(argv) => command(argv, timeout, tick),
        CheckKind::File(p) => {
            if p.exists() {
                Ok(format!("{} exists", p.display()))
            } else {
                Err(format!("{} does not exist", p.display()))
            }
        }
        CheckKind::Http(url) => http(url, timeout),
        CheckKind::Unit(u) => crate::sys::systemd::check_unit(u, timeout, tick),
    }
}

/// Keeps the last `max` bytes of a process's output, on a valid UTF-8 boundary.
fn tail(s: &str, max: usize) -> String {
    let s = s.trim();
    if s.len() <= max {
        return s.to_string();
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &s[start..])
}

fn command(argv: &[String], timeout: Duration, tick: &mut dyn FnMut()) -> Result<String, String> {
    let args: Vec<&str> = argv[1..].iter().map(String::as_str).collect();
    let f = crate::sys::run_with_timeout(Path::new(&argv[0]), &args, timeout, tick)
        .map_err(|e| format!("cannot run {}: {e}", argv[0]))?;
    let output = tail(&format!("{}{}", f.stdout, f.stderr), 2000);
    match f.status {
        Some(s) if s.success() => Ok(output),
        Some(s) => Err(format!("{} exited with {s}: {output}", argv[0])),
        None => Err(format!(
            "{} did not finish within {} s: {output}",
            argv[0],
            timeout.as_secs()
        )),
    }
}

fn http(url: &str, timeout: Duration) -> Result<String, String> {
    let agent = ureq::AgentBuilder::new().timeout(timeout).build();
    match agent.get(url).call() {
        Ok(r) if (200..300).contains(&r.status()) => Ok(format!("HTTP {}", r.status())),
        Ok(r) => Err(format!("{url}: HTTP {}", r.status())),
        Err(ureq::Error::Status(code, _)) => Err(format!("{url}: HTTP {code}")),
        Err(e) => Err(format!("{url}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(kind: CheckKind) -> Check {
        Check {
            name: "t".into(),
            kind,
            timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn command_results() {
        let sh = |s: &str| CheckKind::Command(vec!["/bin/sh".into(), "-c".into(), s.into()]);
        assert_eq!(
            run(&check(sh("echo fine")), Duration::from_secs(5), &mut || {}),
            Ok("fine".into())
        );
        let e = run(
            &check(sh("echo broken >&2; exit 3")),
            Duration::from_secs(5),
            &mut || {},
        )
        .unwrap_err();
        assert!(e.contains("exit status: 3") && e.contains("broken"), "{e}");
        let mut ticks = 0;
        let e = run(
            &check(sh("sleep 10")),
            Duration::from_millis(300),
            &mut || ticks += 1,
        )
        .unwrap_err();
        assert!(e.contains("did not finish"), "{e}");
        assert!(ticks > 2, "watchdog petted while waiting");
        let e = run(
            &check(CheckKind::Command(vec!["/nonexistent".into()])),
            Duration::from_secs(1),
            &mut || {},
        )
        .unwrap_err();
        assert!(e.contains("cannot run"), "{e}");
    }

    #[test]
    fn file_check() {
        let d = tempfile::tempdir().unwrap();
        assert!(run(
            &check(CheckKind::File(d.path().join("x"))),
            Duration::from_secs(1),
            &mut || {}
        )
        .is_err());
        std::fs::write(d.path().join("x"), "").unwrap();
        assert!(run(
            &check(CheckKind::File(d.path().join("x"))),
            Duration::from_secs(1),
            &mut || {}
        )
        .is_ok());
    }

    #[test]
    fn http_check_against_a_real_server() {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for (i, c) in l.incoming().enumerate() {
                let mut c = c.unwrap();
                let mut buf = [0u8; 1024];
                let _ = c.read(&mut buf);
                let status = if i == 0 { "200 OK" } else { "503 Busy" };
                let _ = write!(
                    c,
                    "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        });
        let url = format!("http://127.0.0.1:{port}/healthz");
        assert!(run(
            &check(CheckKind::Http(url.clone())),
            Duration::from_secs(5),
            &mut || {}
        )
        .is_ok());
        let e = run(
            &check(CheckKind::Http(url)),
            Duration::from_secs(5),
            &mut || {},
        )
        .unwrap_err();
        assert!(e.contains("503"), "{e}");
    }

    #[test]
    fn tails_long_output() {
        assert_eq!(tail("abcdef", 3), "…def");
        assert_eq!(tail(" ab ", 3), "ab");
    }
}

//! A static file server on 127.0.0.1 for bundles, with `Range` support,
//! and the byte relay that QEMU's `guestfwd=...-cmd:` runs per connection.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::{io, RigError};

/// Serves files of one directory until dropped.
pub struct FileServer {
    pub port: u16,
    stop: Arc<AtomicBool>,
}

impl FileServer {
    pub fn start(root: &Path) -> Result<FileServer, RigError> {
        let l = TcpListener::bind("127.0.0.1:0").map_err(io("bind 127.0.0.1"))?;
        let port = l.local_addr().map_err(io("local addr"))?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let root = root.to_path_buf();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                if stop2.load(Ordering::Relaxed) {
                    break;
                }
                if let Ok(c) = conn {
                    let root = root.clone();
                    std::thread::spawn(move || {
                        let _ = serve_one(c, &root);
                    });
                }
            }
        });
        Ok(FileServer { port, stop })
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve_one(mut c: TcpStream, root: &Path) -> std::io::Result<()> {
    let mut r = BufReader::new(c.try_clone()?);
    let mut first = String::new();
    r.read_line(&mut first)?;
    // bytes=START- or bytes=START-LAST (single ranges only).
    let mut range: Option<(u64, Option<u64>)> = None;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("range") {
                range = v
                    .trim()
                    .strip_prefix("bytes=")
                    .and_then(|s| s.split_once('-'))
                    .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok())));
            }
        }
    }
    let path = first.split_whitespace().nth(1).unwrap_or("/");
    let name = path.trim_start_matches('/');
    let file: Option<PathBuf> = safe_path(name)
        .then(|| root.join(name))
        .filter(|p| p.is_file());
    let Some(file) = file else {
        return write!(
            c,
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
    };
    let mut f = std::fs::File::open(&file)?;
    let len = f.metadata()?.len();
    if let Some((start, last)) = range.filter(|(a, _)| *a < len) {
        use std::io::Seek;
        let end = last.map_or(len, |l| (l + 1).min(len)).max(start);
        f.seek(std::io::SeekFrom::Start(start))?;
        write!(
            c,
            "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{len}\r\nConnection: close\r\n\r\n",
            end - start,
            end.saturating_sub(1)
        )?;
        std::io::copy(&mut f.take(end - start), &mut c)?;
        return Ok(());
    } else {
        write!(
            c,
            "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nAccept-Ranges: bytes\r\nConnection: close\r\n\r\n"
        )?;
    }
    std::io::copy(&mut f, &mut c)?;
    Ok(())
}

/// A request path the server may open under its root: components that
/// are not empty and do not start with a dot (no `..`, no hidden files).
fn safe_path(name: &str) -> bool {
    !name.is_empty()
        && name
            .split('/')
            .all(|c| !c.is_empty() && !c.starts_with('.'))
}

/// Copies stdin to `addr` and `addr` back to stdout until both sides close:
/// what QEMU's guestfwd `cmd:` runs for each guest connection.
pub fn relay(addr: &str) -> std::io::Result<()> {
    let s = TcpStream::connect(addr)?;
    let mut s2 = s.try_clone()?;
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut s2);
        let _ = s2.shutdown(std::net::Shutdown::Write);
    });
    let mut down = s;
    let mut out = std::io::stdout().lock();
    let mut buf = [0u8; 64 << 10];
    loop {
        let n = down.read(&mut buf)?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])?;
        out.flush()?;
    }
    drop(up);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_files_and_ranges() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("b.tnd"), b"0123456789").unwrap();
        let s = FileServer::start(d.path()).unwrap();
        let get = |req: &str| {
            let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
            c.write_all(req.as_bytes()).unwrap();
            let mut out = String::new();
            c.read_to_string(&mut out).unwrap();
            out
        };
        let r = get("GET /b.tnd HTTP/1.1\r\n\r\n");
        assert!(
            r.starts_with("HTTP/1.1 200") && r.ends_with("0123456789"),
            "{r}"
        );
        let r = get("GET /b.tnd HTTP/1.1\r\nRange: bytes=4-\r\n\r\n");
        assert!(
            r.starts_with("HTTP/1.1 206") && r.ends_with("456789"),
            "{r}"
        );
        assert!(r.contains("Content-Range: bytes 4-9/10"), "{r}");
        // A bounded range (an install reads a bundle's head so) is only
        // that range; one past the end ends at the end.
        let r = get("GET /b.tnd HTTP/1.1\r\nRange: bytes=2-4\r\n\r\n");
        assert!(
            r.starts_with("HTTP/1.1 206") && r.ends_with("\r\n\r\n234"),
            "{r}"
        );
        assert!(r.contains("Content-Range: bytes 2-4/10"), "{r}");
        let r = get("GET /b.tnd HTTP/1.1\r\nRange: bytes=8-100\r\n\r\n");
        assert!(
            r.ends_with("\r\n\r\n89") && r.contains("bytes 8-9/10"),
            "{r}"
        );
        // Subdirectories (a TUF repository's targets/ROLE/), nothing above
        // the root and nothing hidden.
        std::fs::create_dir_all(d.path().join("repo/targets")).unwrap();
        std::fs::write(d.path().join("repo/targets/t.tnd"), b"abc").unwrap();
        std::fs::write(d.path().join("repo/.key"), b"secret").unwrap();
        let r = get("GET /repo/targets/t.tnd HTTP/1.1\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 200") && r.ends_with("abc"), "{r}");
        for bad in [
            "/repo/.key",
            "/repo//targets/t.tnd",
            "/repo/targets/../.key",
            "/repo/targets",
        ] {
            let r = get(&format!("GET {bad} HTTP/1.1\r\n\r\n"));
            assert!(r.starts_with("HTTP/1.1 404"), "{bad}: {r}");
        }
        assert!(get("GET /../etc/passwd HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
        assert!(get("GET /nope HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
    }
}

//! A small HTTP/1.1 file server on 127.0.0.1 that can misbehave on purpose:
//! drop the connection mid-body, stall, or answer with an error status. It
//! honours `Range: bytes=N-` and sends an ETag, like a CDN would.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Debug)]
pub enum Fault {
    /// Serve this request normally (e.g. an install's first range, the
    /// bundle's head).
    Pass,
    /// Send the full headers, then only this many body bytes, then close.
    DropAfter(usize),
    /// Send this many body bytes, then go silent for the duration, then close.
    StallAfter(usize, Duration),
    /// Answer with this status and no body.
    Status(u16),
    /// Answer `302 Found` to this Location.
    Redirect(String),
    /// Serve normally, but claim this ETag (the bundle "changed").
    ETag(String),
    /// Claim this total length in Content-Range (a 206 from another file).
    Total(usize),
    /// Send this many bytes per second, for the whole body.
    Trickle(usize),
    /// Answer a Range request with the whole body (a server without
    /// range support).
    IgnoreRange,
}

#[derive(Default)]
pub struct Log {
    /// The Range header of each request ("" when absent).
    pub ranges: Vec<String>,
    /// Body bytes sent (whole answers; a fault's cut is not subtracted).
    pub sent: u64,
}

pub struct Server {
    pub url: String,
    pub log: Arc<Mutex<Log>>,
    /// The directory a [`serve_dir`] server serves (switchable).
    root: Option<Arc<Mutex<std::path::PathBuf>>>,
}

impl Server {
    /// Serves `dir` from the next request on ([`serve_dir`] servers only).
    pub fn serve_from(&self, dir: std::path::PathBuf) {
        *self
            .root
            .as_ref()
            .expect("a serve_dir server")
            .lock()
            .unwrap() = dir;
    }
}

/// Serves `body` at `/bundle.tnd`. Request number i (from 0) suffers
/// `faults[i]` if there is one; later requests are served normally.
pub fn serve(body: Vec<u8>, faults: Vec<Fault>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/bundle.tnd", listener.local_addr().unwrap());
    let log = Arc::new(Mutex::new(Log::default()));
    let log2 = log.clone();
    let body = Arc::new(body);
    let lookup: Lookup =
        Arc::new(move |p: &str| (p == "/bundle.tnd" || p == "/moved.tnd").then(|| body.clone()));
    spawn(listener, lookup, faults, log2);
    Server {
        url,
        log,
        root: None,
    }
}

/// What a server answers for a request path (`None`: 404).
type Lookup = Arc<dyn Fn(&str) -> Option<Arc<Vec<u8>>> + Send + Sync>;

fn spawn(listener: TcpListener, lookup: Lookup, faults: Vec<Fault>, log: Arc<Mutex<Log>>) {
    std::thread::spawn(move || {
        for (i, conn) in listener.incoming().enumerate() {
            let Ok(conn) = conn else { continue };
            let fault = faults.get(i).cloned();
            let lookup = lookup.clone();
            let log = log.clone();
            std::thread::spawn(move || {
                let _ = handle(conn, &*lookup, fault, &log);
            });
        }
    });
}

/// Serves the files under `root` (read at each request, so a test can
/// change them between requests, or switch to another directory with
/// [`Server::serve_from`]) at `URL/PATH`; `url` has no trailing slash.
/// Paths with `..` are 404.
pub fn serve_dir(root: &std::path::Path) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let log = Arc::new(Mutex::new(Log::default()));
    let root = Arc::new(Mutex::new(root.to_path_buf()));
    let shared = root.clone();
    let lookup: Lookup = Arc::new(move |p: &str| {
        let rel = p.trim_start_matches('/');
        if rel.split('/').any(|c| c == ".." || c.is_empty()) {
            return None;
        }
        let file = shared.lock().unwrap().join(rel);
        std::fs::read(file).ok().map(Arc::new)
    });
    spawn(listener, lookup, vec![], log.clone());
    Server {
        url,
        log,
        root: Some(root),
    }
}

fn handle(
    mut conn: TcpStream,
    lookup: &(dyn Fn(&str) -> Option<Arc<Vec<u8>>> + Send + Sync),
    fault: Option<Fault>,
    log: &Mutex<Log>,
) -> std::io::Result<()> {
    let mut r = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let found = line.split_whitespace().nth(1).and_then(lookup);
    let mut range = String::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h)?;
        if h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("range") {
                range = v.trim().to_string();
            }
        }
    }
    log.lock().unwrap().ranges.push(range.clone());
    if let Some(Fault::Redirect(to)) = &fault {
        write!(
            conn,
            "HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )?;
        return Ok(());
    }
    let status = match (&fault, &found) {
        (_, None) => Some(404),
        (Some(Fault::Status(s)), _) => Some(*s),
        _ => None,
    };
    if let Some(s) = status {
        write!(
            conn,
            "HTTP/1.1 {s} Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )?;
        return Ok(());
    }
    let body: &[u8] = found.as_deref().expect("checked");
    if matches!(fault, Some(Fault::IgnoreRange)) {
        range.clear();
    }
    // bytes=START- or bytes=START-LAST
    let (start, last) = match range.strip_prefix("bytes=").and_then(|r| r.split_once('-')) {
        Some((a, b)) => (
            a.parse::<usize>().unwrap_or(0).min(body.len()),
            b.parse::<usize>()
                .ok()
                .map(|l| l.min(body.len().saturating_sub(1))),
        ),
        None => (0, None),
    };
    let ranged = start > 0 || last.is_some();
    let end = last.map(|l| l + 1).unwrap_or(body.len()).max(start);
    let part = &body[start..end];
    let etag = match &fault {
        Some(Fault::ETag(t)) => t.clone(),
        _ => "\"v1\"".to_string(),
    };
    let total = match &fault {
        Some(Fault::Total(t)) => *t,
        _ => body.len(),
    };
    if ranged {
        write!(
            conn,
            "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{total}\r\nETag: {etag}\r\nConnection: close\r\n\r\n",
            part.len(),
            end.saturating_sub(1),
        )?;
    } else {
        write!(
            conn,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nAccept-Ranges: bytes\r\nETag: {etag}\r\nConnection: close\r\n\r\n",
            part.len()
        )?;
    }
    match fault {
        Some(Fault::DropAfter(n)) => {
            conn.write_all(&part[..n.min(part.len())])?;
            conn.flush()?;
            conn.shutdown(std::net::Shutdown::Both)?;
        }
        Some(Fault::StallAfter(n, d)) => {
            conn.write_all(&part[..n.min(part.len())])?;
            conn.flush()?;
            std::thread::sleep(d);
        }
        Some(Fault::Trickle(per_sec)) => {
            for c in part.chunks(per_sec.max(1)) {
                conn.write_all(c)?;
                conn.flush()?;
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        _ => {
            log.lock().unwrap().sent += part.len() as u64;
            conn.write_all(part)?
        }
    }
    Ok(())
}

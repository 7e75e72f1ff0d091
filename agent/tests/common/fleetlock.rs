//! A real etcd (Debian `etcd-server`) on 127.0.0.1 and the tests'
//! FleetLock server (tests/fleetlock/server.py) keeping its semaphore in
//! it, the way airlock does.

use super::free_port;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Etcd {
    child: Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Etcd {
    pub fn start() -> Etcd {
        let dir = tempfile::tempdir().unwrap();
        let (client, peer) = (free_port(), free_port());
        let url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let child = Command::new("etcd")
            .args(["--name", "tandem-test", "--data-dir"])
            .arg(dir.path().join("data"))
            .args([
                "--listen-client-urls",
                &url,
                "--advertise-client-urls",
                &url,
            ])
            .args([
                "--listen-peer-urls",
                &peer_url,
                "--initial-advertise-peer-urls",
                &peer_url,
            ])
            .args(["--initial-cluster", &format!("tandem-test={peer_url}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("etcd.log")).unwrap())
            .spawn()
            .expect("etcd (Debian etcd-server)");
        let mut e = Etcd {
            child,
            url,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while ureq::get(&format!("{}/health", e.url)).call().is_err() {
            if let Ok(Some(st)) = e.child.try_wait() {
                panic!("etcd exited: {st}");
            }
            assert!(Instant::now() < deadline, "etcd did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        e
    }
}

pub struct FleetLock {
    child: Child,
    pub url: String,
}

impl Drop for FleetLock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl FleetLock {
    /// A server for `etcd` whose groups have `slots` reboot slots each.
    pub fn start(etcd: &Etcd, slots: u32) -> FleetLock {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fleetlock/server.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args(["--etcd", &etcd.url, "--slots", &slots.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("FleetLock server: {line:?}"))
            .to_string();
        FleetLock {
            child,
            url: format!("http://{addr}"),
        }
    }
}

//! A real gooseBit (PyPI `goosebit`, a hawkBit DDI server) on 127.0.0.1,
//! with this repository's Tandem plugin (fleet/goosebit-tandem), driven
//! through its HTTP API the way an operator's script would.
//!
//! gooseBit lives in a venv: `TANDEM_GOOSEBIT_VENV`, default
//! /opt/tandem/goosebit-venv (scripts/setup.sh makes it). The plugin is
//! installed from the working tree into a per-run directory on
//! PYTHONPATH, so the code under test is this checkout's.

use super::free_port;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const DEFAULT_VENV: &str = "/opt/tandem/goosebit-venv";

pub fn venv() -> Option<PathBuf> {
    let v = std::env::var_os("TANDEM_GOOSEBIT_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| DEFAULT_VENV.into());
    v.join("bin/uvicorn").exists().then_some(v)
}

fn tmp(name: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join(name)
}

fn run(cmd: &mut Command, what: &str) {
    let o = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        o.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The plugin, pip-installed (its pyproject, entry point and all) once per
/// test process.
fn plugin_site(venv: &Path) -> &'static Path {
    static SITE: OnceLock<PathBuf> = OnceLock::new();
    SITE.get_or_init(|| {
        let site = tmp(&format!("goosebit-plugin-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&site);
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fleet/goosebit-tandem");
        let build = tmp(&format!("goosebit-plugin-build-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&build);
        // Built from a copy: pip leaves build/ and *.egg-info in the source.
        run(
            Command::new("cp").arg("-r").arg(&src).arg(&build),
            "copy the plugin",
        );
        run(
            Command::new(venv.join("bin/pip"))
                .args([
                    "install",
                    "-q",
                    "--no-deps",
                    "--no-build-isolation",
                    "--target",
                ])
                .arg(&site)
                .arg(&build),
            "pip install the plugin",
        );
        site
    })
}

/// A migrated, empty database, made once per test process.
fn template_db(venv: &Path) -> &'static Path {
    static DB: OnceLock<PathBuf> = OnceLock::new();
    DB.get_or_init(|| {
        let dir = tmp(&format!("goosebit-template-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("db.sqlite3");
        write_settings(&dir, &db, 1);
        let found = Command::new(venv.join("bin/python"))
            .args([
                "-c",
                "import importlib.util as u; print(u.find_spec('goosebit').submodule_search_locations[0])",
            ])
            .output()
            .unwrap();
        let location = Path::new(String::from_utf8(found.stdout).unwrap().trim()).join("db/migrations");
        std::fs::write(
            dir.join("pyproject.toml"),
            format!(
                "[tool.aerich]\ntortoise_orm = \"goosebit.db.config.TORTOISE_CONF\"\nlocation = \"{}\"\nsrc_folder = \"./.\"\n",
                location.display()
            ),
        )
        .unwrap();
        run(
            Command::new(venv.join("bin/aerich"))
                .arg("upgrade")
                .current_dir(&dir)
                .env("GOOSEBIT_SETTINGS", dir.join("goosebit.yaml")),
            "aerich upgrade",
        );
        db
    })
}

fn write_settings(dir: &Path, db: &Path, poll_secs: u32) {
    std::fs::write(
        dir.join("goosebit.yaml"),
        format!(
            "poll_time: \"00:00:{poll_secs:02}\"\nsecret_key: \"tandem-test-secret-key-0123456789ab\"\n\
             db_uri: \"sqlite://{}\"\nartifacts_dir: \"{}\"\ntrack_device_ip: false\nplugins:\n  - tandem\n",
            db.display(),
            dir.join("artifacts").display()
        ),
    )
    .unwrap();
}

pub struct GooseBit {
    child: Child,
    pub url: String,
    token: String,
    pub dir: tempfile::TempDir,
}

impl Drop for GooseBit {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl GooseBit {
    pub fn start(venv: &Path) -> GooseBit {
        let site = plugin_site(venv);
        let template = template_db(venv);
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db.sqlite3");
        std::fs::copy(template, &db).unwrap();
        write_settings(dir.path(), &db, 1);
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("goosebit.log")).unwrap();
        let child = Command::new(venv.join("bin/uvicorn"))
            .args(["goosebit:app", "--host", "127.0.0.1", "--port"])
            .arg(port.to_string())
            .current_dir(dir.path())
            .env("GOOSEBIT_SETTINGS", dir.path().join("goosebit.yaml"))
            .env("PYTHONPATH", site)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let mut g = GooseBit {
            child,
            url,
            token: String::new(),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if ureq::get(&format!("{}/login", g.url)).call().is_ok() {
                break;
            }
            if let Ok(Some(st)) = g.child.try_wait() {
                panic!("gooseBit exited ({st}): {}", g.log());
            }
            assert!(
                Instant::now() < deadline,
                "gooseBit did not start: {}",
                g.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let r: serde_json::Value = ureq::post(&format!("{}/setup", g.url))
            .send_form(&[
                ("username", "admin@example.com"),
                ("password", "tandem-test"),
            ])
            .unwrap()
            .pipe_json();
        g.token = r["access_token"].as_str().unwrap().to_string();
        g
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("goosebit.log")).unwrap_or_default()
    }

    fn api(&self, method: &str, path: &str) -> ureq::Request {
        ureq::request(method, &format!("{}/api/v1{path}", self.url))
            .set("Authorization", &format!("Bearer {}", self.token))
    }

    /// Uploads a file as software: `Ok(id)`, or the HTTP status.
    pub fn upload(&self, file: &Path) -> Result<u64, (u16, String)> {
        let boundary = "tandem-test-boundary-7d1c";
        let name = file.file_name().unwrap().to_string_lossy();
        let mut body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        .into_bytes();
        body.extend(std::fs::read(file).unwrap());
        body.extend(format!("\r\n--{boundary}--\r\n").into_bytes());
        match self
            .api("PUT", "/software")
            .set(
                "Content-Type",
                &format!("multipart/form-data; boundary={boundary}"),
            )
            .send_bytes(&body)
        {
            Ok(r) => Ok(r.pipe_json()["id"].as_u64().unwrap()),
            Err(ureq::Error::Status(code, r)) => Err((code, r.into_string().unwrap_or_default())),
            Err(e) => panic!("upload: {e}"),
        }
    }

    pub fn software(&self) -> serde_json::Value {
        self.api("GET", "/software").call().unwrap().pipe_json()
    }

    /// A rollout of `software` on the default feed (where new devices are).
    pub fn rollout(&self, software: u64) {
        self.api("PUT", "/rollouts")
            .set("Content-Type", "application/json")
            .send_string(&serde_json::json!({"name": "tandem-test", "feed": "default", "software_id": software}).to_string())
            .unwrap();
    }

    pub fn rollouts(&self) -> serde_json::Value {
        self.api("GET", "/rollouts").call().unwrap().pipe_json()
    }

    /// Assigns `software` to `device` directly.
    pub fn assign(&self, device: &str, software: u64) {
        self.api("PUT", "/devices")
            .set("Content-Type", "application/json")
            .send_string(
                &serde_json::json!({"devices": [device], "software": software.to_string()})
                    .to_string(),
            )
            .unwrap();
    }

    /// The device as gooseBit stores it (`None`: never seen).
    pub fn device(&self, id: &str) -> Option<serde_json::Value> {
        let all: serde_json::Value = self.api("GET", "/devices").call().unwrap().pipe_json();
        all["devices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["id"] == id)
            .cloned()
    }

    /// The device's update log (the feedback details gooseBit kept).
    pub fn device_log(&self, id: &str) -> String {
        let v: serde_json::Value = self
            .api("GET", &format!("/devices/{id}/log"))
            .call()
            .unwrap()
            .pipe_json();
        v["log"].as_str().unwrap_or_default().to_string()
    }

    /// Requests to the artifact download seen in the server log.
    pub fn downloads(&self) -> usize {
        let mut s = String::new();
        std::fs::File::open(self.dir.path().join("goosebit.log"))
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        s.lines()
            .filter(|l| l.contains("GET /DEFAULT/controller/v1/") && l.contains("/download "))
            .count()
    }
}

trait PipeJson {
    fn pipe_json(self) -> serde_json::Value;
}

impl PipeJson for ureq::Response {
    fn pipe_json(self) -> serde_json::Value {
        serde_json::from_reader(self.into_reader()).unwrap()
    }
}

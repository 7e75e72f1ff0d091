//! The hawkBit (DDI) client against a real gooseBit on 127.0.0.1, with the
//! Tandem plugin so that bundles upload as they are: a device registers,
//! a rollout (or an assignment) installs into file-backed slots with the
//! GRUB backend on a grubenv file, and what the boot check decided after
//! the "reboot" reaches the server. gooseBit has no cancel action, so the
//! cancel case runs against a tiny fake DDI server (Python, below).

mod common;

use std::process::{Command, Output};

use common::goosebit::{self, GooseBit};
use common::*;
use tandem::boot::grub::GrubStore;
use tandem::boot::{abvars, EnvStore};
use tandem::bundle::manifest::Compression;
use tandem::slot::SlotGroup::{A, B};

fn tandem(fx: &Fx, args: &[&str]) -> Output {
    fx.tandem().arg("--direct").args(args).output().unwrap()
}

fn poll(fx: &Fx) -> String {
    let o = tandem(fx, &["hawkbit", "poll"]);
    let t = text(&o);
    assert!(o.status.success(), "tandem hawkbit poll: {t}");
    t
}

fn server() -> Option<GooseBit> {
    match goosebit::venv() {
        Some(v) => Some(GooseBit::start(&v)),
        None => {
            tools::skip(
                "hawkbit",
                &format!(
                    "gooseBit in a venv (TANDEM_GOOSEBIT_VENV, default {})",
                    goosebit::DEFAULT_VENV
                ),
            );
            None
        }
    }
}

/// A device booted from a, GRUB backend on a grubenv file, `health` as its
/// checks, polling `url` as controller `id`; it never reboots by itself.
fn device(url: &str, id: &str, health: &str) -> (Fx, std::path::PathBuf) {
    let mut fx = Fx::new(&["rootfs"]);
    let env = fx.path("grubenv");
    tandem::boot::grub::create(&env).unwrap();
    fx.extra_config = format!(
        "[boot]\nbackend = \"grub\"\ngrubenv = \"{}\"\n[health]\nreboot_on_failure = false\n{health}\n\
         [hawkbit]\nserver = \"{url}\"\ncontroller_id = \"{id}\"\nreboot = false\n",
        env.display()
    );
    fx.write_config();
    (fx, env)
}

/// What GRUB and the kernel do at the reboot: boot the armed group.
fn reboot(fx: &Fx, env: &std::path::Path) {
    let mut v = GrubStore::new(env).load().unwrap();
    assert_eq!(abvars::simulate_boot(&mut v), Some(B));
    GrubStore::new(env).save(&v).unwrap();
    std::fs::write(fx.path("cmdline"), "tandem.slot=b\n").unwrap();
}

/// Registers, installs what gooseBit offers, and returns the image.
fn register_and_install(g: &GooseBit, fx: &Fx, id: &str, assign: bool) -> Vec<u8> {
    let out = poll(fx);
    assert!(out.contains("sent the device's attributes"), "{out}");
    let d = g.device(id).expect("registered on its first poll");
    assert_eq!(d["hardware"]["model"], "tandem-test", "{d}");
    assert_eq!(d["last_state"], "Registered", "{d}");

    let img = pattern(300_000, 7);
    let b = fx.bundle("u.tnd", "1.1.0", &[("rootfs", &img, Compression::Zstd)]);
    let sw = g
        .upload(&b)
        .unwrap_or_else(|e| panic!("upload: {e:?}\n{}", g.log()));
    let listed = g.software();
    let s = &listed["software"][0];
    assert_eq!(
        (s["version"].as_str(), s["id"].as_u64()),
        (Some("1.1.0"), Some(sw)),
        "{listed}"
    );
    if assign {
        g.assign(id, sw);
    } else {
        g.rollout(sw);
    }

    let out = poll(fx);
    assert!(out.contains("installed 1.1.0 into slot group b"), "{out}");
    assert!(out.contains("waiting for a reboot"), "{out}");
    assert_eq!(&fx.slot(B, "rootfs")[..img.len()], &img[..]);
    let d = g.device(id).unwrap();
    assert_eq!(d["last_state"], "Running", "{d}");
    let log = g.device_log(id);
    assert!(log.contains("bundle signature verified: 1.1.0"), "{log}");

    // Installed and armed, not rebooted: the next poll downloads nothing.
    let downloads = g.downloads();
    let out = poll(fx);
    assert!(out.contains("waiting"), "{out}");
    assert_eq!(g.downloads(), downloads, "no second download");
    img
}

#[test]
fn a_rollout_installs_and_the_committed_boot_is_reported() {
    let Some(g) = server() else { return };
    let (fx, env) = device(
        &g.url,
        "dev-ok",
        "[[health.check]]\ncommand = [\"/bin/true\"]\n",
    );
    register_and_install(&g, &fx, "dev-ok", false);

    reboot(&fx, &env);
    let o = tandem(&fx, &["boot-check"]);
    assert!(text(&o).contains("slot b committed"), "{}", text(&o));
    let out = poll(&fx);
    assert!(
        out.contains("reported success: committed: 1.1.0 runs from slot group b"),
        "{out}"
    );
    let d = g.device("dev-ok").unwrap();
    assert_eq!(
        (d["last_state"].as_str(), d["sw_version"].as_str()),
        (Some("Finished"), Some("1.1.0")),
        "{d}"
    );
    assert_eq!(g.rollouts()["rollouts"][0]["success_count"], 1);
    let out = poll(&fx);
    assert!(!out.contains("install"), "nothing more to do: {out}");
}

#[test]
fn a_failed_health_check_is_reported_with_its_reason() {
    let Some(g) = server() else { return };
    let check = "[[health.check]]\nname = \"app\"\ncommand = [\"/bin/sh\", \"-c\", \"echo db unreachable; exit 1\"]\n";
    let (fx, env) = device(&g.url, "dev-bad", check);
    register_and_install(&g, &fx, "dev-bad", true);

    reboot(&fx, &env);
    let o = tandem(&fx, &["boot-check"]);
    assert!(
        !o.status.success() && text(&o).contains("FAILED on slot b"),
        "{}",
        text(&o)
    );
    // The health check's unit would reboot into a now; the agent reports from there too.
    std::fs::write(fx.path("cmdline"), "tandem.slot=a\n").unwrap();
    let out = poll(&fx);
    assert!(out.contains("reported failure: fell back"), "{out}");
    assert!(out.contains("db unreachable"), "{out}");
    let d = g.device("dev-bad").unwrap();
    assert_eq!(d["last_state"], "Error", "{d}");
    let log = g.device_log("dev-bad");
    assert!(
        log.contains("health check \"app\" failed") && log.contains("db unreachable"),
        "{log}"
    );
    assert_eq!(fx.state().slot(B).state, tandem::fsm::SlotState::Bad);
}

#[test]
fn a_tampered_bundle_is_refused_reported_and_no_slot_is_touched() {
    let Some(g) = server() else { return };
    let (fx, _env) = device(&g.url, "dev-tamper", "");
    assert!(poll(&fx).contains("sent the device's attributes"));
    let img = pattern(100_000, 9);
    let b = fx.bundle("t.tnd", "1.1.0", &[("rootfs", &img, Compression::None)]);
    // Same length, valid JSON, valid tar: only the signature can tell.
    let mut bytes = std::fs::read(&b).unwrap();
    let at = bytes.windows(7).position(|w| w == b"\"1.1.0\"").unwrap();
    bytes[at + 5] = b'9';
    std::fs::write(&b, &bytes).unwrap();
    let sw = g
        .upload(&b)
        .unwrap_or_else(|e| panic!("upload: {e:?}\n{}", g.log()));
    g.assign("dev-tamper", sw);
    let before = fx.snapshot();

    let out = poll(&fx);
    assert!(
        out.contains("reported failure: install failed: bundle refused"),
        "{out}"
    );
    assert!(out.contains("modified after signing"), "{out}");
    assert_eq!(fx.snapshot(), before, "both slots untouched");
    assert_eq!(g.device("dev-tamper").unwrap()["last_state"], "Error");
}

#[test]
fn goosebit_refuses_a_non_bundle_and_takes_a_bundle_through_the_plugin() {
    let Some(g) = server() else { return };
    let fx = Fx::new(&["rootfs"]);
    let junk = fx.write_image("junk.tnd", &pattern(4096, 1));
    assert_eq!(g.upload(&junk).unwrap_err().0, 422);
    let b = fx.bundle_with(
        "gw.tnd",
        "2.0.0-rc.1",
        0,
        "acme-gw",
        &[("rootfs", &pattern(5000, 2), Compression::None)],
        std::slice::from_ref(&fx.key),
    );
    g.upload(&b).unwrap();
    let s = &g.software()["software"][0];
    assert_eq!(s["version"], "2.0.0-rc.1");
    assert_eq!(s["compatibility"][0]["model"], "acme-gw", "{s}");
}

/// A DDI server that offers one cancel action (stopId 5) and records the
/// feedback it gets; it requires the device's target token.
const FAKE_DDI: &str = r#"
import http.server, json, sys
log = open(sys.argv[1], "a")
class H(http.server.BaseHTTPRequestHandler):
    def answer(self, code, body):
        b = json.dumps(body).encode()
        self.send_response(code); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(b))); self.end_headers(); self.wfile.write(b)
    def authorized(self):
        if self.headers.get("Authorization") != "TargetToken t0k3n":
            self.answer(401, {}); return False
        return True
    def do_GET(self):
        if not self.authorized(): return
        base = "http://%s/DEFAULT/controller/v1/dev-c" % self.headers["Host"]
        if self.path == "/DEFAULT/controller/v1/dev-c":
            self.answer(200, {"config": {"polling": {"sleep": "00:00:05"}},
                              "_links": {"cancelAction": {"href": base + "/cancelAction/9"}}})
        elif self.path == "/DEFAULT/controller/v1/dev-c/cancelAction/9":
            self.answer(200, {"id": "9", "cancelAction": {"stopId": "5"}})
        else:
            self.answer(404, {})
    def do_POST(self):
        if not self.authorized(): return
        body = self.rfile.read(int(self.headers["Content-Length"]))
        log.write(json.dumps({"path": self.path, "body": json.loads(body)}) + "\n"); log.flush()
        self.answer(200, {})
    def log_message(self, *a): pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"#;

#[test]
fn a_cancel_action_is_acknowledged_when_nothing_was_written() {
    if !tools::have("python3") {
        return tools::skip("a_cancel_action_is_acknowledged", "python3");
    }
    let fx_dir = tempfile::tempdir().unwrap();
    let feedback = fx_dir.path().join("feedback.jsonl");
    let mut child = Command::new("python3")
        .args(["-c", FAKE_DDI])
        .arg(&feedback)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut port = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
        &mut port,
    )
    .unwrap();
    let url = format!("http://127.0.0.1:{}", port.trim());
    let (mut fx, _env) = device(&url, "dev-c", "");
    std::fs::write(fx.path("token"), "t0k3n\n").unwrap();
    fx.extra_config += &format!("target_token_file = \"{}\"\n", fx.path("token").display());
    fx.write_config();
    let before = fx.snapshot();
    let out = poll(&fx);
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        out.contains("cancel 9: nothing of action 5 was written"),
        "{out}"
    );
    let sent: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&feedback)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        sent["path"],
        "/DEFAULT/controller/v1/dev-c/cancelAction/9/feedback"
    );
    assert_eq!(sent["body"]["id"], "9");
    assert_eq!(sent["body"]["status"]["execution"], "closed");
    assert_eq!(sent["body"]["status"]["result"]["finished"], "success");
    assert_eq!(fx.snapshot(), before);
    let _ = A;
}

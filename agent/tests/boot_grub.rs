//! GRUB backend against Debian's own tools: `grub-editenv` must read what
//! we write and we must read what it writes; the shipped grub.cfg must pass
//! `grub-script-check`. Missing tools fail the test when
//! TANDEM_TEST_REQUIRE_TOOLS=1 (CI), and skip it otherwise.

use std::path::Path;
use std::process::Command;

use tandem::boot::grub::{self, GrubStore};
use tandem::boot::{abvars, Bootloader, EnvBootloader, EnvStore, Mark};
use tandem::slot::SlotGroup::{A, B};

fn tool(name: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !found {
        assert!(
            std::env::var("TANDEM_TEST_REQUIRE_TOOLS").as_deref() != Ok("1"),
            "{name} is required (TANDEM_TEST_REQUIRE_TOOLS=1)"
        );
        eprintln!("SKIPPED: {name} not installed");
    }
    found
}

fn editenv(file: &Path, args: &[&str]) -> String {
    let o = Command::new("grub-editenv")
        .arg(file)
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "grub-editenv {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn we_write_grub_editenv_reads() {
    if !tool("grub-editenv") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("grubenv");
    editenv(&f, &["create"]);
    editenv(&f, &["set", "saved_entry=debian", "weird=back\\slash"]);
    let mut boot = EnvBootloader {
        store: GrubStore::new(&f),
    };
    boot.arm(B, 2).unwrap();
    assert_eq!(std::fs::metadata(&f).unwrap().len(), 1024, "never resized");
    let list = editenv(&f, &["list"]);
    for line in [
        "TANDEM_ORDER=b a",
        "TANDEM_B_OK=1",
        "TANDEM_B_TRIES=2",
        "saved_entry=debian",
        "weird=back\\slash",
    ] {
        assert!(
            list.lines().any(|l| l == line),
            "{line:?} missing from:\n{list}"
        );
    }
    boot.set_primary(B).unwrap();
    let list = editenv(&f, &["list"]);
    assert!(list.lines().any(|l| l == "TANDEM_B_TRIES="), "{list}");
}

#[test]
fn grub_editenv_writes_we_read() {
    if !tool("grub-editenv") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("grubenv");
    editenv(&f, &["create"]);
    editenv(
        &f,
        &[
            "set",
            "TANDEM_ORDER=b a",
            "TANDEM_A_OK=0",
            "TANDEM_B_TRIES=1",
            "other=x y",
        ],
    );
    let mut store = GrubStore::new(&f);
    let vars = store.load().unwrap();
    assert_eq!(vars["other"], "x y");
    assert_eq!(abvars::primary(&vars), Some(B));
    assert_eq!(abvars::state(&vars, A), Mark::Bad);
    assert_eq!(abvars::tries_left(&vars, B), Some(1));
    // Simulate GRUB's boot: the try is consumed, then nothing is left.
    let mut v = vars.clone();
    assert_eq!(abvars::simulate_boot(&mut v), Some(B));
    store.save(&v).unwrap();
    editenv(&f, &["unset", "other"]);
    let v = store.load().unwrap();
    assert_eq!(abvars::tries_left(&v, B), Some(0));
    assert_eq!(abvars::primary(&v), None, "b used up and a is bad");
    assert!(!v.contains_key("other"));
}

#[test]
fn missing_env_is_an_error_not_created() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("grubenv");
    let mut boot = EnvBootloader {
        store: GrubStore::new(&f),
    };
    let e = boot.set_primary(A).unwrap_err().to_string();
    assert!(
        e.contains("grub-editenv") && e.contains("does not exist"),
        "{e}"
    );
    assert!(!f.exists());
    if !tool("grub-editenv") {
        return;
    }
    grub::create(&f).unwrap();
    assert_eq!(editenv(&f, &["list"]), "");
    assert_eq!(std::fs::read(&f).unwrap().len(), 1024);
    boot.set_primary(A).unwrap();
    assert!(editenv(&f, &["list"]).contains("TANDEM_ORDER=a b"));
}

#[test]
fn shipped_grub_cfg_passes_grub_script_check() {
    if !tool("grub-script-check") {
        return;
    }
    let cfg = concat!(env!("CARGO_MANIFEST_DIR"), "/dist/grub/grub.cfg");
    let o = Command::new("grub-script-check").arg(cfg).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The script's if-chain must count as many tries as the backend allows.
    let text = std::fs::read_to_string(cfg).unwrap();
    for n in 1..=grub::MAX_TRIES {
        for g in ["A", "B"] {
            assert!(
                text.contains(&format!("[ \"$TANDEM_{g}_TRIES\" = \"{n}\" ]")),
                "{g} {n}"
            );
        }
    }
}

#[test]
fn arming_beyond_the_script_limit_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("grubenv");
    grub::create(&f).unwrap();
    let before = std::fs::read(&f).unwrap();
    let mut boot = EnvBootloader {
        store: GrubStore::new(&f),
    };
    let e = boot.arm(B, 4).unwrap_err().to_string();
    assert!(e.contains("at most 3"), "{e}");
    assert_eq!(std::fs::read(&f).unwrap(), before, "nothing written");
}

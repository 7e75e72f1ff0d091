//! The man pages and shell completions checked in under agent/dist/ are
//! what `scripts/gen-man.sh` makes from the clap definitions and
//! docs/config.md now; the pages render with groff without a warning, the
//! completions parse, and every page a SEE ALSO names exists.
//!
//! groff is required when TANDEM_TEST_REQUIRE_TOOLS=1 (CI) and skipped
//! otherwise.

mod common;
#[path = "../examples/gen-docs/gen.rs"]
mod gen;

use common::tools::have;
use std::path::{Path, PathBuf};
use std::process::Command;

const REGENERATE: &str = "scripts/gen-man.sh";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    for dir in [gen::MAN_DIR, gen::COMPLETIONS_DIR] {
        if let Ok(rd) = std::fs::read_dir(root.join(dir)) {
            for e in rd {
                out.push(Path::new(dir).join(e.unwrap().file_name()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn checked_in_man_pages_and_completions_are_current() {
    let tmp = tempfile::tempdir().unwrap();
    let files = gen::generate(&repo()).unwrap();
    gen::write(tmp.path(), &files).unwrap();
    let fresh = files_under(tmp.path());
    let checked_in = files_under(&repo());
    let mut stale = vec![];
    for f in fresh.iter().chain(&checked_in) {
        let a = std::fs::read(tmp.path().join(f)).ok();
        let b = std::fs::read(repo().join(f)).ok();
        if a != b && !stale.contains(f) {
            stale.push(f.clone());
        }
    }
    assert!(
        stale.is_empty(),
        "not current (missing, changed or no longer generated): {stale:?}; run {REGENERATE} and commit the result"
    );
    assert!(fresh.contains(&PathBuf::from("agent/dist/man/tandem.8")));
    assert!(fresh.contains(&PathBuf::from("agent/dist/man/tandem-install.8")));
    assert!(fresh.contains(&PathBuf::from("agent/dist/man/tandem-bundle-create.8")));
    assert!(fresh.contains(&PathBuf::from("agent/dist/man/tandem.toml.5")));
}

fn man_pages() -> Vec<PathBuf> {
    files_under(&repo())
        .into_iter()
        .filter(|f| f.starts_with(gen::MAN_DIR))
        .map(|f| repo().join(f))
        .collect()
}

#[test]
fn man_pages_render_without_warnings() {
    if !have("groff") {
        return common::tools::skip(
            "man_pages_render_without_warnings",
            "groff (apt install groff-base)",
        );
    }
    for page in man_pages() {
        let o = Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-z"])
            .arg(&page)
            .output()
            .unwrap();
        assert!(
            o.status.success() && o.stderr.is_empty(),
            "{}: {}",
            page.display(),
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

#[test]
fn see_also_names_pages_that_exist() {
    for page in man_pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        let see = text
            .split(".SH \"SEE ALSO\"\n")
            .nth(1)
            .expect("a SEE ALSO section");
        for r in see.lines().next().unwrap().split(", ") {
            let (name, sect) = r
                .strip_prefix("\\fB")
                .and_then(|r| r.split_once("\\fR("))
                .unwrap_or_else(|| panic!("{}: bad reference {r:?}", page.display()));
            let file = format!(
                "{}.{}",
                name.replace("\\-", "-"),
                sect.trim_end_matches(')')
            );
            assert!(
                repo().join(gen::MAN_DIR).join(&file).exists(),
                "{}: SEE ALSO names {file}, which is not generated",
                page.display()
            );
        }
    }
}

#[test]
fn completions_parse() {
    let dir = repo().join(gen::COMPLETIONS_DIR);
    for (shell, args, file) in [
        ("bash", &["-n"][..], "tandem.bash"),
        ("zsh", &["-n"][..], "_tandem"),
        ("fish", &["--no-execute"][..], "tandem.fish"),
    ] {
        if !have(shell) {
            eprintln!("SKIP {file}: no {shell}");
            continue;
        }
        let o = Command::new(shell)
            .args(args)
            .arg(dir.join(file))
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

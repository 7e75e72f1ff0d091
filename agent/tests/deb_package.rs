//! scripts/build-deb.sh packages this test build's `tandem` binary: the
//! .deb holds what docs/packaging.md lists, its conffile, maintainer
//! scripts that parse and never start a service, and lintian reports no
//! error (lintian and dpkg-deb are required when TANDEM_TEST_REQUIRE_TOOLS=1,
//! skipped otherwise).

mod common;

use std::path::Path;
use std::process::Command;

fn run(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap();
    assert!(
        o.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn the_package_builds_holds_everything_and_is_lintian_clean() {
    let missing: Vec<&str> = ["dpkg-deb", "dpkg-architecture", "objdump", "lintian"]
        .into_iter()
        .filter(|t| !common::tools::have(t))
        .collect();
    if !missing.is_empty() {
        return common::tools::skip(
            "deb package",
            &format!("{missing:?} (apt install dpkg-dev binutils lintian)"),
        );
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = tempfile::tempdir().unwrap();
    let stdout = run(Command::new(repo.join("scripts/build-deb.sh"))
        .arg("--binary")
        .arg(env!("CARGO_BIN_EXE_tandem"))
        .arg("--out")
        .arg(out.path())
        .arg("--lintian"));
    let deb = stdout.lines().last().expect("the .deb's path");
    assert!(
        deb.ends_with(".deb") && Path::new(deb).starts_with(out.path()),
        "{stdout}"
    );

    let files = run(Command::new("dpkg-deb").arg("--contents").arg(deb));
    for want in [
        "./usr/bin/tandem",
        "./lib/systemd/system/tandem.service",
        "./lib/systemd/system/tandem-boot-check.service",
        "./usr/share/dbus-1/system.d/dev.tandem.Agent1.conf",
        "./usr/share/dbus-1/system-services/dev.tandem.Agent1.service",
        "./usr/share/polkit-1/actions/dev.tandem.policy",
        "./usr/share/polkit-1/rules.d/50-tandem.rules",
        "./etc/tandem/tandem.toml",
        "./usr/share/man/man8/tandem.8.gz",
        "./usr/share/man/man8/tandem-install.8.gz",
        "./usr/share/man/man5/tandem.toml.5.gz",
        "./usr/share/bash-completion/completions/tandem",
        "./usr/share/zsh/vendor-completions/_tandem",
        "./usr/share/fish/vendor_completions.d/tandem.fish",
        "./usr/share/doc/tandem/copyright",
        // The units' Documentation= links.
        "./usr/share/doc/tandem/boot.md",
        "./usr/share/doc/tandem/dbus.md",
    ] {
        assert!(
            files.lines().any(|l| l.ends_with(want)),
            "{want} missing:\n{files}"
        );
    }
    assert!(
        files.lines().all(|l| l.starts_with("-rw-r--r-- root/root")
            || l.starts_with("drwxr-xr-x root/root")
            || (l.starts_with("-rwxr-xr-x root/root") && l.ends_with("./usr/bin/tandem"))),
        "modes and owners:\n{files}"
    );

    let ctl = out.path().join("control");
    run(Command::new("dpkg-deb").arg("--control").arg(deb).arg(&ctl));
    let read = |f: &str| std::fs::read_to_string(ctl.join(f)).unwrap();
    assert_eq!(read("conffiles"), "/etc/tandem/tandem.toml\n");
    let control = read("control");
    assert!(control.contains("\nDepends: libc6 (>= 2."), "{control}");
    for script in ["postinst", "prerm", "postrm"] {
        run(Command::new("sh").arg("-n").arg(ctl.join(script)));
        let text = read(script);
        // Nothing starts or restarts a service: not on an image build, not
        // on an upgrade in the middle of a job.
        for verb in ["start", "restart", "try-restart", "reload-or-restart"] {
            assert!(
                !text.contains(&format!("systemctl {verb}"))
                    && !text.contains(&format!("deb-systemd-invoke {verb}")),
                "{script} runs {verb}:\n{text}"
            );
        }
    }
    assert!(read("postinst").contains("daemon-reload"));

    // The packaged binary runs and reports the package's version.
    let x = out.path().join("x");
    run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&x));
    let v = run(Command::new(x.join("usr/bin/tandem")).arg("--version"));
    let version = control
        .lines()
        .find_map(|l| l.strip_prefix("Version: "))
        .unwrap();
    assert!(
        version.starts_with(v.trim().trim_start_matches("tandem ")),
        "{v} vs {version}"
    );
}

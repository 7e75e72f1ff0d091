//! systemd-boot backend against Debian's own `bootctl` (systemd 252): after
//! every operation, and in every state a power cut can leave, bootctl must
//! list Tandem's entries in our order and pick our primary as its default.
//! bootctl only accepts an ESP at the root of a mount, so each call runs
//! in a private mount namespace (`unshare -rm`) with the temporary ESP
//! bind-mounted onto itself and `SYSTEMD_RELAX_ESP_CHECKS=1`.
//!
//! Missing tools fail the test when TANDEM_TEST_REQUIRE_TOOLS=1 (CI), and
//! skip the bootctl comparisons otherwise. Golden files: UPDATE_GOLDEN=1.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use tandem::boot::sdboot::entry::{after_boot, EntryName, Layout};
use tandem::boot::sdboot::plan::{self, cut_states, Action, Listing, Model};
use tandem::boot::sdboot::{SdBoot, LOADER_GUID};
use tandem::boot::{Bootloader, Mark};
use tandem::slot::SlotGroup::{self, A, B};

const MACHINE_ID: &str = "4a3b6e3f0c2d4b6f9e8d7c6b5a493827";

/// Whether bootctl can be run on a directory here (checked once; the
/// reason to skip is printed once).
fn bootctl_ok() -> bool {
    static OK: OnceLock<Result<(), String>> = OnceLock::new();
    let r = OK.get_or_init(|| {
        let found = Command::new("sh")
            .args(["-c", "command -v bootctl"])
            .output()
            .is_ok_and(|o| o.status.success());
        let r = if found {
            let d = tempfile::tempdir().unwrap();
            std::fs::create_dir_all(d.path().join("loader/entries")).unwrap();
            run_bootctl(d.path()).map(|_| ())
        } else {
            Err("bootctl not installed (apt-get install systemd-boot)".into())
        };
        if let Err(e) = &r {
            eprintln!("SKIPPED bootctl comparisons: {e}");
        }
        r
    });
    if let Err(e) = r {
        assert!(
            std::env::var("TANDEM_TEST_REQUIRE_TOOLS").as_deref() != Ok("1"),
            "bootctl is required (TANDEM_TEST_REQUIRE_TOOLS=1): {e}"
        );
    }
    r.is_ok()
}

fn run_bootctl(esp: &Path) -> Result<String, String> {
    let script =
        r#"mount --bind "$1" "$1" && exec bootctl --esp-path="$1" --no-variables --no-pager list"#;
    let o = Command::new("unshare")
        .args(["-rm", "--propagation", "private", "sh", "-c", script, "sh"])
        .arg(esp)
        .env("SYSTEMD_RELAX_ESP_CHECKS", "1")
        .output()
        .map_err(|e| format!("cannot run unshare: {e}"))?;
    if !o.status.success() {
        return Err(format!(
            "unshare/bootctl failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ));
    }
    String::from_utf8(o.stdout).map_err(|e| e.to_string())
}

/// One entry of `bootctl list`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Listed {
    file: String,
    default: bool,
    /// (left, done) from "tries: L left; D done" ("L left" when the name
    /// has no "-D": done is 0 for systemd-boot then).
    tries: Option<(u32, u32)>,
}

fn parse_bootctl(out: &str) -> Vec<Listed> {
    let mut v = Vec::new();
    for block in out.split("\n\n") {
        let field = |k: &str| {
            block.lines().find_map(|l| {
                let (key, val) = l.split_once(':')?;
                (key.trim() == k).then(|| val.trim().to_string())
            })
        };
        let Some(source) = field("source") else {
            continue;
        };
        let tries = field("tries").map(|t| {
            let n: Vec<u32> = t
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|s| s.parse().ok())
                .collect();
            (n[0], n.get(1).copied().unwrap_or(0))
        });
        v.push(Listed {
            file: source.rsplit('/').next().unwrap().to_string(),
            default: field("title").is_some_and(|t| t.contains("(default)")),
            tries,
        });
    }
    v
}

/// A temporary ESP laid out like `bootctl install` leaves it, with both
/// slots' kernels, and an empty efivars directory.
struct Esp {
    dir: tempfile::TempDir,
    efivars: tempfile::TempDir,
}

impl Esp {
    fn new() -> Esp {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::create_dir_all(p.join("loader/entries")).unwrap();
        std::fs::write(
            p.join("loader/loader.conf"),
            format!("#timeout 3\n#console-mode keep\ndefault {MACHINE_ID}-*\n"),
        )
        .unwrap();
        for g in ["a", "b"] {
            std::fs::create_dir_all(p.join("tandem").join(g)).unwrap();
            std::fs::write(p.join("tandem").join(g).join("vmlinuz"), "kernel").unwrap();
            std::fs::write(p.join("tandem").join(g).join("initrd.img"), "initrd").unwrap();
        }
        Esp {
            dir,
            efivars: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn entries(&self) -> PathBuf {
        self.path().join("loader/entries")
    }

    fn boot(&self) -> SdBoot {
        let layout = Layout {
            options: "ro quiet".into(),
            ..Layout::default()
        };
        SdBoot::new(self.path(), self.efivars.path(), layout).unwrap()
    }

    fn files(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.entries())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    fn set_efivar(&self, name: &str, value: &str) {
        let mut b = vec![6, 0, 0, 0];
        for u in value.encode_utf16().chain([0]) {
            b.extend(u.to_le_bytes());
        }
        std::fs::write(self.efivars.path().join(format!("{name}-{LOADER_GUID}")), b).unwrap();
    }

    fn clear_efivars(&self) {
        for e in std::fs::read_dir(self.efivars.path()).unwrap() {
            std::fs::remove_file(e.unwrap().path()).unwrap();
        }
    }

    /// Replaces the entries with a listing's files.
    fn materialize(&self, l: &Listing) {
        std::fs::remove_dir_all(self.entries()).unwrap();
        std::fs::create_dir_all(self.entries()).unwrap();
        for f in &l.files {
            std::fs::write(self.entries().join(&f.name), &f.content).unwrap();
        }
    }

    /// What systemd-boot does at power-on: boot the default entry; if it is
    /// counted, rename it `+L-D` -> `+(L-1)-(D+1)` and set
    /// LoaderBootCountPath (a fresh boot clears the volatile variables).
    /// The default comes from bootctl when it is here, else from our model.
    fn power_on(&self) -> String {
        self.clear_efivars();
        let file = if bootctl_ok() {
            let listed = parse_bootctl(&run_bootctl(self.path()).unwrap());
            listed.into_iter().find(|e| e.default).unwrap().file
        } else {
            let l = self.boot().load().unwrap();
            Model::new(&l).default_entry().unwrap().file.clone()
        };
        if let Some(next) = after_boot(&file) {
            std::fs::rename(self.entries().join(&file), self.entries().join(&next)).unwrap();
            self.set_efivar("LoaderBootCountPath", &format!("\\loader\\entries\\{next}"));
        }
        file
    }
}

/// bootctl lists the same entries in the same order as our model, with the
/// same default and counters; returns bootctl's list (empty if skipped).
fn assert_agrees(esp: &Esp, at: &str) -> Vec<Listed> {
    let l = esp.boot().load().unwrap();
    let m = Model::new(&l);
    if !bootctl_ok() {
        return vec![];
    }
    let listed = parse_bootctl(&run_bootctl(esp.path()).unwrap());
    let ours: Vec<&str> = m.order.iter().map(|c| c.file.as_str()).collect();
    let theirs: Vec<&str> = listed.iter().map(|e| e.file.as_str()).collect();
    // bootctl strips the counter from the id, so two files of one slot tie
    // there (in any order): compare slots then, files otherwise.
    let key = |f: &&str| EntryName::parse(f).map_or(f.to_string(), |n| n.slot.to_string());
    let keys = |v: &[&str]| v.iter().map(key).collect::<Vec<_>>();
    assert_eq!(
        keys(&ours),
        keys(&theirs),
        "{at}: order\nbootctl: {listed:#?}"
    );
    let mut slots = keys(&ours);
    slots.dedup();
    let dup = slots.len() != ours.len();
    if !dup {
        assert_eq!(ours, theirs, "{at}: order");
    }
    let def: Vec<&Listed> = listed.iter().filter(|e| e.default).collect();
    assert_eq!(
        def.len(),
        usize::from(!listed.is_empty()),
        "{at}: {listed:#?}"
    );
    if let Some(d) = def.first() {
        let ours = m.default_entry().unwrap();
        assert_eq!(
            key(&d.file.as_str()),
            key(&ours.file.as_str()),
            "{at}: default"
        );
        if !dup {
            assert_eq!(d.file, ours.file, "{at}: default");
        }
        match EntryName::parse(&d.file) {
            Some(n) => assert_eq!(esp.boot().primary().unwrap(), Some(n.slot), "{at}"),
            None => assert!(esp.boot().primary().is_err(), "{at}: foreign default"),
        }
    }
    for e in &listed {
        let c = m.order.iter().find(|c| c.file == e.file).unwrap();
        assert_eq!(
            e.tries,
            c.tries.map(|t| (t.left, t.done)),
            "{at}: {}",
            e.file
        );
    }
    listed
}

fn status(b: &mut SdBoot) -> (Option<SlotGroup>, Mark, Option<u32>, Mark, Option<u32>) {
    (
        b.primary().unwrap(),
        b.state(A).unwrap(),
        b.tries_left(A).unwrap(),
        b.state(B).unwrap(),
        b.tries_left(B).unwrap(),
    )
}

#[test]
fn sequence_arm_fallback_commit_bad_rollback() {
    use Mark::{Bad, Good};
    let esp = Esp::new();
    let mut b = esp.boot();
    assert_eq!(b.primary().unwrap(), None);
    assert_eq!(b.state(A).unwrap(), Bad, "no entry: not bootable");

    // Factory: a committed.
    b.set_primary(A).unwrap();
    assert_eq!(esp.files(), ["tandem-a.conf"]);
    assert_agrees(&esp, "factory");
    assert_eq!(esp.power_on(), "tandem-a.conf");

    // Trial of b with 2 tries; systemd-boot consumes them; a takes over.
    b.set_label(B, "2.0.0");
    b.arm(B, 2).unwrap();
    assert_eq!(esp.files(), ["tandem-a.conf", "tandem-b+2.conf"]);
    assert_eq!(status(&mut b), (Some(B), Good, None, Good, Some(2)));
    let listed = assert_agrees(&esp, "armed");
    if !listed.is_empty() {
        assert_eq!(
            listed[0],
            Listed {
                file: "tandem-b+2.conf".into(),
                default: true,
                tries: Some((2, 0))
            }
        );
    }
    assert_eq!(esp.power_on(), "tandem-b+2.conf");
    assert_eq!(esp.files(), ["tandem-a.conf", "tandem-b+1-1.conf"]);
    assert_eq!(status(&mut b), (Some(B), Good, None, Good, Some(1)));
    assert_agrees(&esp, "1 try used");
    assert_eq!(esp.power_on(), "tandem-b+1-1.conf");
    assert_eq!(esp.files(), ["tandem-a.conf", "tandem-b+0-2.conf"]);
    assert_eq!(status(&mut b), (Some(A), Good, None, Bad, Some(0)));
    assert_agrees(&esp, "tries used up");
    assert_eq!(esp.power_on(), "tandem-a.conf");

    // Again, and commit during the trial (LoaderBootCountPath is set).
    b.arm(B, 2).unwrap();
    assert_eq!(esp.files(), ["tandem-a.conf", "tandem-b+2.conf"]);
    assert_eq!(esp.power_on(), "tandem-b+2.conf");
    assert_agrees(&esp, "re-armed, booted once");
    b.set_primary(B).unwrap();
    assert_eq!(esp.files(), ["tandem-a.conf", "tandem-b.conf"]);
    assert_eq!(status(&mut b), (Some(B), Good, None, Good, None));
    assert_agrees(&esp, "committed");
    for _ in 0..3 {
        assert_eq!(esp.power_on(), "tandem-b.conf", "committed: no counting");
    }
    let content = std::fs::read_to_string(esp.entries().join("tandem-b.conf")).unwrap();
    check_golden("sdboot-entry-b.conf", &content);

    // Rollback to a (known good), then back with another commit.
    b.set_primary(A).unwrap();
    assert_eq!(status(&mut b), (Some(A), Good, None, Good, None));
    assert_agrees(&esp, "rolled back");
    assert_eq!(esp.power_on(), "tandem-a.conf");
    b.set_primary(B).unwrap();
    assert_agrees(&esp, "forward again");

    // Mark the committed b bad: a boots; b stays listed, last.
    b.set_state(B, Bad).unwrap();
    assert_eq!(esp.files(), ["tandem-a.conf", "tandem-b+0-0.conf"]);
    assert_eq!(status(&mut b), (Some(A), Good, None, Bad, Some(0)));
    let listed = assert_agrees(&esp, "b marked bad");
    if !listed.is_empty() {
        assert_eq!(listed[1].file, "tandem-b+0-0.conf");
        assert_eq!(listed[1].tries, Some((0, 0)));
    }
    assert_eq!(esp.power_on(), "tandem-a.conf");
    // Good again: blessed, at its old place behind a.
    b.set_state(B, Good).unwrap();
    assert_eq!(status(&mut b), (Some(A), Good, None, Good, None));
    assert_agrees(&esp, "b good again");
}

#[test]
fn writes_are_checked_before_anything_is_written() {
    let esp = Esp::new();
    let mut b = esp.boot();
    b.set_primary(A).unwrap();
    std::fs::remove_file(esp.path().join("tandem/b/initrd.img")).unwrap();
    let e = b.arm(B, 1).unwrap_err().to_string();
    assert!(
        e.contains("tandem/b/vmlinuz") && e.contains("missing"),
        "{e}"
    );
    assert_eq!(esp.files(), ["tandem-a.conf"]);
    std::fs::write(esp.path().join("tandem/b/initrd.img"), "i").unwrap();

    // A pinned default would defeat the trial: refused, with the fix.
    esp.set_efivar("LoaderEntryDefault", "tandem-a.conf");
    let e = b.arm(B, 1).unwrap_err().to_string();
    assert!(e.contains("bootctl set-default ''"), "{e}");
    assert_eq!(esp.files(), ["tandem-a.conf"]);
    esp.clear_efivars();

    // A foreign entry that sorts first (Debian's kernel-install).
    std::fs::create_dir_all(esp.path().join(MACHINE_ID)).unwrap();
    std::fs::write(esp.path().join(MACHINE_ID).join("linux"), "k").unwrap();
    let foreign = format!("{MACHINE_ID}-6.1.0-18-amd64.conf");
    std::fs::write(
        esp.entries().join(&foreign),
        format!("title Debian GNU/Linux 12\nversion 6.1.0-18-amd64\nmachine-id {MACHINE_ID}\nsort-key debian\noptions root=/dev/sda2\nlinux /{MACHINE_ID}/linux\n"),
    )
    .unwrap();
    // bootctl install's `default <machine-id>-*` picks exactly such entries.
    let e = b.primary().unwrap_err().to_string();
    assert!(
        e.contains(&foreign) && e.contains("loader/loader.conf"),
        "{e}"
    );
    assert!(b.arm(B, 1).is_err());
    assert_agrees(&esp, "foreign entry, pinned by loader.conf");
    // Without that line it still sorts first: "debian" < "tandem".
    std::fs::write(esp.path().join("loader/loader.conf"), "timeout 0\n").unwrap();
    let e = b.primary().unwrap_err().to_string();
    assert!(e.contains(&foreign) && e.contains("sort-key"), "{e}");
    assert!(b.arm(B, 1).is_err());
    assert_eq!(esp.files(), [foreign.as_str(), "tandem-a.conf"]);
    if bootctl_ok() {
        let listed = parse_bootctl(&run_bootctl(esp.path()).unwrap());
        assert_eq!(listed[0].file, foreign, "bootctl agrees it is first");
        assert!(listed[0].default);
    }
}

#[test]
fn stale_temp_file_is_invisible_and_replaced() {
    let esp = Esp::new();
    let mut b = esp.boot();
    b.set_primary(A).unwrap();
    std::fs::write(esp.entries().join(".tandem-b.tmp"), "title half-writ").unwrap();
    assert_eq!(b.primary().unwrap(), Some(A));
    assert_agrees(&esp, "stale temp");
    b.arm(B, 3).unwrap();
    assert_eq!(esp.files(), ["tandem-a.conf", "tandem-b+3.conf"]);
}

/// A titled starting state (entry file, version) and an operation.
type Scenario = (&'static str, Vec<(&'static str, u64)>, &'static str);

/// The starting states and operations whose write sequences docs/boot.md
/// shows.
fn scenarios() -> Vec<Scenario> {
    vec![
        (
            "arm b for 2 tries (an earlier trial of b failed)",
            vec![("tandem-a.conf", 4), ("tandem-b+0-3.conf", 3)],
            "arm b 2",
        ),
        (
            "commit b (set_primary b) during its trial, 1 try used",
            vec![("tandem-a.conf", 4), ("tandem-b+1-1.conf", 5)],
            "set_primary b",
        ),
        (
            "mark b bad during its trial",
            vec![("tandem-a.conf", 4), ("tandem-b+1-1.conf", 5)],
            "bad b",
        ),
        (
            "mark b bad after its commit",
            vec![("tandem-a.conf", 4), ("tandem-b.conf", 6)],
            "bad b",
        ),
        (
            "rollback to a (set_primary a)",
            vec![("tandem-a.conf", 4), ("tandem-b.conf", 6)],
            "set_primary a",
        ),
        (
            "mark b good after mark-bad",
            vec![("tandem-a.conf", 4), ("tandem-b+0-0.conf", 0)],
            "good b",
        ),
    ]
}

fn listing_of(files: &[(&str, u64)]) -> Listing {
    let esp = Esp::new();
    let layout = Layout {
        options: "ro quiet".into(),
        ..Layout::default()
    };
    for (name, v) in files {
        let g = if name.starts_with("tandem-a") { A } else { B };
        std::fs::write(esp.entries().join(name), layout.compose(g, *v, None)).unwrap();
    }
    esp.boot().load().unwrap()
}

fn plan_for(l: &Listing, op: &str) -> Vec<Action> {
    let layout = Layout {
        options: "ro quiet".into(),
        ..Layout::default()
    };
    let w: Vec<&str> = op.split(' ').collect();
    let g = if w[1] == "a" { A } else { B };
    match w[0] {
        "arm" => plan::arm(l, &layout, g, w[2].parse().unwrap(), 99, None),
        "set_primary" => plan::set_primary(l, &layout, g, None),
        "bad" => plan::set_state(l, g, Mark::Bad),
        "good" => plan::set_state(l, g, Mark::Good),
        _ => unreachable!(),
    }
    .unwrap()
}

fn describe(l: &Listing) -> String {
    let m = Model::new(l);
    let mut files: Vec<String> = l
        .files
        .iter()
        .map(|f| {
            let v = tandem::boot::sdboot::entry::Conf::parse(&f.content)
                .version
                .unwrap_or_default();
            format!("{}@{v}", f.name)
        })
        .collect();
    files.sort();
    let boots = m
        .default_entry()
        .map_or("nothing".into(), |c| c.file.clone());
    format!(
        "{} => boots {boots}; a {:?}, b {:?}",
        files.join(" "),
        m.state(A),
        m.state(B)
    )
}

/// Every cut state of every scenario: bootctl agrees with our model, and
/// the golden file records the sequences and outcomes for docs/boot.md.
#[test]
fn power_cut_states_agree_with_bootctl() {
    let mut doc = String::new();
    let esp = Esp::new();
    for (title, files, op) in scenarios() {
        let before = listing_of(&files);
        let plan = plan_for(&before, op);
        let after = plan::apply(&before, &plan);
        if !doc.is_empty() {
            writeln!(doc).unwrap();
        }
        writeln!(doc, "## {title}").unwrap();
        writeln!(doc, "before: {}", describe(&before)).unwrap();
        for (i, a) in plan.iter().enumerate() {
            writeln!(doc, "{}. {a}", i + 1).unwrap();
        }
        if plan.iter().any(|a| matches!(a, Action::Remove { .. })) {
            writeln!(doc, "{}. fsync dir", plan.len() + 1).unwrap();
        }
        writeln!(doc, "after:  {}", describe(&after)).unwrap();
        let (pb, pa) = (
            Model::new(&before).primary().unwrap(),
            Model::new(&after).primary().unwrap(),
        );
        for (at, cut) in cut_states(&before, &plan) {
            let p = Model::new(&cut).primary().unwrap();
            assert!(p == pb || p == pa, "{title} {at}: {p:?}");
            assert!(Model::new(&cut).default_entry().is_some(), "{title} {at}");
            writeln!(doc, "  cut {at}: {}", describe(&cut)).unwrap();
            esp.materialize(&cut);
            assert_agrees(&esp, &format!("{title}, cut {at}"));
        }
    }
    check_golden("sdboot-sequences.txt", &doc);
}

fn check_golden(name: &str, actual: &str) {
    let path = format!("{}/tests/golden/{name}", env!("CARGO_MANIFEST_DIR"));
    if std::env::var("UPDATE_GOLDEN").is_ok() {
        std::fs::write(&path, actual).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        actual, want,
        "{path} differs; run with UPDATE_GOLDEN=1 if intended"
    );
}

//! Planner tests: table-driven operations, boot sequences, and every power
//! cut point of every plan (pure; the bootctl interop is in
//! tests/boot_sdboot.rs).

use proptest::prelude::*;

use super::entry::Layout;
use super::plan::{
    self, apply, cut_states, simulate_boot, Action, EspFile, Listing, Model, PlanError,
};
use super::*;
use crate::slot::SlotGroup::{self, A, B};

fn slot_of(name: &str) -> SlotGroup {
    entry::EntryName::parse(name).expect("a tandem name").slot
}

/// A listing of Tandem entries `(file name, version)`, kernels present.
fn listing(files: &[(&str, u64)]) -> Listing {
    Listing {
        files: files
            .iter()
            .map(|(n, v)| EspFile {
                name: n.to_string(),
                content: Layout::default().compose(slot_of(n), *v, None),
                loader_exists: true,
            })
            .collect(),
        kernels: SlotGroup::ALL.into_iter().collect(),
        ..Listing::default()
    }
}

/// Visible files as `name@version`, sorted by name.
fn show(l: &Listing) -> Vec<String> {
    let mut v: Vec<String> = l
        .files
        .iter()
        .map(|f| {
            let v = entry::Conf::parse(&f.content).version.unwrap_or_default();
            format!("{}@{v}", f.name)
        })
        .collect();
    v.sort();
    v
}

fn primary(l: &Listing) -> Option<SlotGroup> {
    Model::new(l).primary().unwrap()
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Arm(SlotGroup, u32),
    SetPrimary(SlotGroup),
    SetState(SlotGroup, Mark),
}

fn plan_op(l: &Listing, op: Op) -> Result<Vec<Action>, PlanError> {
    let layout = Layout::default();
    match op {
        Op::Arm(g, n) => plan::arm(l, &layout, g, n, MAX_TRIES, None),
        Op::SetPrimary(g) => plan::set_primary(l, &layout, g, None),
        Op::SetState(g, m) => plan::set_state(l, g, m),
    }
}

#[test]
fn operations_table() {
    use Mark::{Bad, Good};
    struct Case {
        before: &'static [(&'static str, u64)],
        op: Op,
        after: &'static [&'static str],
        primary: Option<SlotGroup>,
    }
    let cases = [
        // Arm b from a committed a: b's new entry is newest.
        Case {
            before: &[("tandem-a.conf", 1)],
            op: Op::Arm(B, 3),
            after: &["tandem-a.conf@1", "tandem-b+3.conf@2"],
            primary: Some(B),
        },
        // Re-arm replaces the old trial and the old blessed entry of b.
        Case {
            before: &[
                ("tandem-a.conf", 4),
                ("tandem-b+0-3.conf", 3),
                ("tandem-b.conf", 2),
            ],
            op: Op::Arm(B, 2),
            after: &["tandem-a.conf@4", "tandem-b+2.conf@5"],
            primary: Some(B),
        },
        // Same counter name exists: the equivalent "+n-0" avoids a rename onto it.
        Case {
            before: &[("tandem-a.conf", 4), ("tandem-b+2.conf", 3)],
            op: Op::Arm(B, 2),
            after: &["tandem-a.conf@4", "tandem-b+2-0.conf@5"],
            primary: Some(B),
        },
        // Commit during the trial.
        Case {
            before: &[("tandem-a.conf", 1), ("tandem-b+1-1.conf", 2)],
            op: Op::SetPrimary(B),
            after: &["tandem-a.conf@1", "tandem-b.conf@3"],
            primary: Some(B),
        },
        // Commit on the last try (systemd-boot already renamed it +0).
        Case {
            before: &[("tandem-a.conf", 1), ("tandem-b+0-2.conf", 2)],
            op: Op::SetPrimary(B),
            after: &["tandem-a.conf@1", "tandem-b.conf@3"],
            primary: Some(B),
        },
        // Rollback: a older but blessed becomes newest.
        Case {
            before: &[("tandem-a.conf", 1), ("tandem-b.conf", 3)],
            op: Op::SetPrimary(A),
            after: &["tandem-a.conf@4", "tandem-b.conf@3"],
            primary: Some(A),
        },
        // Already primary and blessed: nothing to do.
        Case {
            before: &[("tandem-a.conf", 1), ("tandem-b.conf", 3)],
            op: Op::SetPrimary(B),
            after: &["tandem-a.conf@1", "tandem-b.conf@3"],
            primary: Some(B),
        },
        // No entry yet (factory): composed.
        Case {
            before: &[],
            op: Op::SetPrimary(A),
            after: &["tandem-a.conf@1"],
            primary: Some(A),
        },
        // Mark the running trial bad: exhausted, version 1, a boots.
        Case {
            before: &[("tandem-a.conf", 1), ("tandem-b+1-1.conf", 2)],
            op: Op::SetState(B, Bad),
            after: &["tandem-a.conf@1", "tandem-b+0-1.conf@1"],
            primary: Some(A),
        },
        // Mark a committed primary bad.
        Case {
            before: &[("tandem-a.conf", 2), ("tandem-b.conf", 3)],
            op: Op::SetState(B, Bad),
            after: &["tandem-a.conf@2", "tandem-b+0-0.conf@1"],
            primary: Some(A),
        },
        // Both bad: one invalidated by an install (version 0) sorts after
        // one marked bad (version 1), so the last resort boots the whole one.
        Case {
            before: &[("tandem-a+0-3.conf", 0), ("tandem-b.conf", 2)],
            op: Op::SetState(B, Bad),
            after: &["tandem-a+0-3.conf@0", "tandem-b+0-0.conf@1"],
            primary: Some(B),
        },
        Case {
            before: &[("tandem-a.conf", 1), ("tandem-b+0-1.conf", 0)],
            op: Op::SetState(B, Bad),
            after: &["tandem-a.conf@1", "tandem-b+0-1.conf@0"],
            primary: Some(A),
        },
        // Good on a marked-bad entry: blessed at its old (lowest) place.
        Case {
            before: &[("tandem-a.conf", 1), ("tandem-b+0-1.conf", 0)],
            op: Op::SetState(B, Good),
            after: &["tandem-a.conf@1", "tandem-b.conf@0"],
            primary: Some(A),
        },
        Case {
            before: &[("tandem-a.conf", 1), ("tandem-b+2.conf", 2)],
            op: Op::SetState(B, Good),
            after: &["tandem-a.conf@1", "tandem-b+2.conf@2"],
            primary: Some(B),
        },
    ];
    for (i, c) in cases.iter().enumerate() {
        let before = listing(c.before);
        let plan = plan_op(&before, c.op).unwrap_or_else(|e| panic!("case {i}: {e}"));
        let after = apply(&before, &plan);
        assert_eq!(show(&after), c.after, "case {i} {:?}", c.op);
        assert_eq!(primary(&after), c.primary, "case {i}");
        // Idempotent: planning again on the result does nothing.
        if !matches!(c.op, Op::Arm(..)) {
            assert_eq!(plan_op(&after, c.op).unwrap(), [], "case {i} twice");
        }
    }
}

#[test]
fn refusals() {
    let l = listing(&[("tandem-a.conf", 1), ("tandem-b+0-3.conf", 7)]);
    assert_eq!(plan_op(&l, Op::Arm(B, 0)), Err(PlanError::ZeroTries));
    assert_eq!(
        plan_op(&l, Op::Arm(B, 100)),
        Err(PlanError::TooManyTries {
            tries: 100,
            max: 99
        })
    );
    // A failed trial (newest) made good would be primary again, uncounted.
    assert_eq!(
        plan_op(&l, Op::SetState(B, Mark::Good)),
        Err(PlanError::GoodWouldBePrimary(B))
    );
    assert_eq!(
        plan_op(
            &listing(&[("tandem-a.conf", 1)]),
            Op::SetState(B, Mark::Good)
        ),
        Err(PlanError::NoEntry(B))
    );
    let mut nok = l.clone();
    nok.kernels.remove(&B);
    assert_eq!(
        plan_op(&nok, Op::Arm(B, 1)),
        Err(PlanError::KernelMissing(B))
    );
}

#[test]
fn foreign_and_pinned_entries() {
    let mut l = listing(&[("tandem-a.conf", 1)]);
    l.files.push(EspFile {
        name: "4a3b-6.1.0-18-amd64.conf".into(),
        content: "title Debian\nsort-key debian\nversion 6.1.0-18-amd64\nlinux /4a3b/vmlinuz\n"
            .into(),
        loader_exists: true,
    });
    let e = Model::new(&l).primary().unwrap_err();
    assert!(e.to_string().contains("4a3b-6.1.0-18-amd64.conf"), "{e}");
    assert!(e.to_string().contains("sort-key"), "{e}");
    assert!(matches!(
        plan_op(&l, Op::Arm(B, 1)),
        Err(PlanError::Pinned { slot: B, .. })
    ));
    // Its kernel missing: systemd-boot drops it, so it does not matter.
    l.files[1].loader_exists = false;
    assert_eq!(primary(&l), Some(A));

    let mut l = listing(&[("tandem-a.conf", 1)]);
    l.selectors.config_default = Some("4a3b-*".into());
    plan_op(&l, Op::Arm(B, 1)).expect("bootctl install's default matches nothing of ours");
    l.selectors.efi_default = Some("tandem-a.conf".into());
    let e = plan_op(&l, Op::Arm(B, 1)).unwrap_err();
    assert!(e.to_string().contains("bootctl set-default ''"), "{e}");
}

#[test]
fn trial_runs_out_then_falls_back() {
    let mut l = listing(&[("tandem-a.conf", 1)]);
    let p = plan_op(&l, Op::Arm(B, 2)).unwrap();
    l = apply(&l, &p);
    let m = Model::new(&l);
    assert_eq!((m.state(B), m.tries_left(B)), (Mark::Good, Some(2)));
    assert_eq!(simulate_boot(&mut l).as_deref(), Some("tandem-b+2.conf"));
    assert_eq!(l.boot_count_file.as_deref(), Some("tandem-b+1-1.conf"));
    assert_eq!(simulate_boot(&mut l).as_deref(), Some("tandem-b+1-1.conf"));
    assert_eq!(show(&l), ["tandem-a.conf@1", "tandem-b+0-2.conf@2"]);
    let m = Model::new(&l);
    assert_eq!((m.state(B), m.tries_left(B)), (Mark::Bad, Some(0)));
    assert_eq!(primary(&l), Some(A));
    assert_eq!(simulate_boot(&mut l).as_deref(), Some("tandem-a.conf"));
    assert_eq!(l.boot_count_file, None);
}

#[test]
fn torn_counting_rename_and_boot_count_path() {
    // systemd-boot's own rename cut: both names, same content.
    let mut l = listing(&[
        ("tandem-a.conf", 1),
        ("tandem-b+2.conf", 2),
        ("tandem-b+1-1.conf", 2),
    ]);
    let m = Model::new(&l);
    assert_eq!(m.effective(B).unwrap().file, "tandem-b+2.conf");
    // It boots +2 and cannot rename it onto +1-1: the trial does not count.
    assert_eq!(simulate_boot(&mut l).as_deref(), Some("tandem-b+2.conf"));
    assert_eq!(simulate_boot(&mut l).as_deref(), Some("tandem-b+2.conf"));
    // Any rewrite of b removes both.
    let p = plan_op(&l, Op::SetPrimary(B)).unwrap();
    assert_eq!(show(&apply(&l, &p)), ["tandem-a.conf@1", "tandem-b.conf@3"]);
    // LoaderBootCountPath names the file systemd-boot booted.
    l.boot_count_file = Some("tandem-b+1-1.conf".into());
    assert_eq!(
        Model::new(&l).effective(B).unwrap().file,
        "tandem-b+1-1.conf"
    );
    assert_eq!(Model::new(&l).tries_left(B), Some(1));
}

/// fsck.fat -a truncates the second of two names sharing clusters to 0
/// bytes: an empty entry is no entry, and the next change of g removes it.
#[test]
fn fsck_truncated_twin_is_ignored_then_removed() {
    for twin in ["tandem-b.conf", "tandem-b+2.conf"] {
        let mut l = listing(&[("tandem-a.conf", 1), ("tandem-b+1-1.conf", 2)]);
        l.files.push(EspFile {
            name: twin.into(),
            content: String::new(),
            loader_exists: false,
        });
        let m = Model::new(&l);
        assert_eq!(m.effective(B).unwrap().file, "tandem-b+1-1.conf");
        assert_eq!((m.primary().unwrap(), m.tries_left(B)), (Some(B), Some(1)));
        let p = plan_op(&l, Op::SetPrimary(B)).unwrap();
        assert_eq!(show(&apply(&l, &p)), ["tandem-a.conf@1", "tandem-b.conf@3"]);
    }
}

#[test]
fn efivar_and_loader_conf_decoding() {
    let mut b = vec![6, 0, 0, 0];
    for u in "\\loader\\entries\\tandem-b+0-1.conf\0".encode_utf16() {
        b.extend(u.to_le_bytes());
    }
    let v = decode_efivar_string(&b).unwrap();
    assert_eq!(v, "\\loader\\entries\\tandem-b+0-1.conf");
    assert_eq!(boot_count_file(&v).as_deref(), Some("tandem-b+0-1.conf"));
    assert_eq!(boot_count_file("\\EFI\\Linux\\x+1.efi"), None);
    assert_eq!(decode_efivar_string(&[1, 2]), None);
    assert_eq!(
        loader_conf_default("#timeout 3\ndefault a-*\n default \"b*\"\n").as_deref(),
        Some("b*")
    );
    assert_eq!(loader_conf_default("#default x\n"), None);
}

/// A slot's starting files: none, or one to three entries with random
/// counters and versions.
fn any_slot(g: SlotGroup) -> impl Strategy<Value = Vec<(String, u64)>> {
    let name = move |c: Option<(u32, Option<u32>)>| match c {
        None => entry::EntryName::blessed(g).to_string(),
        Some((l, d)) => entry::EntryName::counted(g, l, d).to_string(),
    };
    proptest::collection::vec(
        (
            proptest::option::of((0u32..4, proptest::option::of(0u32..4))),
            0u64..6,
        ),
        0..3,
    )
    .prop_map(move |v| {
        let mut seen = std::collections::BTreeSet::new();
        v.into_iter()
            .map(|(c, gen)| (name(c), gen))
            .filter(|(n, _)| seen.insert(n.clone()))
            .collect()
    })
}

fn any_op() -> impl Strategy<Value = Op> {
    let g = prop_oneof![Just(A), Just(B)];
    prop_oneof![
        (g.clone(), 1u32..4).prop_map(|(g, n)| Op::Arm(g, n)),
        g.clone().prop_map(Op::SetPrimary),
        (g, prop_oneof![Just(Mark::Good), Just(Mark::Bad)]).prop_map(|(g, m)| Op::SetState(g, m)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// At every cut point: systemd-boot still has an entry to boot if it
    /// had one, boots a slot that was primary before or after the
    /// operation, and each slot reads as it did before or after.
    #[test]
    fn power_cut_leaves_before_or_after(a in any_slot(A), b in any_slot(B), op in any_op()) {
        let files: Vec<(&str, u64)> = a.iter().chain(&b).map(|(n, v)| (n.as_str(), *v)).collect();
        let before = listing(&files);
        let Ok(plan) = plan_op(&before, op) else { return Ok(()) };
        let after = apply(&before, &plan);
        let (mb, ma) = (Model::new(&before), Model::new(&after));
        for (at, cut) in cut_states(&before, &plan) {
            let m = Model::new(&cut);
            let p = m.primary().unwrap();
            prop_assert!(p == mb.primary().unwrap() || p == ma.primary().unwrap(),
                "{:?} {}: primary {:?}; before {:?}, after {:?}\n{:?}", op, at, p, show(&before), show(&after), show(&cut));
            if mb.default_entry().is_some() {
                prop_assert!(m.default_entry().is_some(), "{:?} {}: nothing to boot", op, at);
            }
            for g in SlotGroup::ALL {
                let s = m.state(g);
                prop_assert!(s == mb.state(g) || s == ma.state(g), "{:?} {}: slot {} {:?}", op, at, g, s);
            }
        }
    }

    /// Arming n tries from a committed slot boots the new slot n times,
    /// then the old one for good.
    #[test]
    fn armed_trial_runs_out(n in 1u32..5, boots in 1usize..10, first in prop_oneof![Just(A), Just(B)]) {
        let mut l = listing(&[(if first == A { "tandem-a.conf" } else { "tandem-b.conf" }, 1)]);
        let g = first.other();
        l = apply(&l, &plan_op(&l, Op::Arm(g, n)).unwrap());
        let seq: Vec<SlotGroup> = (0..boots).map(|_| slot_of(&simulate_boot(&mut l).unwrap())).collect();
        prop_assert_eq!(seq.iter().filter(|&&s| s == g).count(), (n as usize).min(boots));
        prop_assert!(seq.iter().skip(n as usize).all(|&s| s == first));
    }
}

/// With nothing marked bootable, systemd-boot boots the first exhausted
/// entry (its last resort). That must be the group whose content is whole:
/// marked bad (version 1) sorts before invalidated by an install that was
/// cut off (version 0), whichever group is which.
#[test]
fn last_resort_prefers_a_whole_group_over_a_half_written_one() {
    for (half_written, whole) in [(A, B), (B, A)] {
        // whole committed and running; an install into half_written cut off.
        let committed = format!("tandem-{whole}.conf");
        let mut l = listing(&[
            (committed.as_str(), 5),
            (&format!("tandem-{half_written}.conf"), 4),
        ]);
        l = apply(&l, &plan::invalidate(&l, half_written).unwrap());
        assert_eq!(primary(&l), Some(whole));
        // ...then the whole one marked bad by force: nothing is bootable.
        l = apply(&l, &plan::set_state(&l, whole, Mark::Bad).unwrap());
        assert_eq!(Model::new(&l).state(whole), Mark::Bad);
        assert_eq!(Model::new(&l).state(half_written), Mark::Bad);
        let booted = simulate_boot(&mut l).unwrap();
        assert_eq!(slot_of(&booted), whole, "{:?}", show(&l));
        // Invalidating an already exhausted entry moves it last as well.
        let mut l2 = listing(&[
            (&format!("tandem-{half_written}+0-2.conf"), 9),
            (&format!("tandem-{whole}+0-1.conf"), 1),
        ]);
        l2 = apply(&l2, &plan::invalidate(&l2, half_written).unwrap());
        assert_eq!(
            slot_of(&simulate_boot(&mut l2).unwrap()),
            whole,
            "{:?}",
            show(&l2)
        );
    }
}

/// Every cut point of an invalidation leaves either the state before or
/// after: never a group that boots uncounted, never one that vanished.
#[test]
fn invalidate_is_power_safe() {
    let l = listing(&[("tandem-a.conf", 3), ("tandem-b+0-1.conf", 7)]);
    let plan = plan::invalidate(&l, B).unwrap();
    for (at, cut) in cut_states(&l, &plan) {
        let m = Model::new(&cut);
        assert_eq!(m.state(B), Mark::Bad, "{at}: {:?}", show(&cut));
        assert_eq!(m.primary().unwrap(), Some(A), "{at}");
    }
}

/// An ESP with one UKI per slot, whose command lines are `lines`.
fn uki_esp(lines: [&str; 2]) -> (tempfile::TempDir, SdBoot) {
    let dir = tempfile::tempdir().unwrap();
    for (g, line) in SlotGroup::ALL.into_iter().zip(lines) {
        let d = dir.path().join("tandem").join(g.as_str());
        fs::create_dir_all(&d).unwrap();
        let img = pe::tests::image(&[(".osrel", b"ID=tandem\n"), (".cmdline", line.as_bytes())]);
        fs::write(d.join("tandem.efi"), img).unwrap();
    }
    let layout = Layout {
        kernel: "/tandem/{slot}/tandem.efi".into(),
        initrd: None,
        efi: true,
        ..Layout::default()
    };
    let efivars = dir.path().join("efivars");
    let sd = SdBoot::new(dir.path(), &efivars, layout).unwrap();
    (dir, sd)
}

#[test]
fn a_uki_is_armed_only_if_its_command_line_names_the_slot_and_its_root_hash() {
    let good = "tandem.slot=b tandem.verity.roothash=ab12 tandem.verity.hashoffset=4096";
    let (dir, mut sd) = uki_esp(["tandem.slot=a", good]);
    sd.set_verity(
        B,
        Some("tandem.verity.roothash=ab12 tandem.verity.hashoffset=4096"),
    )
    .unwrap();
    sd.arm(B, 1).unwrap();
    let entry = fs::read_to_string(dir.path().join("loader/entries/tandem-b+1.conf")).unwrap();
    assert!(entry.contains("efi /tandem/b/tandem.efi\n"), "{entry}");
    assert!(!entry.contains("options"), "{entry}");

    // The image for a, written to b's place: refused, nothing armed.
    let (dir, mut sd) = uki_esp(["tandem.slot=a", "tandem.slot=a quiet"]);
    let e = sd.arm(B, 1).unwrap_err().to_string();
    assert!(
        e.contains("tandem.slot=a") && e.contains("tandem/b/tandem.efi"),
        "{e}"
    );
    assert!(!dir.path().join("loader/entries/tandem-b+1.conf").exists());

    // Another root hash than the installed rootfs's: refused.
    let (_dir, mut sd) = uki_esp(["tandem.slot=a", good]);
    sd.set_verity(
        B,
        Some("tandem.verity.roothash=ffff tandem.verity.hashoffset=4096"),
    )
    .unwrap();
    let e = sd.arm(B, 1).unwrap_err().to_string();
    assert!(e.contains("lacks tandem.verity.roothash=ffff"), "{e}");

    // Not a PE image at all.
    let (dir, mut sd) = uki_esp(["tandem.slot=a", good]);
    fs::write(dir.path().join("tandem/b/tandem.efi"), "linux").unwrap();
    let e = sd.arm(B, 1).unwrap_err().to_string();
    assert!(e.contains("not a PE image"), "{e}");
}

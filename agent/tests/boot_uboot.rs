//! U-Boot backends against the real peer tools: `fw_printenv`/`fw_setenv`
//! (libubootenv-tool) read what we write and we read what they write,
//! torn writes at every cut point of our save, the A/B scheme through the
//! `Bootloader` trait, and `mkimage` for the shipped boot script.
//! Golden files: UPDATE_GOLDEN=1 regenerates the ones we produce.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use proptest::prelude::*;
use tandem::boot::uboot::{self, plan_write, Layout, UbootStore};
use tandem::boot::uboot_file::{self, UbootFileStore};
use tandem::boot::{abvars, Bootloader, EnvBootloader, EnvStore, Mark};
use tandem::slot::SlotGroup::{self, A, B};

const SIZE: usize = 0x4000;

fn map(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A U-Boot-like environment: the agent must keep these intact.
fn board_env() -> BTreeMap<String, String> {
    map(&[
        ("bootcmd", "run distro_bootcmd; echo ${x} $y 'q'"),
        ("bootdelay", "0"),
        ("bootargs", "console=ttyAMA0 quiet a=b=c"),
        ("fdt_addr", "0x40000000"),
    ])
}

fn tool(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| {
        panic!("cannot run {cmd}: {e} (apt-get install libubootenv-tool u-boot-tools)")
    });
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("tool output is UTF-8")
}

/// Every variable as fw_printenv prints it.
fn printenv(cfg: &Path) -> BTreeMap<String, String> {
    tool("fw_printenv", &["-c", cfg.to_str().unwrap()])
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn setenv(cfg: &Path, k: &str, v: &str) {
    tool("fw_setenv", &["-c", cfg.to_str().unwrap(), k, v]);
}

/// A temporary "device" file and its fw_env.config: single copy at 0x2000,
/// or redundant copies at 0 and 0x8000.
struct Dev {
    _dir: tempfile::TempDir,
    dev: PathBuf,
    cfg: PathBuf,
}

fn device(redundant: bool) -> Dev {
    let dir = tempfile::tempdir().unwrap();
    let dev = dir.path().join("env.img");
    std::fs::write(&dev, vec![0u8; 0x10000]).unwrap();
    let d = dev.display();
    let text = if redundant {
        format!("# test\n{d} 0x0 0x4000\n{d} 0x8000 4000\n")
    } else {
        format!("{d} 0x2000 0x4000 0x1000 4\n")
    };
    let cfg = dir.path().join("fw_env.config");
    std::fs::write(&cfg, text).unwrap();
    Dev {
        _dir: dir,
        dev,
        cfg,
    }
}

impl Dev {
    fn store(&self) -> UbootStore {
        UbootStore::from_config_file(&self.cfg).unwrap()
    }
    fn flags(&self) -> Vec<Option<u8>> {
        let copies = self.store().read_copies().unwrap();
        copies
            .iter()
            .map(|c| c.as_ref().ok().and_then(|c| c.flag))
            .collect()
    }
}

#[test]
fn we_write_fw_printenv_reads() {
    for redundant in [false, true] {
        let d = device(redundant);
        let mut s = d.store();
        let e = s.load().unwrap_err().to_string();
        assert!(e.contains("no valid environment copy (copy at 0x"), "{e}");
        let mut v = board_env();
        for i in 0..4 {
            v.insert(
                "TANDEM_ORDER".into(),
                if i % 2 == 0 { "b a" } else { "a b" }.into(),
            );
            v.insert("count".into(), i.to_string());
            s.save(&v).unwrap();
            assert_eq!(printenv(&d.cfg), v, "redundant={redundant} save {i}");
            assert_eq!(s.load().unwrap(), v);
        }
        if redundant {
            assert_eq!(d.flags(), vec![Some(3), Some(4)]);
        }
    }
}

#[test]
fn fw_setenv_writes_we_read() {
    for redundant in [false, true] {
        let d = device(redundant);
        d.store().save(&board_env()).unwrap();
        let mut want = board_env();
        for i in 1..=5 {
            let v = format!("value {i} with spaces=and equals");
            setenv(&d.cfg, &format!("var{i}"), &v);
            want.insert(format!("var{i}"), v);
            assert_eq!(
                d.store().load().unwrap(),
                want,
                "redundant={redundant} set {i}"
            );
            assert_eq!(printenv(&d.cfg), want);
            if redundant {
                // fw_setenv wrote the other copy with the next flag.
                let f = d.flags();
                let (old, new) = if i % 2 == 1 { (0, 1) } else { (1, 0) };
                assert_eq!(f[new], Some(1 + i as u8), "{f:?}");
                assert_eq!(f[old], Some(i as u8), "{f:?}");
            }
        }
        // Deleting through fw_setenv is seen as well.
        tool("fw_setenv", &["-c", d.cfg.to_str().unwrap(), "var1"]);
        want.remove("var1");
        assert_eq!(d.store().load().unwrap(), want);
    }
}

/// Writes copies with the given flags straight onto the device.
fn put_copies(d: &Dev, copies: &[(u8, &BTreeMap<String, String>)]) {
    let mut img = std::fs::read(&d.dev).unwrap();
    for (i, (flag, v)) in copies.iter().enumerate() {
        let b = uboot::encode(v, SIZE, Layout::Redundant, *flag).unwrap();
        img[i * 0x8000..i * 0x8000 + SIZE].copy_from_slice(&b);
    }
    std::fs::write(&d.dev, img).unwrap();
}

#[test]
fn flag_wraparound_agrees_with_libubootenv() {
    let (x, y) = (map(&[("which", "copy0")]), map(&[("which", "copy1")]));
    for (f0, f1, want) in [
        (254, 255, &y),
        (255, 0, &y),
        (0, 255, &x),
        (7, 7, &x),
        (9, 3, &x),
    ] {
        let d = device(true);
        put_copies(&d, &[(f0, &x), (f1, &y)]);
        assert_eq!(d.store().load().unwrap(), *want, "flags {f0} {f1}");
        assert_eq!(printenv(&d.cfg), *want, "fw_printenv, flags {f0} {f1}");
        // And both advance the counter the same way past the wrap.
        let mut ours = d.store();
        let mut v = want.clone();
        v.insert("n".into(), "1".into());
        ours.save(&v).unwrap();
        assert_eq!(printenv(&d.cfg), v, "after our save, flags {f0} {f1}");
        setenv(&d.cfg, "n", "2");
        v.insert("n".into(), "2".into());
        assert_eq!(ours.load().unwrap(), v, "after fw_setenv, flags {f0} {f1}");
    }
}

/// Puts a redundant `mkenvimage` image of `text` into copy 0.
fn mkenvimage(d: &Dev, text: &str) {
    let input = d.dev.with_file_name("factory.txt");
    let out = d.dev.with_file_name("factory.bin");
    std::fs::write(&input, text).unwrap();
    let (i, o) = (input.to_str().unwrap(), out.to_str().unwrap());
    tool("mkenvimage", &["-r", "-s", "0x4000", "-o", o, i]);
    let mut img = std::fs::read(&d.dev).unwrap();
    img[..SIZE].copy_from_slice(&std::fs::read(&out).unwrap());
    std::fs::write(&d.dev, img).unwrap();
}

/// One cut point of a save: what is on the inactive copy when power fails.
fn cut(name: &str, plan: &[u8], old: &[u8]) -> Vec<u8> {
    let prefix = |n: usize| [&plan[..n], &old[n..]].concat();
    match name {
        "before-write" => old.to_vec(),
        "crc-only" => prefix(4),
        "header-only" => prefix(5),
        "first-sector" => prefix(512),
        "half" => prefix(SIZE / 2),
        "all-but-last-byte" => prefix(SIZE - 1),
        // The device wrote later sectors but not the first one.
        "sectors-out-of-order" => [&old[..512], &plan[512..]].concat(),
        "garbage" => (0..SIZE).map(|i| (i * 7 + 3) as u8).collect(),
        "zeroed" => vec![0; SIZE],
        other => panic!("unknown cut {other}"),
    }
}

/// Cuts power at `name` while saving `new` over a redundant env whose
/// active copy holds `old_vars`: we and fw_printenv still read `old_vars`.
fn torn(name: &str) {
    let d = device(true);
    let mut s = d.store();
    // Copy 0: a factory env from mkenvimage (flag 1, 0xff padding).
    mkenvimage(&d, "TANDEM_ORDER=a b\ngen=1\n");
    assert_eq!(
        s.load().unwrap(),
        map(&[("TANDEM_ORDER", "a b"), ("gen", "1")])
    );
    let mut old_vars = board_env();
    old_vars.insert("TANDEM_ORDER".into(), "b a".into());
    old_vars.insert("TANDEM_B_TRIES".into(), "2".into());
    s.save(&old_vars).unwrap(); // copy 1, flag 2: active
    let mut new_vars = old_vars.clone();
    new_vars.insert("TANDEM_B_TRIES".into(), "1".into());
    // Fill the data area exactly, so every cut short of the full copy
    // really tears it (zero padding would otherwise match old padding).
    let used: usize = new_vars.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
    let fill = SIZE - 5 - 1 - used - "fill=".len() - 1;
    new_vars.insert("fill".into(), "x".repeat(fill));
    let plan = plan_write(&s.config, &s.read_copies().unwrap(), &new_vars).unwrap();
    assert_eq!((plan.copy, plan.offset, plan.bytes[4]), (0, 0, 3));

    let pristine = std::fs::read(&d.dev).unwrap();
    let mut img = pristine.clone();
    let torn = cut(name, &plan.bytes, &pristine[..SIZE]);
    assert_ne!(torn, plan.bytes, "{name} must tear the copy");
    img[..SIZE].copy_from_slice(&torn);
    std::fs::write(&d.dev, &img).unwrap();
    assert_eq!(s.load().unwrap(), old_vars, "{name}: we read the old copy");
    assert_eq!(
        printenv(&d.cfg),
        old_vars,
        "{name}: fw_printenv reads the old copy"
    );

    // The next save goes to the torn copy again and leaves the good one.
    s.save(&new_vars).unwrap();
    let after = std::fs::read(&d.dev).unwrap();
    assert_eq!(
        after[..SIZE],
        plan.bytes[..],
        "{name}: save executes plan_write"
    );
    assert_eq!(
        after[0x8000..0x8000 + SIZE],
        pristine[0x8000..0x8000 + SIZE]
    );
    assert_eq!(printenv(&d.cfg), new_vars, "{name}: completed save");
}

macro_rules! torn_tests {
    ($($f:ident: $name:literal,)*) => {$(
        #[test]
        fn $f() {
            torn($name);
        }
    )*};
}

torn_tests! {
    torn_before_write: "before-write",
    torn_after_crc: "crc-only",
    torn_after_header: "header-only",
    torn_after_first_sector: "first-sector",
    torn_half_written: "half",
    torn_all_but_last_byte: "all-but-last-byte",
    torn_sectors_out_of_order: "sectors-out-of-order",
    torn_garbage: "garbage",
    torn_zeroed: "zeroed",
}

#[test]
fn short_device_is_a_clear_error() {
    let d = device(false);
    std::fs::write(&d.dev, vec![0u8; 0x3000]).unwrap();
    let e = d.store().load().unwrap_err().to_string();
    assert!(
        e.contains("device ends before offset 0x2000 + envsize 0x4000"),
        "{e}"
    );
}

#[test]
fn single_copy_save_writes_only_its_range() {
    let d = device(false);
    let before = std::fs::read(&d.dev).unwrap();
    d.store().save(&board_env()).unwrap();
    let after = std::fs::read(&d.dev).unwrap();
    assert_eq!(after[..0x2000], before[..0x2000]);
    assert_eq!(after[0x6000..], before[0x6000..]);
    assert_eq!(after.len(), before.len(), "never truncates the device");
}

fn boot<S: EnvStore>(bl: &mut EnvBootloader<S>) -> SlotGroup {
    let mut v = bl.store.load().unwrap();
    let g = abvars::simulate_boot(&mut v).expect("something boots");
    bl.store.save(&v).unwrap();
    g
}

fn trial_then_fallback<S: EnvStore>(mut bl: EnvBootloader<S>) -> EnvBootloader<S> {
    assert_eq!(bl.max_tries(), 9);
    bl.set_primary(A).unwrap();
    assert_eq!(bl.primary().unwrap(), Some(A));
    assert!(bl.arm(B, 10).is_err(), "boot.cmd counts at most 9");
    bl.arm(B, 2).unwrap();
    assert_eq!(bl.primary().unwrap(), Some(B));
    assert_eq!(bl.tries_left(B).unwrap(), Some(2));
    assert_eq!([boot(&mut bl), boot(&mut bl)], [B, B]);
    assert_eq!(bl.tries_left(B).unwrap(), Some(0));
    assert_eq!([boot(&mut bl), boot(&mut bl)], [A, A], "trial ran out");
    assert_eq!(bl.primary().unwrap(), Some(A));
    // A second trial that commits.
    bl.arm(B, 3).unwrap();
    assert_eq!(boot(&mut bl), B);
    bl.set_primary(B).unwrap();
    assert_eq!(bl.tries_left(B).unwrap(), None);
    assert_eq!(
        [boot(&mut bl), boot(&mut bl), boot(&mut bl), boot(&mut bl)],
        [B; 4]
    );
    bl.set_state(B, Mark::Bad).unwrap();
    assert_eq!(
        (bl.state(B).unwrap(), bl.primary().unwrap()),
        (Mark::Bad, Some(A))
    );
    bl
}

#[test]
fn bootloader_over_uboot_env() {
    let d = device(true);
    d.store().save(&board_env()).unwrap();
    let bl = trial_then_fallback(EnvBootloader { store: d.store() });
    assert_eq!(bl.name(), "uboot");
    let seen = printenv(&d.cfg);
    for (k, v) in board_env() {
        assert_eq!(seen.get(&k), Some(&v), "{k} survives");
    }
    assert_eq!(seen.get("TANDEM_B_OK").map(String::as_str), Some("0"));
    assert_eq!(seen.get("TANDEM_ORDER").map(String::as_str), Some("a b"));
}

#[test]
fn bootloader_over_uboot_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(uboot_file::FILE_NAME);
    let bl = trial_then_fallback(EnvBootloader {
        store: UbootFileStore::new(&path),
    });
    assert_eq!(bl.name(), "uboot-file");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        b"TANDEM_A_OK=1\nTANDEM_B_OK=0\nTANDEM_ORDER=a b\n\0"
    );
}

fn golden(name: &str, actual: &[u8]) -> PathBuf {
    let path = PathBuf::from(format!(
        "{}/tests/golden/{name}",
        env!("CARGO_MANIFEST_DIR")
    ));
    if std::env::var("UPDATE_GOLDEN").is_ok() {
        std::fs::write(&path, actual).unwrap();
    }
    let want = std::fs::read(&path).unwrap_or_default();
    assert!(
        actual == want,
        "{} differs; run with UPDATE_GOLDEN=1 if intended",
        path.display()
    );
    path
}

#[test]
fn golden_envs_and_fw_printenv_reads_them() {
    let mut v = board_env();
    abvars::arm(&mut v, B, 3, 9).unwrap();
    let single = uboot::encode(&v, SIZE, Layout::Single, 0).unwrap();
    let p = golden("uboot-single.bin", &single);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("single.config");
    std::fs::write(&cfg, format!("{} 0 0x4000\n", p.display())).unwrap();
    assert_eq!(printenv(&cfg), v);

    // Two copies back to back, as two saves from a zeroed device leave them.
    let d = device(true);
    let mut s = d.store();
    s.save(&board_env()).unwrap();
    s.save(&v).unwrap();
    let img = std::fs::read(&d.dev).unwrap();
    let both = [&img[..SIZE], &img[0x8000..0x8000 + SIZE]].concat();
    let p = golden("uboot-redundant.bin", &both);
    let cfg = dir.path().join("redundant.config");
    std::fs::write(
        &cfg,
        format!("{0} 0 0x4000\n{0} 0x4000 0x4000\n", p.display()),
    )
    .unwrap();
    assert_eq!(printenv(&cfg), v);
    assert_eq!((both[4], both[SIZE + 4]), (1, 2));
}

/// The file U-Boot 2023.01 wrote with `env export -t` + `fatwrite` from
/// boot.cmd under QEMU (qemu_arm64): we read it, and write the same bytes.
#[test]
fn text_env_matches_uboot_export() {
    let path = format!(
        "{}/tests/golden/uboot-file-from-uboot.env",
        env!("CARGO_MANIFEST_DIR")
    );
    let bytes = std::fs::read(path).unwrap();
    let v = uboot_file::decode(&bytes).unwrap();
    let want = map(&[
        ("TANDEM_A_OK", "1"),
        ("TANDEM_B_OK", "1"),
        ("TANDEM_B_TRIES", "2"),
        ("TANDEM_ORDER", "b a"),
    ]);
    assert_eq!(v, want);
    assert_eq!(uboot_file::encode(&v).unwrap(), bytes);
}

#[test]
fn text_store_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = UbootFileStore::new(&dir.path().join("tandem.env"));
    let v = map(&[("TANDEM_ORDER", "b a"), ("note", "multi\nline \\ value")]);
    s.save(&v).unwrap();
    assert_eq!(s.load().unwrap(), v);
    let bad = map(&[("=x", "1")]);
    assert!(s
        .save(&bad)
        .unwrap_err()
        .to_string()
        .contains("invalid variable name"));
    assert_eq!(s.load().unwrap(), v, "a refused save leaves the file alone");
}

fn require_tools() -> bool {
    std::env::var("TANDEM_TEST_REQUIRE_TOOLS").as_deref() == Ok("1")
}

#[test]
fn boot_cmd_compiles_and_matches_the_scheme() {
    let src = PathBuf::from(format!(
        "{}/dist/uboot/boot.cmd",
        env!("CARGO_MANIFEST_DIR")
    ));
    let text = std::fs::read_to_string(&src).unwrap();
    for g in [A, B] {
        assert!(text.contains(&abvars::ok_var(g)) && text.contains(&abvars::tries_var(g)));
    }
    assert!(text.contains(abvars::ORDER) && text.contains(uboot_file::FILE_NAME));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("boot.scr");
    let args = ["-A", "arm64", "-T", "script", "-C", "none", "-d"];
    match Command::new("mkimage")
        .args(args)
        .arg(&src)
        .arg(&out)
        .output()
    {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !require_tools() => {
            eprintln!("SKIP boot_cmd_compiles: mkimage not installed (apt-get install u-boot-tools; TANDEM_TEST_REQUIRE_TOOLS=1 makes this fail)");
        }
        Err(e) => panic!("mkimage: {e}"),
        Ok(o) => {
            assert!(
                o.status.success(),
                "mkimage: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            let listing = tool("mkimage", &["-l", out.to_str().unwrap()]);
            assert!(listing.contains("Script"), "{listing}");
        }
    }
}

fn name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_.:/@!-][A-Za-z0-9_.:/@!#$%-]{0,15}"
}

proptest! {
    #[test]
    fn binary_env_round_trips(vars in prop::collection::btree_map(name(), "[^\0]{0,40}", 0..12), flag: u8) {
        for layout in [Layout::Single, Layout::Redundant] {
            let b = uboot::encode(&vars, 0x1000, layout, flag).unwrap();
            let c = uboot::decode(&b, 0x1000, layout).unwrap();
            let want: BTreeMap<_, _> = vars.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| (k.clone(), v.clone())).collect();
            prop_assert_eq!(c.vars, want);
            prop_assert_eq!(c.flag, (layout == Layout::Redundant).then_some(flag));
        }
    }

    #[test]
    fn text_env_round_trips(vars in prop::collection::btree_map(name(), "[^\0]{0,40}", 0..12)) {
        let b = uboot_file::encode(&vars).unwrap();
        let want: BTreeMap<_, _> = vars.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| (k.clone(), v.clone())).collect();
        prop_assert_eq!(uboot_file::decode(&b).unwrap(), want);
    }
}

use super::*;

/// Records the calls; answers from scripted results.
struct Fake {
    calls: Vec<&'static str>,
    format: Result<(), String>,
    mounts: Vec<Result<(), String>>,
    fsck: Result<i32, String>,
}

impl Fake {
    fn new(mounts: &[Result<(), &str>]) -> Fake {
        Fake {
            calls: vec![],
            format: Ok(()),
            mounts: mounts
                .iter()
                .rev()
                .map(|r| r.map_err(str::to_string))
                .collect(),
            fsck: Ok(0),
        }
    }
}

impl DataOps for Fake {
    fn format(&mut self) -> Result<(), String> {
        self.calls.push("format");
        self.format.clone()
    }
    fn mount(&mut self) -> Result<(), String> {
        self.calls.push("mount");
        self.mounts
            .pop()
            .unwrap_or(Err("no more mounts scripted".into()))
    }
    fn fsck(&mut self) -> Result<i32, String> {
        self.calls.push("fsck");
        self.fsck.clone()
    }
}

const ALL: Tools = Tools {
    mkfs: true,
    fsck: true,
};

fn ext_head() -> Vec<u8> {
    let mut b = vec![0u8; HEAD_LEN];
    b[1024..1032].fill(0x11);
    b[1080] = 0x53;
    b[1081] = 0xef;
    b
}

fn mounted(formatted: bool, repaired: bool) -> Outcome {
    Outcome::Mounted {
        formatted,
        repaired,
    }
}

fn degraded_says(o: &Outcome, needle: &str) {
    match o {
        Outcome::Degraded(why) => assert!(why.contains(needle), "{needle:?} in {why:?}"),
        other => panic!("expected degraded ({needle}), got {other:?}"),
    }
}

#[test]
fn classify_table() {
    let mut luks = vec![0u8; HEAD_LEN];
    luks[..6].copy_from_slice(b"LUKS\xba\xbe");
    let mut luks_over_ext = ext_head();
    luks_over_ext[..6].copy_from_slice(b"LUKS\xba\xbe");
    let mut xfs = vec![0u8; HEAD_LEN];
    xfs[..4].copy_from_slice(b"XFSB");
    let mut sq = vec![0u8; HEAD_LEN];
    sq[..4].copy_from_slice(b"hsqs");
    let mut damaged = ext_head();
    damaged[1080] = 0; // superblock magic gone, the rest still there
    let mut late_data = vec![0u8; HEAD_LEN];
    late_data[HEAD_LEN - 1] = 1; // one byte in the last sector of the first MiB
    let cases: Vec<(&str, Vec<u8>, Content)> = vec![
        ("blank MiB", vec![0; HEAD_LEN], Content::Blank),
        ("blank small partition", vec![0; 4096], Content::Blank),
        ("empty read", vec![], Content::Unrecognized),
        ("ext4", ext_head(), Content::Ext),
        ("LUKS", luks, Content::Other("LUKS (an encrypted volume)")),
        (
            "LUKS over old ext",
            luks_over_ext,
            Content::Other("LUKS (an encrypted volume)"),
        ),
        ("xfs", xfs, Content::Other("XFS")),
        ("squashfs", sq, Content::Other("squashfs")),
        ("damaged ext superblock", damaged, Content::Unrecognized),
        (
            "data late in the first MiB",
            late_data,
            Content::Unrecognized,
        ),
    ];
    for (what, head, want) in cases {
        assert_eq!(classify(&head), want, "{what}");
    }
}

#[test]
fn zeros_after_the_first_mib_do_not_make_it_blank() {
    // The caller reads only HEAD_LEN bytes: what follows cannot make a
    // non-blank head blank, and a blank head with data after it is blank
    // (zeroing the first MiB is the documented request to format).
    let mut head = vec![0u8; HEAD_LEN];
    head[4096] = 0xff;
    assert_eq!(classify(&head), Content::Unrecognized);
    let mut f = Fake::new(&[]);
    degraded_says(&bring_up(&classify(&head), ALL, &mut f), "not blank");
    assert!(f.calls.is_empty(), "nothing touched: {:?}", f.calls);
}

#[test]
fn blank_is_formatted_then_mounted() {
    let mut f = Fake::new(&[Ok(())]);
    assert_eq!(bring_up(&Content::Blank, ALL, &mut f), mounted(true, false));
    assert_eq!(f.calls, ["format", "mount"]);
}

#[test]
fn blank_without_mke2fs_is_degraded_not_a_failure() {
    let mut f = Fake::new(&[]);
    let o = bring_up(
        &Content::Blank,
        Tools {
            mkfs: false,
            fsck: true,
        },
        &mut f,
    );
    degraded_says(&o, "no /sbin/mke2fs");
    assert!(f.calls.is_empty());
}

#[test]
fn a_failed_format_is_degraded() {
    let mut f = Fake::new(&[]);
    f.format = Err("exited with 1".into());
    degraded_says(&bring_up(&Content::Blank, ALL, &mut f), "formatting");
    assert_eq!(f.calls, ["format"]);
}

#[test]
fn ext4_is_mounted_and_never_checked_or_formatted() {
    let mut f = Fake::new(&[Ok(())]);
    assert_eq!(bring_up(&Content::Ext, ALL, &mut f), mounted(false, false));
    assert_eq!(f.calls, ["mount"]);
}

#[test]
fn damaged_ext_is_checked_then_mounted() {
    for code in [0, 1, 2] {
        let mut f = Fake::new(&[Err("EUCLEAN"), Ok(())]);
        f.fsck = Ok(code);
        assert_eq!(bring_up(&Content::Ext, ALL, &mut f), mounted(false, true));
        assert_eq!(f.calls, ["mount", "fsck", "mount"]);
    }
}

#[test]
fn damaged_ext_that_fsck_cannot_fix_is_degraded() {
    let mut f = Fake::new(&[Err("EUCLEAN")]);
    f.fsck = Ok(4);
    degraded_says(&bring_up(&Content::Ext, ALL, &mut f), "exit status 4");
    assert_eq!(f.calls, ["mount", "fsck"]);

    let mut f = Fake::new(&[Err("EUCLEAN"), Err("EUCLEAN")]);
    degraded_says(&bring_up(&Content::Ext, ALL, &mut f), "even after e2fsck");
    assert_eq!(f.calls, ["mount", "fsck", "mount"]);

    let mut f = Fake::new(&[Err("EUCLEAN")]);
    let o = bring_up(
        &Content::Ext,
        Tools {
            mkfs: true,
            fsck: false,
        },
        &mut f,
    );
    degraded_says(&o, "no /sbin/e2fsck");
    assert_eq!(f.calls, ["mount"], "never formatted");
}

#[test]
fn luks_and_other_filesystems_are_never_touched() {
    for what in ["LUKS (an encrypted volume)", "XFS", "squashfs"] {
        let mut f = Fake::new(&[Ok(())]);
        degraded_says(&bring_up(&Content::Other(what), ALL, &mut f), what);
        assert!(f.calls.is_empty(), "{what}: {:?}", f.calls);
    }
    let mut f = Fake::new(&[Ok(())]);
    degraded_says(
        &bring_up(&Content::Unrecognized, ALL, &mut f),
        "left untouched",
    );
    assert!(f.calls.is_empty());
}

#[test]
fn marker_is_one_reason_line_then_the_device() {
    assert_eq!(
        marker_text("bad\nthing\there", "/dev/vda4"),
        "bad thing here\ndevice=/dev/vda4\n"
    );
}

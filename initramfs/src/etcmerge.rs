//! `/etc` across image updates: a three-way merge of the overlay's upper
//! layer (docs/disk-layout.md, "/etc across updates").
//!
//! The upper layer on the data partition outlives images. A file in it
//! hides the image's version for good, even one the administrator never
//! changed (copied up by an editor that saved it unchanged, a `chmod` back
//! and forth, a tool that rewrites what it reads). So at every boot, before
//! the overlay is mounted, the image's `/etc` (the lower layer) is compared
//! with the manifest of the image the upper layer was last merged against
//! (`BASE`, on the data partition). When the image changed, each upper
//! entry is judged, the way ostree merges `/etc`:
//!
//! | upper entry is … | then |
//! |---|---|
//! | the old image's version, or the new image's | it yields: removed from the upper layer, the new image's version shows |
//! | the administrator's, and the image did not change the file | kept |
//! | the administrator's, and the image changed it too | kept, and reported as a conflict |
//! | a deletion (whiteout) of a file the image did not change | kept |
//! | a deletion of a file the image changed | kept, and reported as a conflict |
//!
//! Content, mode, owner and symlink targets are compared; directories are
//! not (they merge by themselves). The merge never fails the boot: on an
//! error the upper layer stays as it is.
//!
//! Power cuts: each removal is followed by an fsync of its directory, and
//! the new base manifest and the report are written last (write, fsync,
//! rename, fsync the directory). A cut before that repeats the merge at
//! the next boot; a removed entry is simply no longer there to judge.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use sha2::{Digest, Sha256};

/// Path (relative, no leading `/`) → what is there, as a comparable key:
/// `f MODE UID:GID SHA256`, `l TARGET`, `w` (a whiteout), `o MODE` (a
/// device, FIFO or socket). Directories are not listed.
pub type Manifest = BTreeMap<String, String>;

/// The base manifest's name in the data partition's `etc/` directory.
pub const BASE: &str = "base.manifest";
/// The last merge's report (JSON) beside it; `tandem status` shows it.
pub const REPORT: &str = "merge.json";

/// What the merge decided.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Upper entries to remove: the image's version shows again.
    pub yielded: Vec<String>,
    /// Changed by the administrator and by the image: the administrator's
    /// version stays.
    pub conflicts: Vec<String>,
}

/// Judges each entry of `upper` against the image it was merged with
/// (`base`) and the image now booting (`new`).
pub fn plan(base: &Manifest, new: &Manifest, upper: &Manifest) -> Plan {
    let mut p = Plan::default();
    for (path, u) in upper {
        let (old, now) = (base.get(path), new.get(path));
        if u == "w" {
            if old != now {
                p.conflicts.push(path.clone());
            }
        } else if Some(u) == old || Some(u) == now {
            p.yielded.push(path.clone());
        } else if old != now {
            p.conflicts.push(path.clone());
        }
    }
    p
}

/// The manifest of the tree at `root` (symlinks not followed).
pub fn scan(root: &Path) -> io::Result<Manifest> {
    let mut m = Manifest::new();
    walk(root, "", &mut m)?;
    Ok(m)
}

fn walk(dir: &Path, rel: &str, m: &mut Manifest) -> io::Result<()> {
    let mut names: Vec<_> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    names.sort();
    for name in names {
        let Some(name) = name.to_str().map(str::to_string) else {
            continue; // not UTF-8: left alone, as the administrator's
        };
        if name.contains(['\n', '\t']) {
            continue;
        }
        let path = dir.join(&name);
        let rel = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let md = std::fs::symlink_metadata(&path)?;
        let t = md.file_type();
        let key = if t.is_dir() {
            walk(&path, &rel, m)?;
            continue;
        } else if t.is_symlink() {
            format!("l {}", std::fs::read_link(&path)?.display())
        } else if t.is_file() {
            format!(
                "f {:o} {}:{} {}",
                md.mode() & 0o7777,
                md.uid(),
                md.gid(),
                sha256_file(&path)?
            )
        } else if t.is_char_device() && md.rdev() == 0 {
            "w".into()
        } else {
            format!("o {:o}", md.mode())
        };
        m.insert(rel, key);
    }
    Ok(())
}

fn sha256_file(path: &Path) -> io::Result<String> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// One line per entry: `KEY<TAB>PATH`.
pub fn render(m: &Manifest) -> String {
    m.iter().map(|(p, k)| format!("{k}\t{p}\n")).collect()
}

/// Parses [`render`]'s output; `None` if a line is malformed.
pub fn parse(text: &str) -> Option<Manifest> {
    text.lines()
        .map(|l| {
            let (k, p) = l.split_once('\t')?;
            Some((p.to_string(), k.to_string()))
        })
        .collect()
}

/// What [`run`] did, for the console.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// No base yet (first boot, or an older initramfs before): recorded.
    Recorded,
    /// The image's `/etc` is the one the upper layer was merged with.
    Unchanged,
    Merged(Plan),
}

/// Merges `upper` for the image `/etc` at `lower`, with the base manifest
/// and the report in `state` (the data partition's `etc/`). `version` is
/// the booting image's, for the report.
pub fn run(lower: &Path, upper: &Path, state: &Path, version: &str) -> io::Result<Outcome> {
    let new = scan(lower)?;
    let base_path = state.join(BASE);
    let base = match std::fs::read_to_string(&base_path) {
        Ok(t) => parse(&t),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let Some(base) = base else {
        write_atomic(&base_path, render(&new).as_bytes())?;
        return Ok(Outcome::Recorded);
    };
    if base == new {
        return Ok(Outcome::Unchanged);
    }
    let plan = plan(&base, &new, &scan(upper)?);
    for p in &plan.yielded {
        let path = upper.join(p);
        std::fs::remove_file(&path)?;
        if let Some(parent) = path.parent() {
            File::open(parent)?.sync_all()?;
        }
    }
    write_atomic(&state.join(REPORT), report(version, &plan).as_bytes())?;
    write_atomic(&base_path, render(&new).as_bytes())?;
    Ok(Outcome::Merged(plan))
}

/// The report: `{"merge_version": 1, "version": V, "yielded": [...],
/// "conflicts": [...]}` (paths under `/etc`).
pub fn report(version: &str, p: &Plan) -> String {
    let list = |v: &[String]| {
        v.iter()
            .map(|s| json_string(&format!("/etc/{s}")))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "{{\"merge_version\": 1, \"version\": {}, \"yielded\": [{}], \"conflicts\": [{}]}}\n",
        json_string(version),
        list(&p.yielded),
        list(&p.conflicts)
    )
}

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Write, fsync, rename, fsync the directory.
fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(d) = path.parent() {
        File::open(d)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(entries: &[(&str, &str)]) -> Manifest {
        entries
            .iter()
            .map(|(p, k)| (p.to_string(), k.to_string()))
            .collect()
    }

    #[test]
    fn the_merge_table() {
        let base = m(&[
            ("same", "f 644 0:0 s"),
            ("copied-up", "f 644 0:0 v1"),
            ("admin", "f 644 0:0 a1"),
            ("both", "f 644 0:0 b1"),
            ("deleted", "f 644 0:0 d1"),
            ("deleted-changed", "f 644 0:0 x1"),
            ("link", "l old"),
        ]);
        let new = m(&[
            ("same", "f 644 0:0 s"),
            ("copied-up", "f 644 0:0 v2"),
            ("admin", "f 644 0:0 a1"),
            ("both", "f 644 0:0 b2"),
            ("deleted", "f 644 0:0 d1"),
            ("deleted-changed", "f 644 0:0 x2"),
            ("link", "l new"),
            ("added-by-both", "f 644 0:0 n"),
        ]);
        let upper = m(&[
            ("same", "f 644 0:0 s"),
            ("copied-up", "f 644 0:0 v1"),
            ("admin", "f 644 0:0 mine"),
            ("both", "f 644 0:0 mine"),
            ("deleted", "w"),
            ("deleted-changed", "w"),
            ("link", "l old"),
            ("added-by-both", "f 644 0:0 n"),
            ("admin-only", "f 600 0:0 z"),
        ]);
        let p = plan(&base, &new, &upper);
        assert_eq!(
            p.yielded,
            ["added-by-both", "copied-up", "link", "same"],
            "the image's version shows again"
        );
        assert_eq!(p.conflicts, ["both", "deleted-changed"]);
        // A mode change is the administrator's change.
        let upper = m(&[("same", "f 600 0:0 s")]);
        assert_eq!(plan(&base, &new, &upper), Plan::default());
        // Back to the old image (a fallback): symmetric.
        let upper = m(&[("copied-up", "f 644 0:0 v2")]);
        assert_eq!(plan(&new, &base, &upper).yielded, ["copied-up"]);
    }

    #[test]
    fn manifests_round_trip_and_refuse_garbage() {
        let x = m(&[("a b/c", "f 644 0:0 ab"), ("l", "l /x y"), ("w", "w")]);
        assert_eq!(parse(&render(&x)), Some(x));
        assert_eq!(parse("no tab here\n"), None);
        assert_eq!(parse(""), Some(Manifest::new()));
    }

    #[test]
    fn a_real_tree_merges_and_a_second_boot_does_nothing() {
        let d = tempfile::tempdir().unwrap();
        let (lower, upper, state) = (d.path().join("lower"), d.path().join("upper"), d.path());
        for dir in [&lower, &upper] {
            std::fs::create_dir_all(dir.join("sub")).unwrap();
        }
        let put = |p: &Path, s: &str| std::fs::write(p, s).unwrap();
        put(&lower.join("vendor.conf"), "v=1\n");
        put(&lower.join("sub/admin.conf"), "x=1\n");
        put(&lower.join("conflict.conf"), "c=1\n");
        assert_eq!(
            run(&lower, &upper, state, "1.0.0").unwrap(),
            Outcome::Recorded
        );
        assert_eq!(
            run(&lower, &upper, state, "1.0.0").unwrap(),
            Outcome::Unchanged
        );
        // The administrator: one real edit, one unchanged copy-up, one
        // edit the next image collides with.
        put(&upper.join("sub/admin.conf"), "x=2\n");
        put(&upper.join("vendor.conf"), "v=1\n");
        put(&upper.join("conflict.conf"), "c=admin\n");
        // The next image changes vendor.conf and conflict.conf.
        put(&lower.join("vendor.conf"), "v=2\n");
        put(&lower.join("conflict.conf"), "c=2\n");
        let Outcome::Merged(p) = run(&lower, &upper, state, "1.1.0").unwrap() else {
            panic!("no merge")
        };
        assert_eq!(p.yielded, ["vendor.conf"]);
        assert_eq!(p.conflicts, ["conflict.conf"]);
        assert!(!upper.join("vendor.conf").exists());
        assert_eq!(
            std::fs::read_to_string(upper.join("sub/admin.conf")).unwrap(),
            "x=2\n"
        );
        let r = std::fs::read_to_string(state.join(REPORT)).unwrap();
        assert_eq!(
            r,
            "{\"merge_version\": 1, \"version\": \"1.1.0\", \"yielded\": [\"/etc/vendor.conf\"], \"conflicts\": [\"/etc/conflict.conf\"]}\n"
        );
        assert_eq!(
            run(&lower, &upper, state, "1.1.0").unwrap(),
            Outcome::Unchanged
        );
        // The base is the new image now.
        assert_eq!(
            parse(&std::fs::read_to_string(state.join(BASE)).unwrap()).unwrap(),
            scan(&lower).unwrap()
        );
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_string("a\"b\\c\u{1}"), "\"a\\\"b\\\\c\\u0001\"");
    }
}

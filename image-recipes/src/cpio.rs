//! A reproducible `newc` cpio writer (the initramfs format). Pure: entries
//! in, bytes out; names sorted, owners 0:0, one fixed mtime.

/// One entry of the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Dir { mode: u32 },
    File { mode: u32, data: Vec<u8> },
    Symlink { target: String },
}

fn pad4(v: &mut Vec<u8>) {
    while !v.len().is_multiple_of(4) {
        v.push(0);
    }
}

fn header(out: &mut Vec<u8>, ino: u32, mode: u32, size: usize, mtime: u64, name: &str) {
    let fields = [
        ino,
        mode,
        0, // uid
        0, // gid
        1, // nlink
        mtime as u32,
        size as u32,
        0, // devmajor
        0, // devminor
        0, // rdevmajor
        0, // rdevminor
        name.len() as u32 + 1,
        0, // check
    ];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08X}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
}

/// Builds the archive. Paths are relative (`init`, `lib/modules/x.ko`);
/// parents must be listed explicitly as directories.
pub fn build(entries: &[(String, Entry)], mtime: u64) -> Vec<u8> {
    let mut sorted: Vec<&(String, Entry)> = entries.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = Vec::new();
    for (i, (name, e)) in sorted.iter().enumerate() {
        let ino = i as u32 + 1;
        match e {
            Entry::Dir { mode } => header(&mut out, ino, 0o040000 | mode, 0, mtime, name),
            Entry::File { mode, data } => {
                header(&mut out, ino, 0o100000 | mode, data.len(), mtime, name);
                out.extend_from_slice(data);
                pad4(&mut out);
            }
            Entry::Symlink { target } => {
                header(&mut out, ino, 0o120777, target.len(), mtime, name);
                out.extend_from_slice(target.as_bytes());
                pad4(&mut out);
            }
        }
    }
    header(&mut out, 0, 0, 0, 0, "TRAILER!!!");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpio_tool_reads_it() {
        let entries = vec![
            (
                "init".to_string(),
                Entry::File {
                    mode: 0o755,
                    data: b"#!/bin/sh\n".to_vec(),
                },
            ),
            ("bin".to_string(), Entry::Dir { mode: 0o755 }),
            (
                "bin/sh".to_string(),
                Entry::Symlink {
                    target: "busybox".into(),
                },
            ),
        ];
        let a = build(&entries, 1_700_000_000);
        assert_eq!(a, build(&entries, 1_700_000_000), "deterministic");
        let out = std::process::Command::new("cpio")
            .args(["-t", "-v"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn();
        let Ok(mut child) = out else {
            eprintln!("SKIPPED: cpio not installed");
            return;
        };
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&a).unwrap();
        let o = child.wait_with_output().unwrap();
        let list = String::from_utf8_lossy(&o.stdout);
        assert!(list.contains("bin/sh -> busybox"), "{list}");
        assert!(list.contains("init"), "{list}");
    }
}

//! The `busybox` base: busybox's userland with an applet link for each of
//! its applets and the image's `/sbin/init` script.

use std::path::{Path, PathBuf};

use crate::recipe::Arch;
use crate::stage::{self, read};
use crate::tool::{run, BuildError};

const BUSYBOX_INIT: &str = include_str!("../assets/init-busybox.sh");
const BUSYBOX: &str = "/bin/busybox";

/// The busybox an image carries and the applets it links to it.
pub struct Busybox {
    pub path: PathBuf,
    pub applets: Vec<String>,
}

/// The host's `/bin/busybox` for the host's architecture; otherwise
/// Debian's `busybox-static` for `arch` from the cache (`apt-get
/// download`), whose applets are read from the binary since it cannot run
/// here.
pub fn busybox(arch: Arch, cache: &Path) -> Result<Busybox, BuildError> {
    if arch.is_host() {
        let applets = run(BUSYBOX, &["--list"])?
            .lines()
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_string)
            .collect();
        return Ok(Busybox {
            path: BUSYBOX.into(),
            applets,
        });
    }
    let root = crate::deb::unpack(&arch.package("busybox-static"), cache)?;
    let path = root.join("bin/busybox");
    let applets = applet_names(&read(&path)?).ok_or_else(|| {
        BuildError::Step(format!(
            "{}: no applet name table found (not a busybox binary?)",
            path.display()
        ))
    })?;
    Ok(Busybox { path, applets })
}

/// The applet names compiled into a busybox binary: its `applet_names`
/// table, NUL-separated and sorted, which starts with `[` and `[[` and ends
/// at an empty name. Pure.
pub fn applet_names(binary: &[u8]) -> Option<Vec<String>> {
    const START: &[u8] = b"[\0[[\0";
    let at = binary.windows(START.len()).position(|w| w == START)?;
    let names: Vec<String> = binary[at..]
        .split(|&b| b == 0)
        .take_while(|n| !n.is_empty())
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect();
    let plausible = names.len() > 2
        && names.iter().all(|n| {
            n.len() < 64
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"[-_.".contains(&b))
        });
    plausible.then_some(names)
}

/// Lays the busybox base into `stage`: `/bin/busybox`, a link per applet,
/// `/sbin/init`.
pub fn apply(bb: &Busybox, stage: &Path) -> Result<(), BuildError> {
    stage::write(stage, "bin/busybox", &read(&bb.path)?, 0o755)?;
    for a in bb.applets.iter().filter(|a| *a != "busybox") {
        let rel = format!("bin/{a}");
        if std::fs::symlink_metadata(stage.join(&rel)).is_err() {
            stage::symlink(stage, &rel, "busybox")?;
        }
    }
    stage::write(stage, "sbin/init", BUSYBOX_INIT.as_bytes(), 0o755)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applet_table() {
        let mut bin = b"\x7fELF junk [ not this\0".to_vec();
        bin.extend_from_slice(b"[\0[[\0ash\0ls\0sh\0\0\x01\x02");
        assert_eq!(
            applet_names(&bin).unwrap(),
            vec!["[", "[[", "ash", "ls", "sh"]
        );
        assert_eq!(applet_names(b"no table here"), None);
    }

    #[test]
    fn applet_table_matches_busybox_list() {
        // The host's busybox, where there is one, lists the same applets.
        let Ok(bin) = std::fs::read(BUSYBOX) else {
            eprintln!("no {BUSYBOX}; skipped");
            return;
        };
        let Ok(list) = run(BUSYBOX, &["--list"]) else {
            return;
        };
        let want: Vec<&str> = list.lines().map(str::trim).collect();
        assert_eq!(applet_names(&bin).unwrap(), want);
    }
}

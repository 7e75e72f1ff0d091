//! A channel publisher for the tests: `tandem repo` (this build's) and a
//! repository served on 127.0.0.1.

use std::path::{Path, PathBuf};

use super::{http, text, Fx};

/// `tandem repo ARGS`, which must succeed; its output.
pub fn repo(args: &[&str]) -> String {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_tandem"))
        .arg("repo")
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "tandem repo {args:?}: {}", text(&o));
    text(&o)
}

/// A publisher's directory (`DIR/repo`) with a `stable` channel, and the
/// server of its repository.
pub fn publisher() -> (tempfile::TempDir, PathBuf, http::Server) {
    let d = tempfile::tempdir().unwrap();
    let r = d.path().join("repo");
    repo(&["init", r.to_str().unwrap(), "--channel", "stable"]);
    let srv = http::serve_dir(&r.join("repository"));
    (d, r, srv)
}

/// Ships the repository `r`'s first root in `fx`'s image.
pub fn ship_root(fx: &mut Fx, r: &Path) {
    fx.extra_image_config = format!(
        "[channel]\nroot = \"{}\"\n",
        r.join("repository/1.root.json").display()
    );
}

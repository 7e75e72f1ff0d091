//! python-tuf (PyPI `tuf`) in a venv: `TANDEM_PYTUF_VENV`, default
//! /opt/tandem/python-tuf-venv (scripts/setup.sh makes it).

use std::path::PathBuf;
use std::process::Command;

pub const DEFAULT_VENV: &str = "/opt/tandem/python-tuf-venv";

pub fn venv() -> Option<PathBuf> {
    let v =
        PathBuf::from(std::env::var_os("TANDEM_PYTUF_VENV").unwrap_or_else(|| DEFAULT_VENV.into()));
    let ok = Command::new(v.join("bin/python"))
        .args([
            "-c",
            "import tuf.api.metadata, tuf.ngclient, securesystemslib.signer",
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then_some(v)
}

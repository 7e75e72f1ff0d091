//! Errors and the host tools a build runs. A leaf: every module may use
//! it, it uses none of them but the pure recipe format.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::recipe;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{command}` failed: {message}")]
    Tool { command: String, message: String },
    #[error("{0}")]
    Step(String),
    #[error(transparent)]
    Recipe(#[from] recipe::RecipeError),
    #[error("bundle: {0}")]
    Bundle(#[from] tandem::bundle::writer::WriteError),
}

impl BuildError {
    pub fn io(path: &Path, source: std::io::Error) -> BuildError {
        BuildError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Whether the builder runs as root (and can keep files' owners).
pub fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Runs a tool and returns its stdout; a failure carries its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String, BuildError> {
    run_env(None, program, args, &[])
}

pub fn run_in(dir: &Path, program: &str, args: &[&str]) -> Result<String, BuildError> {
    run_env(Some(dir), program, args, &[])
}

/// Like [`run`] with extra environment; an empty value removes the variable.
pub fn run_env(
    dir: Option<&Path>,
    program: &str,
    args: &[&str],
    env: &[(&str, String)],
) -> Result<String, BuildError> {
    let command = format!("{program} {}", args.join(" "));
    let mut c = Command::new(program);
    c.args(args);
    if let Some(d) = dir {
        c.current_dir(d);
    }
    for (k, v) in env {
        if v.is_empty() {
            c.env_remove(k);
        } else {
            c.env(k, v);
        }
    }
    let out = c.output().map_err(|e| BuildError::Tool {
        command: command.clone(),
        message: format!("cannot run: {e} (is it installed? see scripts/setup.sh)"),
    })?;
    if !out.status.success() {
        return Err(BuildError::Tool {
            command,
            message: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether `program` is an executable file in one of `$PATH`'s directories.
pub fn have(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|d| {
            std::fs::metadata(d.join(program))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

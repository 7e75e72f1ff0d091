//! Regenerates the man pages and shell completions in agent/dist/ from the
//! clap definitions and docs/config.md (scripts/gen-man.sh runs this).
//! An example, not part of the `tandem` binary: clap_mangen and
//! clap_complete are dev-dependencies only.
//!
//! Usage: cargo run -p tandem --example gen-docs [-- ROOT]
//! (ROOT: where to write agent/dist/..., default the repository).

mod gen;

fn main() -> std::process::ExitCode {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let root = std::env::args_os().nth(1).map_or(repo.clone(), Into::into);
    let files = match gen::generate(&repo) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    if let Err(e) = gen::write(&root, &files) {
        eprintln!("error: writing under {}: {e}", root.display());
        return std::process::ExitCode::FAILURE;
    }
    for (f, _) in &files {
        println!("{}", f.display());
    }
    std::process::ExitCode::SUCCESS
}

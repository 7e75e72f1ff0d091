//! What `cargo run --example gen-docs` writes: man pages from the clap
//! definitions (tandem(8), one page per subcommand) and from
//! docs/config.md (tandem.toml(5)), and bash, zsh and fish completions.
//! Shared with agent/tests/generated_docs.rs, which checks the checked-in
//! copies are current.

use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;

#[path = "mdroff.rs"]
pub mod mdroff;

/// Where the generated files live, relative to the repository root.
pub const MAN_DIR: &str = "agent/dist/man";
pub const COMPLETIONS_DIR: &str = "agent/dist/completions";

const MANUAL: &str = "Tandem Manual";

/// Every generated file: its path relative to the repository root and its
/// bytes. `repo` is where docs/config.md and docs/cli.md are read from.
pub fn generate(repo: &Path) -> Result<Vec<(PathBuf, Vec<u8>)>, String> {
    let read = |p: &str| {
        std::fs::read_to_string(repo.join(p))
            .map_err(|e| format!("{}: {e}", repo.join(p).display()))
    };
    let config_md = read("docs/config.md")?;
    let cli_md = read("docs/cli.md")?;
    let mut cmd = tandem::cli::Cli::command().disable_help_subcommand(true);
    cmd.build();
    let version = cmd.get_version().unwrap_or_default().to_string();
    let mut out = vec![];
    man_pages(&cmd, None, &cli_md, &mut out)?;
    out.push((
        Path::new(MAN_DIR).join("tandem.toml.5"),
        config_page(&config_md, &version)?.into_bytes(),
    ));
    for (shell, name) in [
        (Shell::Bash, "tandem.bash"),
        (Shell::Zsh, "_tandem"),
        (Shell::Fish, "tandem.fish"),
    ] {
        let mut buf = vec![];
        clap_complete::generate(shell, &mut cmd.clone(), "tandem", &mut buf);
        out.push((Path::new(COMPLETIONS_DIR).join(name), buf));
    }
    out.sort();
    Ok(out)
}

/// tandem(8) and, recursively, tandem-SUB(8) for each visible subcommand.
fn man_pages(
    cmd: &clap::Command,
    parent: Option<&str>,
    cli_md: &str,
    out: &mut Vec<(PathBuf, Vec<u8>)>,
) -> Result<(), String> {
    let top = parent.is_none();
    let version = cmd.get_version().unwrap_or(env!("CARGO_PKG_VERSION"));
    let man = clap_mangen::Man::new(cmd.clone())
        .section("8")
        .source(format!("tandem {version}"))
        .manual(MANUAL);
    let mut page = vec![];
    man.render(&mut page).map_err(|e| e.to_string())?;
    let mut page = String::from_utf8(page).map_err(|e| e.to_string())?;
    if top {
        let exit = mdroff::section(cli_md, "Exit codes")
            .ok_or("docs/cli.md has no \"## Exit codes\" section")?;
        page += ".SH \"EXIT STATUS\"\n";
        page += &mdroff::blocks(exit);
        page += ".SH FILES\n.TP\n\\fI/etc/tandem/tandem.toml\\fR, \\fI/usr/lib/tandem/conf.d/*.toml\\fR, \\fI/etc/tandem/conf.d/*.toml\\fR\nconfiguration, see \\fBtandem.toml\\fR(5)\n.TP\n\\fI/var/lib/tandem\\fR\nthe state store\n";
    }
    page += &see_also(cmd, parent);
    out.push((
        Path::new(MAN_DIR).join(man.get_filename()),
        ascii(&page).into_bytes(),
    ));
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        man_pages(sub, Some(display_name(cmd)), cli_md, out)?;
    }
    Ok(())
}

fn display_name(cmd: &clap::Command) -> &str {
    cmd.get_display_name().unwrap_or(cmd.get_name())
}

/// The parent's page (tandem-bundle-create: tandem-bundle), the
/// subcommands' pages, tandem.toml(5).
fn see_also(cmd: &clap::Command, parent: Option<&str>) -> String {
    let page = |name: &str| format!("\\fB{}\\fR(8)", mdroff::escape(name));
    let mut refs: Vec<String> = parent.map(page).into_iter().collect();
    refs.extend(
        cmd.get_subcommands()
            .filter(|s| !s.is_hide_set())
            .map(|s| page(display_name(s))),
    );
    refs.push("\\fBtandem.toml\\fR(5)".into());
    format!(".SH \"SEE ALSO\"\n{}\n", refs.join(", "))
}

/// tandem.toml(5) from docs/config.md: its introduction as DESCRIPTION,
/// then each of its sections.
fn config_page(md: &str, version: &str) -> Result<String, String> {
    if mdroff::section(md, "Reference").is_none() {
        return Err("docs/config.md has no \"## Reference\" section".into());
    }
    let body = &md[mdroff::preamble(md).len()..];
    let mut page = format!(
        ".TH tandem.toml 5 \"\" \"tandem {version}\" \"{MANUAL}\"\n\
         .SH NAME\ntandem.toml \\- configuration of the tandem update agent\n\
         .SH SYNOPSIS\n\\fI/etc/tandem/tandem.toml\\fR\n.br\n\\fI/usr/lib/tandem/conf.d/*.toml\\fR\n.br\n\
         \\fI/run/tandem/conf.d/*.toml\\fR\n.br\n\\fI/etc/tandem/conf.d/*.toml\\fR\n\
         .SH DESCRIPTION\n"
    );
    page += &mdroff::blocks(mdroff::preamble(md));
    page += &mdroff::blocks(body);
    page += ".SH \"SEE ALSO\"\n\\fBtandem\\fR(8)\n";
    Ok(ascii(&page))
}

/// Non-ASCII characters (clap's help has a few: `…`) as groff escapes.
fn ascii(page: &str) -> String {
    page.chars()
        .map(|c| {
            if c.is_ascii() {
                c.to_string()
            } else {
                format!("\\[u{:04X}]", u32::from(c))
            }
        })
        .collect()
}

/// Writes `files` under `root`, and removes any other file in the man and
/// completion directories (a page of a removed subcommand).
pub fn write(root: &Path, files: &[(PathBuf, Vec<u8>)]) -> std::io::Result<()> {
    for dir in [MAN_DIR, COMPLETIONS_DIR] {
        let dir = root.join(dir);
        std::fs::create_dir_all(&dir)?;
        for e in std::fs::read_dir(&dir)? {
            let p = e?.path();
            if !files.iter().any(|(f, _)| root.join(f) == p) {
                std::fs::remove_file(&p)?;
            }
        }
    }
    for (f, bytes) in files {
        std::fs::write(root.join(f), bytes)?;
    }
    Ok(())
}

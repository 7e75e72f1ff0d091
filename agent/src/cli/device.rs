//! The device-side commands: install, boot-check, mark-good, mark-bad,
//! rollback, status.

use std::io::{IsTerminal, Write};

use super::CliError;
use crate::config::Settings;
use crate::fetch::{self, Source};
use crate::install::{self, Context, InstallError, Progress};
use crate::slot::booted_from_cmdline;
use crate::state::Store;
use crate::{status, sys};

fn context(s: &Settings) -> Result<Context<'_>, CliError> {
    let cmdline = sys::read_cmdline(&s.cmdline_path).map_err(|source| InstallError::Cmdline {
        path: s.cmdline_path.clone(),
        source,
    })?;
    Ok(Context {
        settings: s,
        cmdline,
        now: sys::now_unix(),
    })
}

pub(super) fn with_control<T>(
    s: &Settings,
    f: impl FnOnce(&mut crate::control::Control<'_>) -> Result<T, crate::control::ControlError>,
) -> Result<T, CliError> {
    let ctx = context(s)?;
    let mut boot = crate::boot::open(s)?;
    let mut c = crate::control::Control {
        settings: s,
        cmdline: ctx.cmdline,
        now: ctx.now,
        boot: boot
            .as_deref_mut()
            .map(|b| b as &mut dyn crate::boot::Bootloader),
    };
    Ok(f(&mut c)?)
}

pub(super) fn run_install(
    s: &Settings,
    source: &str,
    allow_downgrade: bool,
    force: bool,
    reboot: bool,
) -> Result<(), CliError> {
    let ctx = context(s)?;
    let mut boot = crate::boot::open(s)?;
    let tty = std::io::stderr().is_terminal();
    let mut last_pct = u64::MAX;
    let mut last_decile = u64::MAX;
    let mut show = |p: Progress<'_>| match p {
        Progress::Verified {
            version,
            target,
            signers,
        } => eprintln!(
            "verified {version} ({signers} trusted signature(s)); writing slot group {target}"
        ),
        Progress::Writing {
            index,
            class,
            done,
            total,
        } => {
            let pct = done * 100 / total.max(1);
            if pct == last_pct {
                return;
            }
            last_pct = pct;
            if tty {
                eprint!(
                    "\r  image {index} ({class}): {pct:3}% {} / {} MiB",
                    done >> 20,
                    total >> 20
                );
                let _ = std::io::stderr().flush();
            } else if pct / 10 != last_decile {
                last_decile = pct / 10;
                eprintln!("  image {index} ({class}): {pct}%");
            }
        }
        Progress::ImageDone { index, class } => {
            if tty {
                eprintln!();
            }
            eprintln!("  image {index} ({class}): written, synced, sha256 verified");
            last_pct = u64::MAX;
            last_decile = u64::MAX;
        }
    };
    let src = Source::parse(source);
    let r = install::install(
        &ctx,
        &src.to_string(),
        || fetch::open(&src, &s.http),
        &install::Options {
            allow_downgrade,
            force,
        },
        boot.as_deref_mut()
            .map(|b| b as &mut dyn crate::boot::Bootloader),
        &mut show,
    )?;
    println!(
        "installed {} into slot group {} ({} image(s), {} bytes)",
        r.version, r.target, r.images, r.bytes
    );
    match r.armed {
        Some(n) => println!("slot group {} armed for {n} trial boot(s)", r.target),
        None => println!(
            "no bootloader configured: slot group {} is not armed",
            r.target
        ),
    }
    if reboot {
        if r.armed.is_none() {
            return Err(CliError::Usage(
                "--reboot needs a boot backend; the new slot group was not armed".into(),
            ));
        }
        eprintln!("rebooting into slot group {}", r.target);
        sys::reboot().map_err(|e| CliError::Other(format!("reboot failed: {e}")))?;
    }
    Ok(())
}

pub(super) fn status_of(s: &Settings) -> Result<status::Status, CliError> {
    let store = Store::new(&s.state_dir);
    let state = store.load()?;
    let booted = sys::read_cmdline(&s.cmdline_path)
        .ok()
        .and_then(|c| booted_from_cmdline(&c, &s.slot_parameter).ok().flatten());
    let view = match crate::boot::open(s) {
        Ok(Some(mut b)) => Some(status::boot_view(b.as_mut())),
        Ok(None) => None,
        Err(e) => Some(status::BootView {
            error: Some(e.to_string()),
            ..Default::default()
        }),
    };
    Ok(status::build(
        s,
        &state,
        booted,
        view.as_ref(),
        store.is_locked(),
    ))
}

pub(super) fn boot_check(s: &Settings) -> Result<(), CliError> {
    use crate::control::BootCheck;
    let outcome = with_control(s, |c| c.boot_check(&s.health))?;
    match &outcome {
        BootCheck::Normal { booted } => println!("tandem: boot check: slot {booted} is committed; nothing to do"),
        BootCheck::Pending { armed } => println!("tandem: boot check: slot {armed} is armed; reboot to try it"),
        BootCheck::Unhealthy { booted } => println!("tandem: boot check: WARNING: running slot {booted}, which is recorded invalid or bad"),
        BootCheck::Committed { booted, checks } => println!("tandem: boot check: all {checks} health check(s) passed; slot {booted} committed"),
        BootCheck::FellBack { failed, version } => println!(
            "tandem: boot check: the bootloader fell back: the trial of slot {failed} ({}) did not commit; recorded as failed",
            version.as_ref().map_or("?".into(), |v| v.to_string())
        ),
        BootCheck::Failed { booted, reason, reboot } => {
            println!("tandem: boot check: FAILED on slot {booted}: {reason}; marked bad");
            if *reboot {
                println!("tandem: rebooting into the other slot");
                sys::reboot().map_err(|e| CliError::Other(format!("reboot failed: {e}")))?;
            }
            return Err(CliError::Other(format!("health check failed: {reason}")));
        }
    }
    Ok(())
}

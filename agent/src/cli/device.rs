//! The device-side commands: install, boot-check, mark-good, mark-bad,
//! rollback, status.

use std::io::IsTerminal;

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

pub(crate) fn with_control<T>(
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

/// Verifies and writes `source` (a path or URL) into the inactive group and
/// arms it; the daemon and the direct CLI both come here.
pub(crate) fn install_with(
    s: &Settings,
    source: &str,
    opts: &install::Options,
    show: &mut dyn FnMut(Progress<'_>),
) -> Result<install::Report, CliError> {
    let ctx = context(s)?;
    let mut boot = crate::boot::open(s)?;
    let src = Source::parse(source);
    Ok(install::install(
        &ctx,
        &src.to_string(),
        || fetch::open(&src, &s.http),
        opts,
        boot.as_deref_mut()
            .map(|b| b as &mut dyn crate::boot::Bootloader),
        show,
    )?)
}

/// The lines an install prints when it succeeded.
pub(crate) fn describe_install(r: &install::Report) -> String {
    let armed = match r.armed {
        Some(n) => format!("slot group {} armed for {n} trial boot(s)", r.target),
        None => format!(
            "no bootloader configured: slot group {} is not armed",
            r.target
        ),
    };
    format!(
        "installed {} into slot group {} ({} image(s), {} bytes); {armed}",
        r.version, r.target, r.images, r.bytes
    )
}

/// The booted group per the kernel command line, if it can be read.
pub(crate) fn booted_slot(s: &Settings) -> Option<crate::slot::SlotGroup> {
    sys::read_cmdline(&s.cmdline_path)
        .ok()
        .and_then(|c| booted_from_cmdline(&c, &s.slot_parameter).ok().flatten())
}

pub(super) fn run_install(
    s: &Settings,
    source: &str,
    allow_downgrade: bool,
    force: bool,
    reboot: bool,
) -> Result<(), CliError> {
    let mut printer = super::progress::Printer::new(std::io::stderr().is_terminal());
    let mut tracker = install::Tracker::default();
    let mut show = |p: Progress<'_>| {
        if let Some(snap) = tracker.update(p) {
            printer.show(&snap);
        }
    };
    let opts = install::Options {
        allow_downgrade,
        force,
        cancel: None,
    };
    let r = install_with(s, source, &opts, &mut show);
    printer.finish();
    let r = r?;
    println!("{}", describe_install(&r));
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

pub(crate) fn status_of(s: &Settings) -> Result<status::Status, CliError> {
    let store = Store::new(&s.state_dir);
    let state = store.load()?;
    let booted = booted_slot(s);
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

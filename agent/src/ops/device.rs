//! The device-side operations: install, boot-check, mark-good, mark-bad,
//! rollback, status. Each reads the outside world it needs at the edge
//! (`sys`: the kernel command line, the clock) and hands it to the pure
//! layers below.

use super::Error;
use crate::config::Settings;
use crate::control::{BootCheck, Control, ControlError};
use crate::fetch::{self, Source};
use crate::install::{self, Context, InstallError, Progress};
use crate::slot::{booted_from_cmdline, SlotGroup};
use crate::state::Store;
use crate::{status, sys};

fn context(s: &Settings) -> Result<Context<'_>, Error> {
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

/// Runs `f` on a [`Control`] over the configured bootloader.
pub fn with_control<T>(
    s: &Settings,
    f: impl FnOnce(&mut Control<'_>) -> Result<T, ControlError>,
) -> Result<T, Error> {
    let ctx = context(s)?;
    let mut boot = crate::boot::open(s)?;
    let mut c = Control {
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
/// arms it. If the bundle changed on the server under a resumed download,
/// the install starts once more from byte 0.
pub fn install(
    s: &Settings,
    source: &str,
    opts: &install::Options,
    show: &mut dyn FnMut(Progress<'_>),
) -> Result<install::Report, Error> {
    let src = Source::parse(source)?;
    install_source(
        s,
        &src.to_string(),
        || fetch::open(&src, &s.http, &s.oci),
        opts,
        show,
    )
}

/// [`install`] from an already open regular file (a descriptor a D-Bus
/// client passed); `name` is only what the records show.
pub fn install_file(
    s: &Settings,
    file: std::fs::File,
    name: &str,
    opts: &install::Options,
    show: &mut dyn FnMut(Progress<'_>),
) -> Result<install::Report, Error> {
    sys::require_regular(&file).map_err(|e| match e {
        sys::OpenRegularError::Kind(kind) => fetch::FetchError::NotRegular {
            path: name.into(),
            kind,
        },
        sys::OpenRegularError::Io(source) => fetch::FetchError::File {
            path: name.into(),
            source,
        },
    })?;
    let mut file = Some(file);
    install_source(
        s,
        name,
        || {
            // A file is read once; a restart could only come from HTTP.
            file.take()
                .map(|f| Box::new(fetch::FileSource::new(f, name)) as Box<dyn fetch::BundleSource>)
                .ok_or_else(|| fetch::FetchError::Protocol {
                    url: name.to_string(),
                    message: "the passed file can be read only once".into(),
                })
        },
        opts,
        show,
    )
}

/// [`install`] from a source `open` makes (again, for the one restart);
/// `name` is what the records show.
pub fn install_source(
    s: &Settings,
    name: &str,
    mut open: impl FnMut() -> Result<Box<dyn fetch::BundleSource>, fetch::FetchError>,
    opts: &install::Options,
    show: &mut dyn FnMut(Progress<'_>),
) -> Result<install::Report, Error> {
    let ctx = context(s)?;
    let mut boot = crate::boot::open(s)?;
    let mut attempt = 0;
    loop {
        let r = install::install(
            &ctx,
            name,
            &mut open,
            opts,
            boot.as_deref_mut()
                .map(|b| b as &mut dyn crate::boot::Bootloader),
            show,
        );
        match r {
            Err(e) if attempt == 0 && super::restartable(&e) => {
                tracing::warn!(source = name, "{e}; starting again from the first byte");
                attempt += 1;
            }
            r => return Ok(r?),
        }
    }
}

/// The lines an install prints when it succeeded.
pub fn describe_install(r: &install::Report) -> String {
    let armed = match r.armed {
        Some(n) => format!("slot group {} armed for {n} trial boot(s)", r.target),
        None if r.staged => format!("slot group {} is staged, not armed", r.target),
        None => format!(
            "no bootloader configured: slot group {} is not armed",
            r.target
        ),
    };
    let transfer = match &r.transfer {
        Some(t) if t.full => format!(
            "; fetched {} bytes in {} request(s): nothing to reuse",
            t.fetched, t.requests
        ),
        Some(t) => format!(
            "; fetched {} bytes in {} request(s), reused {} bytes from the booted slot",
            t.fetched, t.requests, t.reused
        ),
        None => String::new(),
    };
    format!(
        "installed {} into slot group {} ({} image(s), {} bytes{transfer}); {armed}",
        r.version, r.target, r.images, r.bytes
    )
}

/// The booted group per the kernel command line, if it can be read.
pub fn booted_slot(s: &Settings) -> Option<SlotGroup> {
    sys::read_cmdline(&s.cmdline_path)
        .ok()
        .and_then(|c| booted_from_cmdline(&c, &s.slot_parameter).ok().flatten())
}

/// Commits the booted group.
pub fn mark_good(s: &Settings) -> Result<SlotGroup, Error> {
    with_control(s, |c| c.mark_good())
}

/// Marks `slot` (default: the booted one) bad; `force` even when nothing
/// else could boot.
pub fn mark_bad(s: &Settings, slot: Option<SlotGroup>, force: bool) -> Result<SlotGroup, Error> {
    with_control(s, |c| c.mark_bad(slot, force))
}

/// Arms the installed, not yet armed other group for a trial boot.
pub fn arm(s: &Settings) -> Result<SlotGroup, Error> {
    with_control(s, |c| c.arm())
}

/// Makes the other group primary.
pub fn rollback(s: &Settings) -> Result<SlotGroup, Error> {
    with_control(s, |c| c.rollback())
}

/// After boot: health checks on a trial, commit or fall back.
pub fn boot_check(s: &Settings) -> Result<BootCheck, Error> {
    with_control(s, |c| c.boot_check(&s.health))
}

/// Reboots the machine (logind, systemd, or `reboot -f`).
pub fn reboot() -> Result<(), Error> {
    sys::reboot().map_err(|e| Error::Other(format!("reboot failed: {e}")))
}

/// The status report: state store, command line and bootloader together.
pub fn status(s: &Settings) -> Result<status::Status, Error> {
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
    let data_degraded = std::fs::read_to_string(&s.degraded_marker)
        .ok()
        .map(|t| t.lines().next().unwrap_or("").trim().to_string())
        .map(|r| {
            if r.is_empty() {
                "no reason given".into()
            } else {
                r
            }
        });
    Ok(status::build(
        s,
        &state,
        &status::Observed {
            booted,
            boot: view.as_ref(),
            lock_held: store.is_locked(),
            data_degraded,
        },
    ))
    .map(|mut st| {
        st.channel = super::channel::status(s);
        st.etc_merge = status::EtcMerge::read(&s.etc_merge_report);
        st
    })
}

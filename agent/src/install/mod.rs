//! The install job: verify, then stream every image into the inactive group.
//!
//! Order of effects (docs/state.md explains what a power cut leaves):
//! 1. take the operation lock; read state; work out the booted slot;
//! 2. read the manifest and check signatures, compatible, version, epoch,
//!    slot classes and sizes — nothing has been written yet;
//! 3. persist: target group `invalid`, operation `in-progress`;
//! 4. per image: zero its first chunk, stream, hash, fsync, compare;
//! 5. persist: target group `installed` with version and hashes.

pub mod adaptive;
pub mod pipeline;
pub mod policy;

use std::collections::BTreeMap;
use std::io::Read;

use crate::fetch::BundleSource;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::bundle::frames::FrameReader;
use crate::bundle::keys::{KeyError, Keyring};
use crate::bundle::reader::truncated_at;
use crate::bundle::{BundleError, Compression, UnverifiedBundle};
use crate::config::Settings;
use crate::fsm::Event;
use crate::slot::{booted_from_cmdline, SlotClass, SlotError, SlotGroup};
use crate::state::{
    ImageRecord, Operation, OperationKind, OperationResult, State, StateError, Store,
};
use crate::sys::{SlotWriter, SysError};
use pipeline::PipelineError;
use policy::{DeviceFacts, PolicyError};

pub use crate::bundle::ZSTD_WINDOW_LOG_MAX;

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("cannot load the keyring: {0}")]
    Keyring(#[from] KeyError),
    #[error("keyring {path}: {message}; refusing to trust keys that others could have changed")]
    UnsafeKeyring {
        path: std::path::PathBuf,
        message: String,
    },
    #[error(transparent)]
    Fetch(#[from] crate::fetch::FetchError),
    #[error("bundle refused: {0}")]
    Bundle(#[from] BundleError),
    #[error("bundle refused: {0}")]
    Policy(#[from] PolicyError),
    #[error("cannot read the kernel command line {path}: {source}")]
    Cmdline {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Slot(#[from] SlotError),
    #[error(
        "cannot tell which slot is running: the kernel command line has no {param}=a|b; refusing to write any slot"
    )]
    BootedUnknown { param: String },
    #[error("slot {group}.{class}: {source}")]
    Device {
        group: SlotGroup,
        class: SlotClass,
        source: SysError,
    },
    #[error("image {index} ({class}): bundle is truncated at byte offset {offset}")]
    Truncated {
        index: usize,
        class: SlotClass,
        offset: u64,
    },
    #[error("image {index} ({class}): {source}")]
    Payload {
        index: usize,
        class: SlotClass,
        source: PipelineError,
    },
    #[error(
        "image {index} ({class}): hash mismatch: the manifest says {expected}, the image hashes to {actual}; its header was not written and slot {group} is left invalid"
    )]
    HashMismatch {
        index: usize,
        class: SlotClass,
        group: SlotGroup,
        expected: String,
        actual: String,
    },
    #[error("slot {group} is installed but could not be armed in the bootloader: {source}")]
    Arm {
        group: SlotGroup,
        source: crate::boot::BootError,
    },
    #[error("bootloader: {0}")]
    Boot(#[from] crate::boot::BootError),
    /// Refused because of a slot's state (the booted group on trial or
    /// bad, no fallback left); `--force` overrides.
    #[error("refused: {0}")]
    SlotState(String),
    #[error("slot {group}: cannot pass dm-verity parameters to the boot: {message}")]
    Verity { group: SlotGroup, message: String },
    #[error("cancelled on request; slot {0} left invalid")]
    Cancelled(SlotGroup),
    #[error("cancelled on request before anything was written")]
    CancelledEarly,
    #[error("not authorized: {0}")]
    NotAuthorized(String),
    #[error("{0}; additionally, recording the failure failed: {1}")]
    Record(Box<InstallError>, StateError),
}

/// The error a cancelled job's reads fail with (so that callers can tell a
/// cancel from a transport failure by type, not by message).
#[derive(Debug, thiserror::Error)]
#[error("cancelled on request")]
pub struct CancelledRead;

/// Asked once the bundle is verified and allowed by the policy, before
/// anything is written; `Err(why)` stops the job (the daemon asks polkit
/// again here, now with the bundle's version).
pub type Approve = Arc<dyn Fn(&crate::bundle::Manifest) -> Result<(), String> + Send + Sync>;

#[derive(Clone, Default)]
pub struct Options {
    pub allow_downgrade: bool,
    /// Install even a version that failed on this device before, the
    /// version that runs, or while the booted group is not committed.
    pub force: bool,
    /// Set from another thread to stop the job: the next read of the
    /// bundle fails, the target group stays invalid.
    pub cancel: Option<Arc<AtomicBool>>,
    pub approve: Option<Approve>,
    /// Write, sync and verify, but leave the group unarmed: the caller
    /// arms it later (`tandem arm`; the channel loop when its strategy
    /// lets it reboot).
    pub stage: bool,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("allow_downgrade", &self.allow_downgrade)
            .field("force", &self.force)
            .field("cancel", &self.cancel)
            .field("approve", &self.approve.is_some())
            .field("stage", &self.stage)
            .finish()
    }
}

/// Passes reads through until the cancel flag is set.
struct CancelReader {
    inner: Box<dyn Read + Send>,
    flag: Arc<AtomicBool>,
}

impl Read for CancelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.flag.load(Ordering::Relaxed) {
            // Not ErrorKind::Interrupted: std's read loops retry that.
            return Err(std::io::Error::other(CancelledRead));
        }
        self.inner.read(buf)
    }
}

/// What the caller supplies from the outside world.
pub struct Context<'a> {
    pub settings: &'a Settings,
    pub cmdline: String,
    pub now: u64,
}

/// Progress of the running job, for display.
#[derive(Debug, Clone)]
pub enum Progress<'a> {
    Verified {
        version: &'a semver::Version,
        target: SlotGroup,
        signers: usize,
        /// Bytes of all images together (uncompressed).
        total: u64,
    },
    /// An adaptive plan for an image: bundle bytes to fetch and image
    /// bytes to reuse from the booted slot (`full`: the whole payload).
    Planned {
        index: usize,
        class: &'a SlotClass,
        fetch: u64,
        reuse: u64,
        full: bool,
    },
    Writing {
        index: usize,
        class: &'a SlotClass,
        done: u64,
        total: u64,
    },
    ImageDone {
        index: usize,
        class: &'a SlotClass,
    },
}

#[derive(Debug, Clone)]
pub struct Report {
    /// Trial boots the bootloader was armed with (None: no bootloader, or
    /// `staged`).
    pub armed: Option<u32>,
    /// Left unarmed on request ([`Options::stage`]).
    pub staged: bool,
    pub target: SlotGroup,
    pub version: semver::Version,
    pub bytes: u64,
    pub images: usize,
    /// What an adaptive install fetched and reused (`None`: streamed).
    pub transfer: Option<adaptive::Stats>,
}

/// Works out the booted slot group from the command line.
pub fn booted_group(ctx: &Context<'_>) -> Result<SlotGroup, InstallError> {
    booted_from_cmdline(&ctx.cmdline, &ctx.settings.slot_parameter)?.ok_or_else(|| {
        InstallError::BootedUnknown {
            param: ctx.settings.slot_parameter.clone(),
        }
    })
}

/// Runs an install from `source` (described by `source_name` for the record).
pub fn install(
    ctx: &Context<'_>,
    source_name: &str,
    open: impl FnOnce() -> Result<Box<dyn BundleSource>, crate::fetch::FetchError>,
    opts: &Options,
    boot: Option<&mut dyn crate::boot::Bootloader>,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<Report, InstallError> {
    let store = Store::new(&ctx.settings.state_dir);
    let _lock = store.lock()?;
    let mut state = store.load()?;
    let mut op = Operation {
        kind: OperationKind::Install,
        source: source_name.to_string(),
        target: None,
        version: None,
        started_at: crate::timefmt::rfc3339(ctx.now),
        finished_at: None,
        result: OperationResult::InProgress,
        error: None,
        checks: vec![],
        transfer: None,
    };
    let mut job = Job {
        ctx,
        store: &store,
        state: &mut state,
        op: &mut op,
        touched: false,
    };
    let result = job.run(open, opts, boot, progress);
    let cancelled = || {
        opts.cancel
            .as_ref()
            .is_some_and(|f| f.load(Ordering::Relaxed))
    };
    match result {
        Ok(r) => Ok(r),
        Err(e) if cancelled() && !matches!(e, InstallError::State(_)) => {
            let e = match (job.touched, job.op.target) {
                (true, Some(t)) => InstallError::Cancelled(t),
                _ => InstallError::CancelledEarly,
            };
            Err(job.record_failure(e))
        }
        Err(e) => Err(job.record_failure(e)),
    }
}

struct Job<'a, 'b> {
    ctx: &'a Context<'b>,
    store: &'a Store,
    state: &'a mut State,
    op: &'a mut Operation,
    /// Whether the target slot was marked invalid (writing may have begun).
    touched: bool,
}

impl Job<'_, '_> {
    fn run(
        &mut self,
        open: impl FnOnce() -> Result<Box<dyn BundleSource>, crate::fetch::FetchError>,
        opts: &Options,
        mut boot: Option<&mut dyn crate::boot::Bootloader>,
        progress: &mut dyn FnMut(Progress<'_>),
    ) -> Result<Report, InstallError> {
        let settings = self.ctx.settings;
        if let Some(b) = boot.as_deref() {
            if settings.boot_tries > b.max_tries() {
                return Err(InstallError::Boot(crate::boot::BootError::Unsupported {
                    backend: b.name(),
                    message: format!(
                        "boot.tries = {} but the boot script counts at most {}",
                        settings.boot_tries,
                        b.max_tries()
                    ),
                }));
            }
        }
        let booted = booted_group(self.ctx)?;
        let target = booted.other();
        let staged = opts.stage;
        self.op.target = Some(target);
        if !opts.force {
            let mark = match boot.as_deref_mut() {
                Some(b) => Some(b.state(booted)?),
                None => None,
            };
            refuse_without_fallback(self.state, booted, mark)?;
        }
        let keyring = load_keyring(&settings.keyring_dir)?;
        // A remote bundle's head is read by range, so that an adaptive plan
        // has fetched little more than the manifest when it decides.
        let source: crate::fetch::Shared = Arc::new(Mutex::new(open()?));
        let remote = source.lock().expect("no panics while held").remote();
        let mut rest = None;
        let inner: Box<dyn Read + Send> = if remote {
            let c = crate::fetch::Chained::open(source.clone(), adaptive::HEAD_WINDOW)?;
            rest = Some(c.rest_flag());
            Box::new(c)
        } else {
            source.lock().expect("no panics while held").stream()?
        };
        let reader: Box<dyn Read + Send> = match opts.cancel.clone() {
            Some(flag) => Box::new(CancelReader { inner, flag }),
            None => inner,
        };
        let bundle = UnverifiedBundle::open(reader)?.verify(&keyring, settings.threshold)?;
        let manifest = bundle.manifest().clone();
        self.op.version = Some(manifest.version.clone());

        // Learn the target slots' capacities without touching them, and
        // make sure none of them is (part of) what runs.
        let booted_devices: Vec<_> = settings
            .classes()
            .filter_map(|c| settings.slot(booted, c))
            .map(|d| d.device.clone())
            .collect();
        let protected = crate::sys::protected_devices(&booted_devices);
        let mut capacities = BTreeMap::new();
        for class in settings.classes() {
            let dev = settings.slot(target, class).expect("validated config");
            if let Ok(Some(rdev)) = crate::sys::block_dev(&dev.device) {
                if let Some((_, why)) = protected.iter().find(|(d, _)| *d == rdev) {
                    return Err(device_error(
                        target,
                        class,
                        SysError::Protected {
                            device: dev.device.clone(),
                            why: why.clone(),
                        },
                    ));
                }
            }
            let (cap, _) = SlotWriter::probe(&dev.device, dev.size)
                .map_err(|source| device_error(target, class, source))?;
            capacities.insert(class.clone(), cap);
        }
        let booted_rec = self.state.slot(booted);
        let facts = DeviceFacts {
            compatible: settings.compatible.clone(),
            booted_version: booted_rec
                .version
                .clone()
                .or_else(|| settings.image_version.clone()),
            epoch_floor: self.state.security_epoch_floor.max(
                booted_rec
                    .security_epoch
                    .unwrap_or(settings.image_security_epoch),
            ),
            capacities,
            failed: self
                .state
                .failures
                .iter()
                .filter_map(|f| {
                    f.version
                        .clone()
                        .map(|v| (v, format!("{} at {}", f.reason, f.at)))
                })
                .collect(),
        };
        policy::check_with(&manifest, &facts, opts.allow_downgrade, opts.force)?;
        if let Some(approve) = &opts.approve {
            approve(&manifest).map_err(InstallError::NotAuthorized)?;
        }
        let verity = verity_args(&manifest).map_err(PolicyError::Verity)?;
        if verity.is_none() && settings.require_verity {
            return Err(PolicyError::VerityRequired.into());
        }
        if let (Some(b), Some(_)) = (boot.as_deref(), &verity) {
            if !b.can_pass_verity() {
                return Err(InstallError::Verity {
                    group: target,
                    message: format!(
                        "boot backend {} cannot pass kernel parameters, and this bundle's rootfs is verified by dm-verity; nothing was written",
                        b.name()
                    ),
                });
            }
        }
        progress(Progress::Verified {
            version: &manifest.version,
            target,
            signers: bundle.signers().len(),
            total: manifest.images_for(target).map(|(_, i)| i.size).sum(),
        });
        tracing::info!(version = %manifest.version, %target, "bundle verified; writing");

        // Point of no return for the target group: mark it invalid first.
        self.state.security_epoch_floor = facts.epoch_floor;
        self.state.apply(target, Event::InstallStarted)?;
        let rec = self.state.slots.get_mut(&target).expect("both groups");
        rec.version = None;
        rec.security_epoch = None;
        rec.installed_at = None;
        rec.images.clear();
        self.state.last_operation = Some(self.op.clone());
        self.store.save(self.state)?;
        self.touched = true;
        // The target may be the bootloader's fallback (an older committed
        // version): make sure nothing can boot it while it is half-written.
        if let Some(b) = boot.as_deref_mut() {
            b.invalidate(target)?;
        }

        let mut writers = BTreeMap::new();
        for class in settings.classes() {
            let dev = settings.slot(target, class).expect("validated config");
            let w = SlotWriter::open(&dev.device, dev.size)
                .map_err(|source| device_error(target, class, source))?;
            writers.insert(class.clone(), w);
        }

        let mut bundle = bundle;
        let mut bytes = 0;
        let mut images = Vec::new();
        let mut stats = None;
        let adaptive_ok =
            remote && settings.adaptive && manifest.images.iter().all(|i| i.cdc.is_some());
        if adaptive_ok {
            // The head: the chained reader's windows that held it.
            let head_end = bundle.offset();
            let size = source.lock().expect("no panics while held").size()?;
            let mut total = adaptive::Stats {
                fetched: crate::fetch::Chained::fetched_for(head_end, adaptive::HEAD_WINDOW)
                    .min(size),
                requests: 1 + u64::from(head_end > adaptive::HEAD_WINDOW),
                ..Default::default()
            };
            drop(bundle);
            let r = self.adaptive(
                &source,
                booted,
                target,
                head_end,
                &manifest,
                &mut writers,
                opts,
                progress,
            )?;
            total += r.2;
            bytes = r.0;
            images = r.1;
            stats = Some(total);
        } else {
            // Streaming after all: the rest of a remote bundle in one range.
            if let Some(flag) = &rest {
                flag.store(true, Ordering::Relaxed);
            }
            while let Some(next) = bundle.next_image()? {
                let (index, img, payload) = (next.index, next.image, next.payload);
                if !img.applies_to(target) {
                    // The other group's variant: skipped unread.
                    continue;
                }
                let class = img.slot_class.clone();
                let whole = sha256_bytes(&img.sha256);
                let verify = match next.chunks.as_ref() {
                    Some(list) => pipeline::Verify::Chunks(list),
                    None => pipeline::Verify::Whole(&whole),
                };
                let writer = writers.get_mut(&class).expect("policy checked classes");
                let mut report = |done| {
                    progress(Progress::Writing {
                        index,
                        class: &class,
                        done,
                        total: img.size,
                    })
                };
                let table = next.chunks.as_ref().filter(|c| c.is_table());
                let written = match (img.compression, img.frame_size) {
                    _ if table.is_some() => {
                        let t = table.expect("checked");
                        let mut src = pipeline::PayloadChunks::new(
                            payload,
                            t,
                            img.compression == Compression::Zstd,
                        );
                        pipeline::stream_chunks(
                            t,
                            &mut src,
                            writer,
                            img.size,
                            decode_workers(),
                            &mut report,
                        )
                    }
                    (Compression::Zstd, Some(frame_size)) => {
                        let mut frames = FrameReader::new(payload, frame_size, img.size);
                        let workers = decode_workers();
                        pipeline::stream_frames(
                            &mut frames,
                            writer,
                            img.size,
                            workers,
                            verify,
                            &mut report,
                        )
                    }
                    _ => {
                        let mut src = crate::bundle::decode(payload, &img).map_err(|e| {
                            payload_error(
                                index,
                                &class,
                                PipelineError::Read {
                                    offset: 0,
                                    source: e,
                                },
                            )
                        })?;
                        pipeline::stream_image(&mut src, writer, img.size, verify, &mut report)
                    }
                }
                .map_err(|e| image_error(index, &class, target, e))?;
                bytes += written.bytes;
                images.push(image_done(index, class, &img, progress));
            }
        }

        // Everything written, synced and verified: only now record it.
        self.state.apply(target, Event::InstallCompleted)?;
        let rec = self.state.slots.get_mut(&target).expect("both groups");
        rec.version = Some(manifest.version.clone());
        rec.security_epoch = Some(manifest.security_epoch);
        rec.installed_at = Some(crate::timefmt::rfc3339(crate::sys::now_unix()));
        rec.images = images.clone();
        rec.verity_args = verity.clone();
        rec.armed = false;
        self.op.result = OperationResult::Succeeded;
        self.op.finished_at = rec.installed_at.clone();
        self.op.transfer = stats;
        self.state.last_operation = Some(self.op.clone());
        self.store.save(self.state)?;
        self.touched = false;
        tracing::info!(version = %manifest.version, %target, bytes, "installed");

        // Only now may the bootloader learn of the new group: first its
        // verity parameters (the group still cannot boot), then the trial;
        // then the store records that it was armed. A power cut before
        // that leaves "installed, not armed", which `tandem arm` finishes.
        let mut armed = None;
        if let Some(b) = boot.filter(|_| !staged) {
            crate::boot::arm_with_verity(b, target, verity.as_deref(), settings.boot_tries)
                .map_err(|source| InstallError::Arm {
                    group: target,
                    source,
                })?;
            self.state
                .slots
                .get_mut(&target)
                .expect("both groups")
                .armed = true;
            self.store.save(self.state)?;
            armed = Some(settings.boot_tries);
            tracing::info!(%target, tries = settings.boot_tries, backend = b.name(), "armed for a trial boot");
        }
        Ok(Report {
            armed,
            staged,
            target,
            version: manifest.version,
            bytes,
            images: images.len(),
            transfer: stats,
        })
    }

    /// Writes every image of a remote bundle whose images all have chunk
    /// tables, by range: for each image, nothing when the booted slot holds
    /// it whole; else its table, then what the booted slot lacks (or the
    /// whole payload, when little is there to reuse). `head_end` is where
    /// the signatures end. Returns the bytes written, the records and what
    /// was fetched and reused.
    #[allow(clippy::too_many_arguments)]
    fn adaptive(
        &mut self,
        source: &crate::fetch::Shared,
        booted: SlotGroup,
        target: SlotGroup,
        head_end: u64,
        manifest: &crate::bundle::manifest::Manifest,
        writers: &mut BTreeMap<SlotClass, SlotWriter>,
        opts: &Options,
        progress: &mut dyn FnMut(Progress<'_>),
    ) -> Result<(u64, Vec<ImageRecord>, adaptive::Stats), InstallError> {
        let mut stats = adaptive::Stats::default();
        let (mut bytes, mut images) = (0, Vec::new());
        let mut off = head_end;
        for (index, img) in manifest.images.iter().enumerate() {
            if !img.applies_to(target) {
                // The other group's variant: its members are not fetched.
                off = adaptive::layout(off, img).next;
                continue;
            }
            let class = img.slot_class.clone();
            let have = self.index_booted(booted, img);
            let writer = writers.get_mut(&class).expect("policy checked classes");
            let written = match have {
                Some((reader, ix)) if ix.holds(img) => {
                    // Nothing to fetch: the booted slot is this image. The
                    // copy is checked against the image's hash once more,
                    // and its header written only if it matches.
                    progress(Progress::Planned {
                        index,
                        class: &class,
                        fetch: 0,
                        reuse: img.size,
                        full: false,
                    });
                    tracing::info!(%class, "adaptive: the booted slot holds this image; copying it");
                    stats.reused += img.size;
                    off = adaptive::layout(off, img).next;
                    let mut report = writing(progress, index, &class, img.size);
                    pipeline::stream_image(
                        &mut reader.stream(0, img.size),
                        writer,
                        img.size,
                        pipeline::Verify::Whole(&sha256_bytes(&img.sha256)),
                        &mut report,
                    )
                    .map_err(|e| image_error(index, &class, target, e))?
                }
                have => {
                    let (table, payload_start, next, head) =
                        adaptive::read_members(source, off, index, img)?;
                    stats.fetched += head;
                    stats.requests += 1;
                    off = next;
                    // The target's old content, for chunks still in place.
                    let dev = &self
                        .ctx
                        .settings
                        .slot(target, &class)
                        .expect("validated config")
                        .device;
                    let in_target = crate::sys::SlotReader::open(dev).ok();
                    let fetch = Fetch {
                        source,
                        table: &table,
                        payload_start,
                        target,
                        in_target: in_target.as_ref(),
                        cancel: opts.cancel.clone(),
                    };
                    let (w, s) = fetch.write(index, img, have, writer, progress)?;
                    stats += s;
                    w
                }
            };
            bytes += written.bytes;
            images.push(image_done(index, class, img, progress));
        }
        stats.fetched += adaptive::check_end(source, off)?;
        stats.requests += 1;
        Ok((bytes, images, stats))
    }

    /// The booted slot of `img`'s class, cut and hashed with the image's
    /// chunking; `None` (said in the log) when it cannot be read.
    fn index_booted(
        &self,
        booted: SlotGroup,
        img: &crate::bundle::manifest::Image,
    ) -> Option<(crate::sys::SlotReader, adaptive::SlotIndex)> {
        let class = &img.slot_class;
        let dev = &self
            .ctx
            .settings
            .slot(booted, class)
            .expect("validated config")
            .device;
        let booted_len = self
            .state
            .slot(booted)
            .images
            .iter()
            .find(|r| &r.slot_class == class)
            .map(|r| r.size);
        let cdc = img.cdc.as_ref().expect("checked by the caller");
        let indexed = crate::sys::SlotReader::open(dev).and_then(|r| {
            let len = booted_len.unwrap_or(r.len()).min(r.len());
            let ix = adaptive::SlotIndex::build(&r, len, img.size, &cdc.params())?;
            Ok((r, ix))
        });
        indexed
            .map_err(|e| {
                tracing::warn!(%class, "cannot read the booted slot ({e}); fetching the whole image");
            })
            .ok()
    }

    /// Records a failed job; the target stays invalid if writing had begun.
    fn record_failure(&mut self, e: InstallError) -> InstallError {
        if matches!(e, InstallError::State(_)) {
            return e; // the store itself is the problem (busy, corrupt, unwritable)
        }
        if self.touched {
            if let Some(t) = self.op.target {
                if let Err(se) = self.state.apply(t, Event::InstallFailed) {
                    return InstallError::Record(Box::new(e), se);
                }
            }
        }
        self.op.result = OperationResult::Failed;
        self.op.finished_at = Some(crate::timefmt::rfc3339(crate::sys::now_unix()));
        self.op.error = Some(e.to_string());
        self.state.last_operation = Some(self.op.clone());
        match self.store.save(self.state) {
            Ok(()) => e,
            Err(se) => InstallError::Record(Box::new(e), se),
        }
    }
}

/// Loads the trusted keys from `dir`, which must be (like every file in
/// it) owned by root or the user running tandem and writable by nobody else.
pub fn load_keyring(dir: &std::path::Path) -> Result<Keyring, InstallError> {
    crate::sys::check_trusted_dir(dir)
        .map_err(|(path, message)| InstallError::UnsafeKeyring { path, message })?;
    Ok(Keyring::load_dir(dir)?)
}

/// Refuses to overwrite the other group while it is the only fallback: the
/// booted group is on trial (installed, not committed), recorded bad or
/// invalid, or marked bad in the bootloader. `--force` skips this.
pub fn refuse_without_fallback(
    state: &State,
    booted: SlotGroup,
    booted_mark: Option<crate::boot::Mark>,
) -> Result<(), InstallError> {
    use crate::fsm::SlotState;
    let other = booted.other();
    let why = match state.slot(booted).state {
        SlotState::Installed => Some(format!(
            "the booted slot {booted} is on trial and not committed yet"
        )),
        SlotState::Bad => Some(format!("the booted slot {booted} is recorded bad")),
        SlotState::Invalid => Some(format!("the booted slot {booted} is recorded invalid")),
        SlotState::Good | SlotState::Unknown => match booted_mark {
            Some(crate::boot::Mark::Bad) => {
                Some(format!("the bootloader marks the booted slot {booted} bad"))
            }
            _ => None,
        },
    };
    match why {
        None => Ok(()),
        Some(why) => Err(InstallError::SlotState(format!(
            "{why}: slot {other} is the only one known to boot, and an install would overwrite it. Commit slot {booted} first (tandem mark-good), or pass --force"
        ))),
    }
}

/// Kernel parameters for the initramfs's dm-verity set-up (docs/disk-layout.md),
/// from the `rootfs` image's verity data; see [`verity_kernel_args`].
/// `Ok(None)`: the bundle asks for no dm-verity.
pub fn verity_args(m: &crate::bundle::manifest::Manifest) -> Result<Option<String>, String> {
    let Some(img) = m.images.iter().find(|i| i.slot_class.as_str() == "rootfs") else {
        return Ok(None);
    };
    match img.verity.as_ref() {
        None => Ok(None),
        Some(v) => verity_kernel_args(v).map(Some),
    }
}

/// `tandem.verity.roothash=… tandem.verity.hashoffset=… tandem.verity.salt=…`,
/// or why the initramfs would refuse these parameters: the formatter of
/// `tandem-bootparams`, whose validator the initramfs parses them with.
pub fn verity_kernel_args(v: &crate::bundle::manifest::Verity) -> Result<String, String> {
    tandem_bootparams::kernel_args(
        &v.root_hash,
        v.hash_offset,
        &v.salt,
        v.data_block_size,
        v.hash_block_size,
        &v.hash_algorithm,
    )
    .map_err(|e| e.to_string())
}

/// The manifest's (validated) hex SHA-256 as bytes.
fn sha256_bytes(hex_digest: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    // The manifest validated 64 hex digits; anything else cannot match.
    if hex::decode_to_slice(hex_digest, &mut out).is_err() {
        out = [0xFF; 32];
    }
    out
}

/// The progress callback of image `index` being written.
fn writing<'p>(
    progress: &'p mut dyn FnMut(Progress<'_>),
    index: usize,
    class: &'p SlotClass,
    total: u64,
) -> impl FnMut(u64) + 'p {
    move |done| {
        progress(Progress::Writing {
            index,
            class,
            done,
            total,
        })
    }
}

/// One content-defined image of a remote bundle, fetched by range: what
/// the booted slot lacks, or its whole payload.
struct Fetch<'a> {
    source: &'a crate::fetch::Shared,
    table: &'a crate::bundle::chunks::ChunkList,
    payload_start: u64,
    target: SlotGroup,
    /// The target slot read back, for chunks already in place there.
    in_target: Option<&'a crate::sys::SlotReader>,
    cancel: Option<Arc<AtomicBool>>,
}

impl Fetch<'_> {
    /// Plans and writes the image; `have` is the booted slot and its index.
    fn write(
        &self,
        index: usize,
        img: &crate::bundle::manifest::Image,
        have: Option<(crate::sys::SlotReader, adaptive::SlotIndex)>,
        writer: &mut SlotWriter,
        progress: &mut dyn FnMut(Progress<'_>),
    ) -> Result<(pipeline::Written, adaptive::Stats), InstallError> {
        let (table, class) = (self.table, &img.slot_class);
        let plan = match &have {
            Some((_, ix)) => adaptive::plan(table, ix, &mut |i| self.in_place(i)),
            None => adaptive::Plan {
                local: vec![None; table.len() as usize],
                ranges: vec![(0, img.payload_size)],
                fetch: img.payload_size,
                reuse: 0,
            },
        };
        let full = have.is_none() || plan.worse_than_full(img.payload_size);
        progress(Progress::Planned {
            index,
            class,
            fetch: if full { img.payload_size } else { plan.fetch },
            reuse: if full { 0 } else { plan.reuse },
            full,
        });
        if full && have.is_some() {
            tracing::info!(%class, fetch = plan.fetch, payload = img.payload_size,
                "the booted slot has too little of this image; fetching it whole");
        } else if !full {
            tracing::info!(%class, fetch = plan.fetch, reuse = plan.reuse, ranges = plan.ranges.len(),
                "adaptive: fetching only what the booted slot lacks");
        }
        let mut report = writing(progress, index, class, img.size);
        let compressed = img.compression == Compression::Zstd;
        let mut stats = adaptive::Stats::default();
        let written = match have {
            Some((reader, _)) if !full => {
                let mut src = adaptive::Adaptive::new(
                    table,
                    &plan,
                    &reader,
                    self.source.clone(),
                    self.payload_start,
                    compressed,
                    self.cancel.clone(),
                )
                .with_target(self.in_target);
                let w = pipeline::stream_chunks(
                    table,
                    &mut src,
                    writer,
                    img.size,
                    decode_workers(),
                    &mut report,
                );
                stats += src.stats;
                w
            }
            _ => {
                stats.fetched += img.payload_size;
                stats.requests += 1;
                stats.full = true;
                self.whole(img, compressed, writer, &mut report)?
            }
        };
        let written = written.map_err(|e| image_error(index, class, self.target, e))?;
        Ok((written, stats))
    }

    /// Whether the target slot already holds chunk `i` where it belongs
    /// (never in the header region, which the pipeline zeroes first).
    fn in_place(&self, i: u64) -> bool {
        let (a, b) = self.table.span(i);
        let Some(t) = self.in_target.filter(|_| a >= pipeline::HEAD as u64) else {
            return false;
        };
        let mut buf = vec![0u8; (b - a) as usize];
        matches!(t.read_at(a, &mut buf), Ok(n) if n == buf.len())
            && <sha2::Sha256 as sha2::Digest>::digest(&buf).as_slice() == self.table.hash(i)
    }

    /// Streams the whole payload.
    fn whole(
        &self,
        img: &crate::bundle::manifest::Image,
        compressed: bool,
        writer: &mut SlotWriter,
        report: &mut dyn FnMut(u64),
    ) -> Result<Result<pipeline::Written, PipelineError>, InstallError> {
        let r = self
            .source
            .lock()
            .expect("no panics while held")
            .range(self.payload_start, self.payload_start + img.payload_size)?;
        let r: Box<dyn Read + Send> = match self.cancel.clone() {
            Some(flag) => Box::new(CancelReader { inner: r, flag }),
            None => r,
        };
        let mut src = pipeline::PayloadChunks::new(r, self.table, compressed);
        Ok(pipeline::stream_chunks(
            self.table,
            &mut src,
            writer,
            img.size,
            decode_workers(),
            report,
        ))
    }
}

/// Threads that decode framed zstd payloads: one per core but the one the
/// hash stage needs, at least one, at most four. (On this project's 2-vCPU
/// bench machine a second decoder made installs slower: bench/README.md.)
fn decode_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() - 1).clamp(1, 4))
}

fn device_error(group: SlotGroup, class: &SlotClass, source: SysError) -> InstallError {
    InstallError::Device {
        group,
        class: class.clone(),
        source,
    }
}

/// What a failed write of image `index` into `group` means.
fn image_error(
    index: usize,
    class: &SlotClass,
    group: SlotGroup,
    e: PipelineError,
) -> InstallError {
    match e {
        PipelineError::Hash { expected, actual } => InstallError::HashMismatch {
            index,
            class: class.clone(),
            group,
            expected,
            actual,
        },
        e => payload_error(index, class, e),
    }
}

/// Says that image `index` is written, synced and verified; its record.
fn image_done(
    index: usize,
    class: SlotClass,
    img: &crate::bundle::manifest::Image,
    progress: &mut dyn FnMut(Progress<'_>),
) -> ImageRecord {
    progress(Progress::ImageDone {
        index,
        class: &class,
    });
    ImageRecord {
        slot_class: class,
        size: img.size,
        sha256: img.sha256.clone(),
    }
}

fn payload_error(index: usize, class: &SlotClass, e: PipelineError) -> InstallError {
    if let PipelineError::Read { source, .. } = &e {
        if let Some(offset) = truncated_at(source) {
            return InstallError::Truncated {
                index,
                class: class.clone(),
                offset,
            };
        }
    }
    InstallError::Payload {
        index,
        class: class.clone(),
        source: e,
    }
}

/// What a progress display needs: overall percent, a stage name and a
/// one-line message. The daemon publishes it as its `Progress` property;
/// the CLI prints it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    pub percent: u32,
    /// `starting`, `verified`, `writing`, `synced` (one image written and
    /// verified), `done`, `failed`, `cancelled`. Every stage but `writing`
    /// is a milestone worth a line of its own.
    pub stage: String,
    pub message: String,
}

impl Snapshot {
    pub fn new(percent: u32, stage: &str, message: impl Into<String>) -> Snapshot {
        Snapshot {
            percent,
            stage: stage.into(),
            message: message.into(),
        }
    }

    pub fn is_milestone(&self) -> bool {
        self.stage != "writing"
    }
}

/// Folds [`Progress`] events into [`Snapshot`]s, percent over all images.
#[derive(Debug, Default)]
pub struct Tracker {
    total: u64,
    done_before: u64,
    image_total: u64,
    last: Snapshot,
}

impl Tracker {
    /// The new snapshot when something visible changed (a milestone, or
    /// the percent moved).
    pub fn update(&mut self, p: Progress<'_>) -> Option<Snapshot> {
        let next = match p {
            Progress::Verified {
                version,
                target,
                signers,
                total,
            } => {
                self.total = total;
                Snapshot::new(
                    0,
                    "verified",
                    format!("verified {version} ({signers} trusted signature(s)); writing slot group {target}"),
                )
            }
            Progress::Planned {
                index,
                class,
                fetch,
                reuse,
                full,
            } => Snapshot::new(
                self.percent(self.done_before),
                "planned",
                if full {
                    format!("image {index} ({class}): fetching all {} KiB", fetch >> 10)
                } else {
                    format!(
                        "image {index} ({class}): fetching {} KiB, reusing {} KiB from the booted slot",
                        fetch >> 10,
                        reuse >> 10
                    )
                },
            ),
            Progress::Writing {
                index,
                class,
                done,
                total,
            } => {
                self.image_total = total;
                Snapshot::new(
                    self.percent(self.done_before + done),
                    "writing",
                    format!(
                        "image {index} ({class}): {} / {} MiB",
                        done >> 20,
                        total >> 20
                    ),
                )
            }
            Progress::ImageDone { index, class } => {
                self.done_before += self.image_total;
                self.image_total = 0;
                Snapshot::new(
                    self.percent(self.done_before),
                    "synced",
                    format!("image {index} ({class}): written, synced, sha256 verified"),
                )
            }
        };
        if !next.is_milestone() && next.percent == self.last.percent && !self.last.is_milestone() {
            return None;
        }
        self.last = next.clone();
        Some(next)
    }

    fn percent(&self, done: u64) -> u32 {
        (done.saturating_mul(100) / self.total.max(1)).min(100) as u32
    }
}

#[cfg(test)]
mod verity_tests {
    use super::verity_args;
    use crate::bundle::manifest::{Compression, Image, Manifest, Verity, FORMAT};
    use crate::slot::SlotClass;

    fn manifest(images: &[(&str, Option<Verity>)]) -> Manifest {
        Manifest {
            format: FORMAT,
            version: "1.0.0".parse().unwrap(),
            compatible: "x".into(),
            security_epoch: 0,
            created: "2026-11-26T00:00:00Z".into(),
            description: None,
            features: vec![],
            images: images
                .iter()
                .map(|(c, v)| Image {
                    slot_class: SlotClass::new(c).unwrap(),
                    group: None,
                    size: 8192,
                    sha256: "00".repeat(32),
                    compression: Compression::None,
                    payload_size: 8192,
                    frame_size: None,
                    chunks: None,
                    cdc: None,
                    verity: v.clone(),
                })
                .collect(),
        }
    }

    fn verity(salt: &str, alg: &str, block: u32) -> Verity {
        Verity {
            root_hash: "12".repeat(32),
            salt: salt.into(),
            hash_offset: 4096,
            data_block_size: block,
            hash_block_size: 4096,
            hash_algorithm: alg.into(),
        }
    }

    #[test]
    fn kernel_parameters_from_the_rootfs_image() {
        let h = "12".repeat(32);
        type Images<'a> = Vec<(&'a str, Option<Verity>)>;
        let cases: Vec<(Images, Option<String>)> = vec![
            (vec![("rootfs", None)], None),
            (
                vec![("rootfs", Some(verity("ab", "sha256", 4096)))],
                Some(format!("tandem.verity.roothash={h} tandem.verity.hashoffset=4096 tandem.verity.salt=ab")),
            ),
            (
                vec![("rootfs", Some(verity("", "sha256", 4096)))],
                Some(format!("tandem.verity.roothash={h} tandem.verity.hashoffset=4096 tandem.verity.salt=-")),
            ),
            // Only the rootfs image's verity reaches the command line.
            (vec![("boot", Some(verity("ab", "sha256", 4096))), ("rootfs", None)], None),
        ];
        for (images, want) in cases {
            assert_eq!(
                verity_args(&manifest(&images)).ok().flatten(),
                want,
                "{images:?}"
            );
        }
        // Parameters the initramfs would refuse are an error, not silence.
        for bad in [verity("ab", "sha512", 4096), verity("ab", "sha256", 1024)] {
            let e = verity_args(&manifest(&[("rootfs", Some(bad))])).unwrap_err();
            assert!(e.contains("not supported: the initramfs uses"), "{e}");
        }
    }
}

//! `tandem keygen` and `tandem bundle ...`: the build-side commands.

use std::io::Read;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};
use sha2::{Digest, Sha256};

use crate::bundle::chunks::{ChunkCheck, ChunkMismatch};
use crate::bundle::keys::{self, Keyring};
use crate::bundle::manifest::Compression;
use crate::bundle::writer::{self, BundleMeta, CreateOptions, ImageInput};
use crate::bundle::{BundleError, UnverifiedBundle};
use crate::config::{ConfigError, Settings};
use crate::fetch::{self, Source};
use crate::ops::Error;
use crate::slot::{SlotClass, SlotGroup};
use crate::sys;

#[derive(Subcommand, Debug)]
pub(super) enum BundleCmd {
    /// Build a bundle from image files, streaming
    Create(CreateArgs),
    /// Add signatures to a bundle (in place unless --output is given)
    Sign {
        /// The bundle file
        bundle: PathBuf,
        /// Signing key; repeat to sign with several
        #[arg(long = "key", required = true)]
        keys: Vec<PathBuf>,
        /// Write the signed bundle here instead of in place
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Check signatures against a keyring and every payload's hash
    Verify {
        /// A path, or any source `tandem install` takes
        bundle: String,
        /// Keyring directory [default: from the configuration]
        #[arg(long)]
        keyring: Option<PathBuf>,
        /// Distinct trusted signatures required [default: from the
        /// configuration; 1 with --keyring]
        #[arg(long)]
        threshold: Option<usize>,
    },
    /// Push a bundle to an OCI registry, as an artifact devices install
    /// with `tandem install oci://…`
    Push {
        /// The bundle file
        bundle: PathBuf,
        /// oci://HOST[:PORT]/REPOSITORY:TAG
        reference: String,
        /// Speak plain HTTP to this registry (also: [oci] insecure_registries)
        #[arg(long)]
        plain_http: bool,
        /// Credentials: a containers auth.json or docker config.json
        /// [default: [oci] auth_file, else the usual places]
        #[arg(long)]
        auth_file: Option<PathBuf>,
        /// PEM CAs to trust for the registry's TLS [default: [http] ca_file]
        #[arg(long)]
        ca_file: Option<PathBuf>,
    },
    /// What a device running OLD (a bundle or a slot image) would fetch
    /// of NEW in an adaptive install (signatures not checked)
    Diff {
        /// What the device runs: a bundle or a slot image
        old: PathBuf,
        /// The bundle it would install
        new: PathBuf,
        /// The group it installs into (it runs OLD in the other): decides
        /// which of a bundle's per-group images count
        #[arg(long, default_value = "b", value_name = "a|b")]
        into: SlotGroup,
    },
    /// Print the manifest and signer key ids (not verified)
    Info {
        /// A path, or any source `tandem install` takes
        bundle: String,
        /// Print the manifest and key ids as JSON
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
pub(super) struct CreateArgs {
    /// Where to write the bundle
    #[arg(long, short)]
    output: PathBuf,
    /// Bundle version (semver)
    #[arg(long)]
    version: semver::Version,
    /// Product/hardware string the device must match
    #[arg(long)]
    compatible: String,
    /// Security epoch: devices refuse a bundle below their epoch floor
    /// (docs/security.md)
    #[arg(long, default_value_t = 0)]
    security_epoch: u64,
    /// Free text stored in the manifest
    #[arg(long)]
    description: Option<String>,
    /// CLASS=PATH, in install order; repeat for several slot classes.
    /// CLASS@a=PATH and CLASS@b=PATH give one image per slot group (a
    /// unified kernel image whose signed command line names its slot)
    #[arg(long = "image", required = true, value_name = "CLASS[@GROUP]=PATH")]
    images: Vec<String>,
    /// How image payloads are stored
    #[arg(long, value_enum, default_value_t = CompressionArg::None)]
    compression: CompressionArg,
    /// How images are cut into verifiable chunks: content-defined (what
    /// adaptive updates fetch by range) or fixed 1 MiB chunks (what agents
    /// before adaptive updates read)
    #[arg(long, value_enum, default_value_t = ChunkingArg::Cdc)]
    chunking: ChunkingArg,
    /// Creation time, Unix seconds [default: SOURCE_DATE_EPOCH, else now]
    #[arg(long)]
    created: Option<u64>,
    /// Threads compressing zstd frames [default: one per CPU]. The bundle
    /// is the same, byte for byte, whatever the number.
    #[arg(long, short = 'j', value_name = "N")]
    jobs: Option<NonZeroUsize>,
    /// Signing key; repeat to sign with several. None makes an unsigned bundle.
    #[arg(long = "key")]
    keys: Vec<PathBuf>,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub(super) enum ChunkingArg {
    /// Content-defined chunks of 4-64 KiB (8 KiB on average), each its own
    /// zstd frame, with a chunk table
    Cdc,
    /// 1 MiB chunks (zstd: 1 MiB frames) with a chunk index
    Fixed,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub(super) enum CompressionArg {
    /// Stored as they are
    None,
    /// zstd: one frame per chunk (see --chunking), decoded without a copy on install
    Zstd,
}

pub(super) fn run(
    cmd: BundleCmd,
    load: &dyn Fn() -> Result<Settings, ConfigError>,
) -> Result<(), Error> {
    match cmd {
        BundleCmd::Create(a) => create(a),
        BundleCmd::Sign {
            bundle,
            keys,
            output,
        } => {
            let keys = read_keys(&keys)?;
            let out = output.unwrap_or_else(|| bundle.clone());
            let sigs = writer::sign(&bundle, &out, &keys)?;
            println!("{}: {} signature(s)", out.display(), sigs.signatures.len());
            Ok(())
        }
        BundleCmd::Verify {
            bundle,
            keyring,
            threshold,
        } => {
            let (ring, threshold, net) = match keyring {
                Some(dir) => (
                    crate::install::load_keyring(&dir)?,
                    threshold.unwrap_or(1),
                    Net::default(),
                ),
                None => {
                    let s = load()?;
                    (
                        crate::install::load_keyring(&s.keyring_dir)?,
                        threshold.unwrap_or(s.threshold),
                        Net {
                            http: s.http,
                            oci: s.oci,
                        },
                    )
                }
            };
            verify(&bundle, &ring, threshold, &net)
        }
        BundleCmd::Info { bundle, json } => info(&bundle, json, &Net::load(load)),
        BundleCmd::Diff { old, new, into } => diff(&old, &new, into),
        BundleCmd::Push {
            bundle,
            reference,
            plain_http,
            auth_file,
            ca_file,
        } => {
            let mut net = Net::load(load);
            if let Some(p) = auth_file {
                net.oci.auth_file = Some(p);
            }
            if let Some(p) = ca_file {
                net.http.ca_file = Some(p);
            }
            push(&bundle, &reference, plain_http, &net)
        }
    }
}

pub(super) fn keygen(prefix: &Path, comment: &str) -> Result<(), Error> {
    let seed = sys::random_seed().map_err(|e| Error::Other(format!("random source: {e}")))?;
    let sk = keys::keypair_from_seed(seed);
    let with = |ext: &str| {
        let mut p = prefix.as_os_str().to_owned();
        p.push(ext);
        PathBuf::from(p)
    };
    let (kp, pp) = (with(".key"), with(".pub"));
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |e: std::io::Error| Error::Other(format!("{}: {e}", p.display()))
    };
    sys::write_private_new(&kp, keys::format_secret(&sk, comment).as_bytes()).map_err(io(&kp))?;
    std::fs::write(&pp, keys::format_public(&sk.verifying_key(), comment)).map_err(io(&pp))?;
    println!(
        "key id {}\nsecret key: {} (keep it off devices)\npublic key: {} (install into the keyring directory)",
        keys::key_id(&sk.verifying_key()),
        kp.display(),
        pp.display()
    );
    Ok(())
}

fn read_keys(paths: &[PathBuf]) -> Result<Vec<ed25519_dalek::SigningKey>, Error> {
    paths
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p)
                .map_err(|e| Error::Other(format!("{}: {e}", p.display())))?;
            Ok(keys::parse_secret(&text, &p.display().to_string())?)
        })
        .collect()
}

fn create(a: CreateArgs) -> Result<(), Error> {
    let (compression, frame_size) = match a.compression {
        CompressionArg::None => (Compression::None, None),
        CompressionArg::Zstd => (Compression::Zstd, Some(writer::FRAME_SIZE)),
    };
    let (frame_size, chunk_size, cdc) = match a.chunking {
        ChunkingArg::Cdc => (None, None, Some(crate::bundle::cdc::DEFAULT)),
        ChunkingArg::Fixed => (frame_size, Some(writer::CHUNK_SIZE), None),
    };
    let inputs = a
        .images
        .iter()
        .map(|spec| {
            let (class, path) = spec.split_once('=').ok_or_else(|| {
                Error::Usage(format!("--image {spec:?}: expected CLASS[@GROUP]=PATH"))
            })?;
            let (class, group) = match class.split_once('@') {
                None => (class, None),
                Some((c, g)) => (
                    c,
                    Some(g.parse::<SlotGroup>().map_err(|e| {
                        Error::Usage(format!("--image {spec:?}: group {g:?}: {e}"))
                    })?),
                ),
            };
            Ok(ImageInput {
                group,
                slot_class: SlotClass::new(class)
                    .map_err(|e| Error::Usage(format!("--image {spec:?}: {e}")))?,
                path: PathBuf::from(path),
                compression,
                frame_size,
                chunk_size,
                cdc,
                verity: None,
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let created = match a.created {
        Some(t) => t,
        None => match std::env::var("SOURCE_DATE_EPOCH") {
            Ok(v) => v
                .parse()
                .map_err(|_| Error::Usage(format!("SOURCE_DATE_EPOCH={v:?} is not a number")))?,
            Err(_) => sys::now_unix(),
        },
    };
    let keys = read_keys(&a.keys)?;
    let meta = BundleMeta {
        version: a.version,
        compatible: a.compatible,
        security_epoch: a.security_epoch,
        created_unix: created,
        description: a.description,
    };
    let opts = match a.jobs {
        Some(n) => CreateOptions { jobs: n.get() },
        None => CreateOptions::default(),
    };
    let m = writer::create_with(&a.output, &meta, &inputs, &keys, &opts)?;
    println!(
        "{}: version {} for {:?}, {} image(s), {} signature(s)",
        a.output.display(),
        m.version,
        m.compatible,
        m.images.len(),
        keys.len()
    );
    if keys.is_empty() {
        eprintln!("warning: the bundle is unsigned; sign it with `tandem bundle sign` before use");
    }
    Ok(())
}

/// The transport settings a build-side command reads a source with.
#[derive(Default)]
pub(super) struct Net {
    http: crate::config::HttpSettings,
    oci: crate::config::OciSettings,
}

impl Net {
    /// From the configuration if there is one, else the defaults.
    pub(super) fn load(load: &dyn Fn() -> Result<Settings, ConfigError>) -> Net {
        match load() {
            Ok(s) => Net {
                http: s.http,
                oci: s.oci,
            },
            Err(_) => Net::default(),
        }
    }
}

fn open_source(src: &str, net: &Net) -> Result<Box<dyn Read + Send>, Error> {
    Ok(fetch::open(&Source::parse(src)?, &net.http, &net.oci)?.stream()?)
}

fn verify(src: &str, ring: &Keyring, threshold: usize, net: &Net) -> Result<(), Error> {
    let mut b = UnverifiedBundle::open(open_source(src, net)?)?.verify(ring, threshold)?;
    let signers: Vec<String> = b.signers().iter().map(|k| k.to_string()).collect();
    let mut buf = vec![0u8; 1 << 20];
    while let Some(next) = b.next_image()? {
        let (index, img) = (next.index, next.image);
        let mut r = crate::bundle::decode(next.payload, &img)
            .map_err(|e| Error::Refused(format!("image {index}: {e}")))?;
        let mut check = next.chunks.as_ref().map(ChunkCheck::new);
        let chunk_error =
            |e: ChunkMismatch| Error::Refused(format!("image {index} ({}): {e}", img.label()));
        let mut h = Sha256::new();
        let mut n: u64 = 0;
        loop {
            let k =
                r.read(&mut buf)
                    .map_err(|e| match crate::bundle::reader::truncated_at(&e) {
                        Some(offset) => Error::Bundle(BundleError::Truncated {
                            offset,
                            what: format!("image {index}"),
                        }),
                        None => Error::Bundle(BundleError::Io {
                            offset: 0,
                            source: e,
                        }),
                    })?;
            if k == 0 {
                break;
            }
            n += k as u64;
            if n > img.size {
                return Err(Error::Refused(format!(
                    "image {index} ({}): larger than the declared {} bytes",
                    img.label(),
                    img.size
                )));
            }
            h.update(&buf[..k]);
            if let Some(c) = &mut check {
                c.update(&buf[..k]).map_err(chunk_error)?;
            }
        }
        if let Some(c) = &check {
            c.finish().map_err(chunk_error)?;
        }
        let got = hex::encode(h.finalize());
        if n != img.size || got != img.sha256 {
            return Err(Error::Refused(format!(
                "image {index} ({}): hash mismatch: manifest {} / {} bytes, payload {got} / {n} bytes",
                img.label(), img.sha256, img.size
            )));
        }
        println!(
            "image {index} ({}): {} bytes, sha256 ok{}",
            img.label(),
            img.size,
            match &next.chunks {
                Some(c) => format!(", {} chunks ok", c.len()),
                None => String::new(),
            }
        );
    }
    println!(
        "bundle OK: version {}, signed by {}",
        b.manifest().version,
        signers.join(", ")
    );
    Ok(())
}

fn push(bundle: &Path, reference: &str, plain_http: bool, net: &Net) -> Result<(), Error> {
    let r = match Source::parse(reference)? {
        Source::Oci(r) => r,
        _ => {
            return Err(Error::Usage(format!(
                "{reference:?}: a push target is oci://HOST[:PORT]/REPOSITORY:TAG"
            )))
        }
    };
    // What is pushed must at least be a bundle (signatures are the
    // device's business: a registry may hold bundles for other keyrings).
    let f = std::fs::File::open(bundle)
        .map_err(|e| Error::Other(format!("{}: {e}", bundle.display())))?;
    let b = UnverifiedBundle::open(std::io::BufReader::new(f))?;
    let m = b.manifest().clone();
    let mut oci = net.oci.clone();
    if plain_http && !oci.insecure_registries.contains(&r.registry) {
        oci.insecure_registries.push(r.registry.clone());
    }
    let version = m.version.to_string();
    let p = fetch::oci::push(
        bundle,
        &r,
        &net.http,
        &oci,
        &[
            ("org.opencontainers.image.version", &version),
            ("org.opencontainers.image.created", &m.created),
            ("dev.tandem.compatible", &m.compatible),
        ],
    )?;
    println!(
        "oci://{r}@{}: bundle {} ({} bytes, blob {}), version {version} for {:?}",
        p.manifest_digest,
        bundle.display(),
        p.size,
        p.blob_digest,
        m.compatible
    );
    Ok(())
}

/// `tandem bundle diff`: what an adaptive install into `into` would fetch
/// of NEW on a device whose other group (the booted one, whose chunks it
/// reuses) holds OLD. A per-group image counts only for its own group: of
/// OLD the booted group's, of NEW the target's.
fn diff(old: &Path, new: &Path, into: SlotGroup) -> Result<(), Error> {
    let booted = into.other();
    use crate::install::adaptive::{self, SlotIndex};
    let open = |p: &Path| {
        std::fs::File::open(p).map_err(|e| Error::Other(format!("{}: {e}", p.display())))
    };
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |e: std::io::Error| Error::Other(format!("{}: {e}", p.display()))
    };
    let new_len = open(new)?.metadata().map_err(io(new))?.len();
    let nb = UnverifiedBundle::open(std::io::BufReader::new(open(new)?))?;
    let head = nb.offset();
    let mut nb = nb.unchecked();
    let mut tables = Vec::new();
    while let Some(next) = nb.next_image()? {
        tables.push((next.image.clone(), next.chunks.clone()));
    }
    // What the device has, per slot class, cut with NEW's chunking.
    let mut have = std::collections::BTreeMap::new();
    // NEW's chunking and size of the image of that class.
    let params = |class: &SlotClass| {
        tables
            .iter()
            .find(|(i, _)| &i.slot_class == class && i.applies_to(into))
            .and_then(|(i, _)| i.cdc.as_ref().map(|c| (c.params(), i.size)))
    };
    match UnverifiedBundle::open(std::io::BufReader::new(open(old)?)) {
        Ok(ob) => {
            let mut ob = ob.unchecked();
            while let Some(next) = ob.next_image()? {
                if !next.image.applies_to(booted) {
                    continue;
                }
                let Some((p, size)) = params(&next.image.slot_class) else {
                    continue;
                };
                let class = next.image.slot_class.clone();
                let r = crate::bundle::decode(next.payload, &next.image)
                    .map_err(|e| Error::Other(format!("{}: {e}", old.display())))?;
                have.insert(class, SlotIndex::from_reader(r, size, &p).map_err(io(old))?);
            }
        }
        Err(_) => {
            // A slot image: for the first image of NEW that the install writes.
            let (img, _) = tables
                .iter()
                .find(|(i, _)| i.applies_to(into))
                .ok_or_else(|| Error::Other(format!("NEW has no images for group {into}")))?;
            if let Some((p, size)) = params(&img.slot_class) {
                let r = std::io::BufReader::new(open(old)?);
                have.insert(
                    img.slot_class.clone(),
                    SlotIndex::from_reader(r, size, &p).map_err(io(old))?,
                );
            }
        }
    }
    let mut total = crate::fetch::Chained::fetched_for(head, adaptive::HEAD_WINDOW).min(new_len);
    let mut requests = 1;
    let mut full_any = false;
    for (index, (img, table)) in tables.iter().enumerate() {
        let class = &img.slot_class;
        let label = img.label();
        if !img.applies_to(into) {
            println!("image {index} ({label}): for the other group: not fetched by an install into {into}");
            continue;
        }
        let (Some(t), Some(_)) = (table.as_ref().filter(|t| t.is_table()), img.cdc.as_ref()) else {
            println!("image {index} ({label}): no chunk table: a device streams the whole bundle");
            full_any = true;
            continue;
        };
        if have.get(class).is_some_and(|h| h.holds(img)) {
            println!("image {index} ({label}): the device holds it already: nothing to fetch");
            continue;
        }
        total += 1024 + t.len() * crate::bundle::chunks::TABLE_ENTRY as u64;
        requests += 1;
        let empty = SlotIndex::of([]);
        let plan = adaptive::plan(t, have.get(class).unwrap_or(&empty), &mut |_| false);
        let full = plan.worse_than_full(img.payload_size);
        full_any |= full;
        let (fetch, reqs) = if full {
            (img.payload_size, 1)
        } else {
            (plan.fetch, plan.ranges.len() as u64)
        };
        total += fetch;
        requests += reqs;
        println!(
            "image {index} ({label}): {} chunks; reuse {} of {} bytes ({:.1} %); fetch {} of {} payload bytes in {} range(s){}",
            t.len(),
            plan.reuse,
            img.size,
            100.0 * plan.reuse as f64 / img.size.max(1) as f64,
            fetch,
            img.payload_size,
            reqs,
            if full { " (the whole payload: too little to reuse)" } else { "" }
        );
    }
    if full_any && tables.iter().any(|(i, _)| i.cdc.is_none()) {
        total = new_len;
        requests = 1;
    }
    let groups = if tables.iter().any(|(i, _)| i.group.is_some()) {
        format!(" in group {booted}, installing into {into},")
    } else {
        String::new()
    };
    println!(
        "a device running {}{groups} fetches {total} of {new_len} bytes ({:.2} %) in {requests} request(s)",
        old.display(),
        100.0 * total as f64 / new_len.max(1) as f64
    );
    Ok(())
}

fn info(src: &str, json: bool, net: &Net) -> Result<(), Error> {
    let b = UnverifiedBundle::open(open_source(src, net)?)?;
    let m = b.manifest();
    let signers: Vec<&str> = b
        .signatures()
        .signatures
        .iter()
        .map(|s| s.key_id.as_str())
        .collect();
    if json {
        let v = serde_json::json!({
            "info_version": 1,
            "verified": false,
            "signatures": signers,
            "manifest": m,
        });
        println!("{}", serde_json::to_string_pretty(&v).expect("json"));
        return Ok(());
    }
    // Not verified: whatever the bundle says is shown escaped.
    let p = crate::status::printable;
    println!("version:        {}", m.version);
    println!("compatible:     {}", p(&m.compatible));
    println!("security epoch: {}", m.security_epoch);
    println!("created:        {}", p(&m.created));
    if let Some(d) = &m.description {
        println!("description:    {}", p(d));
    }
    println!(
        "signatures:     {} (not verified here; use `tandem bundle verify`)",
        if signers.is_empty() {
            "none".into()
        } else {
            p(&signers.join(", "))
        }
    );
    for (i, img) in m.images.iter().enumerate() {
        let compression = match (img.compression, img.frame_size) {
            (Compression::None, _) => "none".to_string(),
            (Compression::Zstd, None) => "zstd (one stream)".to_string(),
            (Compression::Zstd, Some(f)) => format!("zstd ({} KiB frames)", f >> 10),
        };
        println!(
            "image {i}: {:<8} {} bytes, {compression}, payload {} bytes, sha256 {}",
            img.slot_class.as_str(),
            img.size,
            img.payload_size,
            p(&img.sha256)
        );
    }
    Ok(())
}

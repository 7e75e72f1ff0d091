//! Test fixture: a device with file-backed A/B slots, keys, config and a
//! state directory in a temporary directory; helpers to build bundles, both
//! well-formed (through the library's writer) and crafted by hand.
#![allow(dead_code)]

pub mod channel;
pub mod fleetlock;
pub mod goosebit;
pub mod http;
pub mod pytuf;
pub mod tls;
pub mod tools;

use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use sha2::{Digest, Sha256};
use tandem::bundle::keys::{self, keypair_from_seed};
use tandem::bundle::manifest::{member_name, Compression, Image, Manifest, FORMAT};
use tandem::bundle::reader::{MANIFEST_NAME, SIGNATURES_NAME};
use tandem::bundle::signature::SignatureList;
use tandem::bundle::writer::{self, ArchiveWriter, BundleMeta, ImageInput};
use tandem::config::{self, Settings};
use tandem::install::{self, Context, InstallError, Options, Report};
use tandem::slot::{SlotClass, SlotGroup};
use tandem::state::{State, Store};

pub const SLOT_SIZE: u64 = 4 << 20;
/// zstd frames in test bundles: small, so that test images span many.
pub const TEST_FRAME_SIZE: u32 = 4096;
/// Chunk index entries in test bundles: likewise.
pub const TEST_CHUNK_SIZE: u32 = 8192;

pub struct Fx {
    pub dir: tempfile::TempDir,
    pub key: SigningKey,
    pub other_key: SigningKey,
    pub classes: Vec<String>,
    /// Appended as a local drop-in (etc/tandem/conf.d).
    pub extra_config: String,
    /// Bundles made with content-defined chunks instead of fixed ones.
    pub cdc: Option<tandem::bundle::cdc::Params>,
    /// Appended to the image's drop-in (usr/lib/tandem/conf.d): what only
    /// the image may set (keyring, image version and epoch, verity policy).
    pub extra_image_config: String,
}

/// A TCP port on 127.0.0.1 that was free a moment ago (for a server
/// started as a separate process).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    let mut x: u32 = 0x9E37_79B9 ^ seed as u32;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

pub fn sha(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

impl Fx {
    /// A device booted from slot a, with the given slot classes.
    pub fn new(classes: &[&str]) -> Fx {
        let dir = tempfile::tempdir().unwrap();
        let key = keypair_from_seed([1; 32]);
        let other_key = keypair_from_seed([2; 32]);
        let p = dir.path();
        std::fs::create_dir(p.join("keys")).unwrap();
        std::fs::write(
            p.join("keys/vendor.pub"),
            keys::format_public(&key.verifying_key(), "vendor"),
        )
        .unwrap();
        std::fs::write(p.join("cmdline"), "console=ttyS0 tandem.slot=a ro\n").unwrap();
        for (i, c) in classes.iter().enumerate() {
            std::fs::write(
                p.join(format!("{c}-a.img")),
                pattern(SLOT_SIZE as usize, 0xA0 + i as u8),
            )
            .unwrap();
            std::fs::write(
                p.join(format!("{c}-b.img")),
                pattern(SLOT_SIZE as usize, 0xB0 + i as u8),
            )
            .unwrap();
        }
        Fx {
            dir,
            key,
            other_key,
            classes: classes.iter().map(|s| s.to_string()).collect(),
            extra_config: String::new(),
            cdc: None,
            extra_image_config: String::new(),
        }
    }

    /// A device that trusts both test keys and requires two signatures.
    pub fn two_trusted_keys_threshold_two() -> Fx {
        let mut fx = Fx::new(&["rootfs"]);
        std::fs::write(
            fx.path("keys/second.pub"),
            keys::format_public(&fx.other_key.verifying_key(), ""),
        )
        .unwrap();
        fx.extra_image_config = "[keyring]\nthreshold = 2\n".into();
        fx
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `tandem --config FX/tandem.toml --root FX`, for the caller to add
    /// its flags and arguments to.
    pub fn tandem(&self) -> std::process::Command {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_tandem"));
        c.arg("--config")
            .arg(self.path("tandem.toml"))
            .arg("--root")
            .arg(self.dir.path());
        c
    }

    /// The local main file: everything but what decides trust.
    pub fn config_text(&self) -> String {
        let p = self.dir.path().display();
        let mut s = format!(
            "compatible = \"tandem-test\"\n[state]\ndirectory = \"{p}/state\"\n[boot]\ncmdline = \"{p}/cmdline\"\n"
        );
        for c in &self.classes {
            for g in ["a", "b"] {
                s +=
                    &format!("[slots.{g}.{c}]\ndevice = \"{p}/{c}-{g}.img\"\nsize = {SLOT_SIZE}\n");
            }
        }
        s
    }

    /// The image's drop-in: its keyring and version (`extra_image_config`
    /// goes into a second, later one).
    pub fn image_config_text(&self) -> String {
        let p = self.dir.path().display();
        format!("[keyring]\ndirectory = \"{p}/keys\"\n[image]\nversion = \"1.0.0\"\n")
    }

    /// Where the image's drop-in lives under the fixture root (`--root`).
    pub const IMAGE_DROPIN: &'static str = "usr/lib/tandem/conf.d/00-test-image.toml";
    pub const IMAGE_EXTRA: &'static str = "usr/lib/tandem/conf.d/50-test-image.toml";

    /// Writes the main file (returned; pass it with `--config`, and the
    /// fixture directory with `--root`), the image drop-in and the local one.
    pub fn write_config(&self) -> PathBuf {
        let path = self.path("tandem.toml");
        std::fs::write(&path, self.config_text()).unwrap();
        let image = self.path(Self::IMAGE_DROPIN);
        std::fs::create_dir_all(image.parent().unwrap()).unwrap();
        std::fs::write(&image, self.image_config_text()).unwrap();
        if !self.extra_image_config.is_empty() {
            std::fs::write(self.path(Self::IMAGE_EXTRA), &self.extra_image_config).unwrap();
        }
        if !self.extra_config.is_empty() {
            std::fs::create_dir_all(self.path("etc/tandem/conf.d")).unwrap();
            std::fs::write(
                self.path("etc/tandem/conf.d/50-test.toml"),
                &self.extra_config,
            )
            .unwrap();
        }
        path
    }

    pub fn settings(&self) -> Settings {
        let mut sources = vec![
            config::Source::local(self.path("tandem.toml"), self.config_text()),
            config::Source::image(self.path(Self::IMAGE_DROPIN), self.image_config_text()),
        ];
        if !self.extra_image_config.is_empty() {
            sources.push(config::Source::image(
                self.path(Self::IMAGE_EXTRA),
                self.extra_image_config.clone(),
            ));
        }
        if !self.extra_config.is_empty() {
            sources.push(config::Source::local(
                self.path("extra.toml"),
                self.extra_config.clone(),
            ));
        }
        config::parse(&sources).unwrap()
    }

    pub fn write_image(&self, name: &str, data: &[u8]) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, data).unwrap();
        path
    }

    /// A well-formed signed bundle made by the library writer.
    pub fn bundle(
        &self,
        name: &str,
        version: &str,
        images: &[(&str, &[u8], Compression)],
    ) -> PathBuf {
        self.bundle_with(
            name,
            version,
            0,
            "tandem-test",
            images,
            std::slice::from_ref(&self.key),
        )
    }

    pub fn bundle_with(
        &self,
        name: &str,
        version: &str,
        epoch: u64,
        compatible: &str,
        images: &[(&str, &[u8], Compression)],
        keys: &[SigningKey],
    ) -> PathBuf {
        let inputs: Vec<ImageInput> = images
            .iter()
            .enumerate()
            .map(|(i, (spec, data, compression))| {
                // "uki@b": an image for one slot group.
                let (class, group) = match spec.split_once('@') {
                    Some((c, g)) => (c, Some(g.parse().unwrap())),
                    None => (*spec, None),
                };
                ImageInput {
                    slot_class: SlotClass::new(class).unwrap(),
                    path: self.write_image(&format!("{name}.{i}.img"), data),
                    compression: *compression,
                    frame_size: Some(TEST_FRAME_SIZE).filter(|_| self.cdc.is_none()),
                    chunk_size: Some(TEST_CHUNK_SIZE).filter(|_| self.cdc.is_none()),
                    cdc: self.cdc,
                    verity: None,
                    group,
                }
            })
            .collect();
        let out = self.path(name);
        let meta = BundleMeta {
            version: version.parse().unwrap(),
            compatible: compatible.into(),
            security_epoch: epoch,
            created_unix: 1_795_651_200,
            description: None,
        };
        writer::create(&out, &meta, &inputs, keys).unwrap();
        out
    }

    pub fn install(&self, bundle: &Path) -> Result<Report, InstallError> {
        self.install_opts(bundle, &Options::default())
    }

    pub fn install_opts(&self, bundle: &Path, opts: &Options) -> Result<Report, InstallError> {
        let settings = self.settings();
        let ctx = Context {
            settings: &settings,
            cmdline: std::fs::read_to_string(self.path("cmdline")).unwrap(),
            now: 1_795_651_200,
        };
        let src = tandem::fetch::Source::File(bundle.to_path_buf());
        let http = settings.http.clone();
        install::install(
            &ctx,
            &bundle.display().to_string(),
            || tandem::fetch::open(&src, &http, &Default::default()),
            opts,
            None,
            &mut |_| {},
        )
    }

    pub fn slot(&self, g: SlotGroup, class: &str) -> Vec<u8> {
        std::fs::read(self.path(&format!("{class}-{g}.img"))).unwrap()
    }

    pub fn state(&self) -> State {
        Store::new(&self.path("state")).load().unwrap()
    }

    /// Snapshot of every slot's bytes, for "nothing else changed" checks.
    pub fn snapshot(&self) -> Vec<(SlotGroup, String, String)> {
        let mut v = vec![];
        for c in &self.classes {
            for g in SlotGroup::ALL {
                v.push((g, c.clone(), sha(&self.slot(g, c))));
            }
        }
        v
    }
}

/// A manifest for `images` (data given uncompressed) with the usual fields.
pub fn manifest_for(version: &str, images: &[(&str, &[u8])]) -> Manifest {
    Manifest {
        format: FORMAT,
        version: version.parse().unwrap(),
        compatible: "tandem-test".into(),
        security_epoch: 0,
        created: "2026-11-26T00:00:00Z".into(),
        description: None,
        features: vec![],
        images: images
            .iter()
            .map(|(c, d)| Image {
                slot_class: SlotClass::new(c).unwrap(),
                group: None,
                size: d.len() as u64,
                sha256: sha(d),
                compression: Compression::None,
                payload_size: d.len() as u64,
                frame_size: None,
                chunks: None,
                cdc: None,
                verity: None,
            })
            .collect(),
    }
}

pub fn sign(manifest_bytes: &[u8], keys: &[&SigningKey]) -> Vec<u8> {
    let mut l = SignatureList::default();
    for k in keys {
        l.sign(manifest_bytes, k);
    }
    l.to_bytes()
}

/// Builds an archive from raw members, in order, with the end marker.
pub fn raw_archive(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut a = ArchiveWriter::new(Vec::new(), 0);
    for (name, data) in members {
        a.bytes(name, data).unwrap();
    }
    a.finish().unwrap()
}

/// A well-formed, signed bundle as bytes (uncompressed payloads).
pub fn signed_bundle(m: &Manifest, payloads: &[&[u8]], key: &SigningKey) -> Vec<u8> {
    let mb = m.to_bytes();
    let sb = sign(&mb, &[key]);
    let names: Vec<String> = m
        .images
        .iter()
        .enumerate()
        .map(|(i, img)| member_name(i, img))
        .collect();
    let mut members: Vec<(&str, &[u8])> = vec![(MANIFEST_NAME, &mb), (SIGNATURES_NAME, &sb)];
    for (n, p) in names.iter().zip(payloads) {
        members.push((n, p));
    }
    raw_archive(&members)
}

/// A command's stdout and stderr, for asserts and their messages.
pub fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

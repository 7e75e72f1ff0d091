//! Configuration: TOML files merged from drop-in directories, validated once
//! into [`Settings`]. See docs/config.md.
//!
//! Order (later wins, key by key; tables merge, other values replace):
//! 1. the main file (`/etc/tandem/tandem.toml`),
//! 2. `/usr/lib/tandem/conf.d/*.toml`,
//! 3. `/run/tandem/conf.d/*.toml`,
//! 4. `/etc/tandem/conf.d/*.toml`,
//!
//! each directory's files in byte order of their names. A file that fails to
//! parse or has an unknown key is an error naming the file and the key.
//!
//! # Trust
//!
//! Only the verified image decides what this device trusts: the keyring
//! (`keyring.*`), the running image's version and security epoch
//! (`image.*`) and the dm-verity policy (`boot.require_verity`) are read
//! from `/usr/lib/tandem/conf.d` alone ([`Origin::Image`]). `/etc` and
//! `/run` are writable state: a file there that sets one of these keys is
//! an error, so that a key planted once cannot outlive every update. An
//! image may opt in to a local keyring with `[keyring] allow_local = true`;
//! then local files may set `keyring.directory` and `keyring.threshold`.
//! Every file read must be owned by root (or by the user running tandem)
//! and not be writable by group or others.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::slot::{SlotClass, SlotGroup};

mod channel;
mod hawkbit;
pub use channel::{ChannelSettings, Strategy};
pub use hawkbit::{HawkbitSettings, Secret, Token};

pub const MAIN_FILE: &str = "etc/tandem/tandem.toml";
pub const DROPIN_DIRS: [&str; 3] = [
    "usr/lib/tandem/conf.d",
    "run/tandem/conf.d",
    "etc/tandem/conf.d",
];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error(
        "{path}: {key} may only be set by the image, in /usr/lib/tandem/conf.d: it decides what this device trusts, and {path} is writable state{}",
        if *.opt_in { " (an image with [keyring] allow_local = true lets local files set keyring.directory and keyring.threshold)" } else { "" }
    )]
    Untrusted {
        path: PathBuf,
        key: String,
        /// Whether the image could allow this key with `allow_local`.
        opt_in: bool,
    },
    #[error(
        "{path}: {message}; refusing to read configuration or keys that others could have changed"
    )]
    Unsafe { path: PathBuf, message: String },
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no configuration found: {0} does not exist and no drop-ins were found")]
    Missing(PathBuf),
    #[error("config: {key}: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    compatible: Option<String>,
    keyring: Option<RawKeyring>,
    state: Option<RawState>,
    boot: Option<RawBoot>,
    image: Option<RawImage>,
    http: Option<RawHttp>,
    oci: Option<RawOci>,
    install: Option<RawInstall>,
    health: Option<crate::health::RawHealth>,
    hawkbit: Option<hawkbit::RawHawkbit>,
    channel: Option<channel::RawChannel>,
    slots: Option<BTreeMap<String, BTreeMap<String, RawSlot>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeyring {
    directory: Option<PathBuf>,
    threshold: Option<usize>,
    /// Read from the raw tables by `check_trust`; here for the schema.
    #[allow(dead_code)]
    allow_local: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawState {
    directory: Option<PathBuf>,
    degraded_marker: Option<PathBuf>,
    etc_merge_report: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBoot {
    backend: Option<BootBackend>,
    cmdline: Option<PathBuf>,
    slot_parameter: Option<String>,
    tries: Option<u32>,
    grubenv: Option<PathBuf>,
    fw_env_config: Option<PathBuf>,
    uboot_env_file: Option<PathBuf>,
    esp: Option<PathBuf>,
    efivars: Option<PathBuf>,
    kernel_options: Option<String>,
    uki: Option<String>,
    custom_command: Option<PathBuf>,
    require_verity: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImage {
    version: Option<semver::Version>,
    security_epoch: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    connect_timeout_secs: Option<u64>,
    stall_timeout_secs: Option<u64>,
    retries: Option<u32>,
    deadline_secs: Option<u64>,
    min_rate_bytes: Option<u64>,
    min_rate_window_secs: Option<u64>,
    ca_file: Option<PathBuf>,
    client_cert: Option<PathBuf>,
    client_key: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInstall {
    adaptive: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOci {
    auth_file: Option<PathBuf>,
    insecure_registries: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSlot {
    device: PathBuf,
    size: Option<SizeSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum SizeSpec {
    Bytes(u64),
    Text(String),
}

/// Parses `4096`, `512K`, `64M`, `2G`, `1T` (binary units; optional `iB`).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let s = s
        .strip_suffix("iB")
        .or_else(|| s.strip_suffix('B'))
        .unwrap_or(s);
    let (num, shift) = match s.chars().last()? {
        'K' | 'k' => (&s[..s.len() - 1], 10),
        'M' | 'm' => (&s[..s.len() - 1], 20),
        'G' | 'g' => (&s[..s.len() - 1], 30),
        'T' | 't' => (&s[..s.len() - 1], 40),
        _ => (s, 0),
    };
    num.trim().parse::<u64>().ok()?.checked_mul(1u64 << shift)
}

/// Which bootloader integration stores the A/B decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BootBackend {
    /// No bootloader integration: installs are recorded in the state store
    /// only; the booted slot stays primary. For tests and image pipelines.
    None,
    /// GRUB environment block (`grubenv`) read by the shipped grub.cfg.
    Grub,
    /// U-Boot environment as `fw_printenv` sees it (`/etc/fw_env.config`).
    Uboot,
    /// U-Boot with the environment in a text file on the boot partition.
    UbootFile,
    /// systemd-boot with Boot Loader Specification boot counting.
    SystemdBoot,
    /// A board-specific executable (docs/boot.md, "custom").
    Custom,
}

/// Where the chosen backend keeps its state; validated per backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootConfig {
    None,
    Grub {
        grubenv: PathBuf,
    },
    Uboot {
        fw_env_config: PathBuf,
    },
    UbootFile {
        env_file: PathBuf,
    },
    SystemdBoot {
        esp: PathBuf,
        efivars: PathBuf,
        kernel_options: String,
        /// ESP path of each slot's unified kernel image (`{slot}`
        /// replaced), booted with its own command line.
        uki: Option<String>,
    },
    Custom {
        command: PathBuf,
    },
}

impl BootConfig {
    pub fn backend(&self) -> BootBackend {
        match self {
            BootConfig::None => BootBackend::None,
            BootConfig::Grub { .. } => BootBackend::Grub,
            BootConfig::Uboot { .. } => BootBackend::Uboot,
            BootConfig::UbootFile { .. } => BootBackend::UbootFile,
            BootConfig::SystemdBoot { .. } => BootBackend::SystemdBoot,
            BootConfig::Custom { .. } => BootBackend::Custom,
        }
    }
}

/// One slot's device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotDevice {
    pub device: PathBuf,
    /// Configured size; for block devices the device's own size is used
    /// when absent.
    pub size: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    /// Connecting, the DNS lookup included.
    pub connect_timeout_secs: u64,
    /// Longest wait for any data.
    pub stall_timeout_secs: u64,
    pub retries: u32,
    /// The whole download; 0 = no limit.
    pub deadline_secs: u64,
    /// Slower than this (bytes per second, averaged over
    /// `min_rate_window_secs`) counts as a failed attempt; 0 = no minimum.
    pub min_rate_bytes: u64,
    pub min_rate_window_secs: u64,
    /// PEM file of the CAs to trust instead of the built-in Mozilla roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (chain) and key for mutual TLS.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

impl Default for HttpSettings {
    /// The documented defaults (docs/config.md, `[http]`).
    fn default() -> Self {
        HttpSettings {
            connect_timeout_secs: 15,
            stall_timeout_secs: 30,
            retries: 5,
            deadline_secs: 6 * 3600,
            min_rate_bytes: 1024,
            min_rate_window_secs: 60,
            ca_file: None,
            client_cert: None,
            client_key: None,
        }
    }
}

/// `[oci]`: registries as bundle sources (docs/config.md).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OciSettings {
    /// A containers `auth.json` or docker `config.json` with the registry
    /// credentials; unset: the usual places (see `fetch::oci::auth_files`).
    pub auth_file: Option<PathBuf>,
    /// `HOST[:PORT]`s spoken to over plain HTTP instead of HTTPS.
    pub insecure_registries: Vec<String>,
}

/// Where the initramfs says that it booted without the data partition
/// (first line: why).
pub const DEGRADED_MARKER: &str = "/run/tandem/data-degraded";
/// The initramfs's report of the last `/etc` merge (on the data partition).
pub const ETC_MERGE_REPORT: &str = "/data/etc/merge.json";

/// The keyring every image ships (`[keyring] directory` in the image
/// overrides it).
pub const DEFAULT_KEYRING: &str = "/usr/lib/tandem/keys";

/// Validated settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub compatible: String,
    pub keyring_dir: PathBuf,
    pub threshold: usize,
    pub state_dir: PathBuf,
    /// Written by the initramfs when it booted without the data partition.
    pub degraded_marker: PathBuf,
    /// The initramfs's report of the last `/etc` merge.
    pub etc_merge_report: PathBuf,
    pub boot: BootConfig,
    /// Trial boots a freshly installed group gets before falling back.
    pub boot_tries: u32,
    pub cmdline_path: PathBuf,
    pub slot_parameter: String,
    /// Refuse bundles whose rootfs has no dm-verity data, and never arm a
    /// group without its root hash (image-only setting).
    pub require_verity: bool,
    pub image_version: Option<semver::Version>,
    pub image_security_epoch: u64,
    pub http: HttpSettings,
    pub oci: OciSettings,
    /// Fetch only what the booted slot lacks, when the bundle allows it
    /// (`[install] adaptive`, default true).
    pub adaptive: bool,
    pub health: crate::health::HealthSettings,
    /// `[hawkbit]`: the fleet server the daemon polls, if any.
    pub hawkbit: Option<HawkbitSettings>,
    /// `[channel]`: the TUF update channel the daemon polls, if any.
    pub channel: Option<ChannelSettings>,
    pub slots: BTreeMap<SlotGroup, BTreeMap<SlotClass, SlotDevice>>,
    /// Files read, in merge order.
    pub sources: Vec<PathBuf>,
}

impl Settings {
    pub fn slot(&self, group: SlotGroup, class: &SlotClass) -> Option<&SlotDevice> {
        self.slots.get(&group)?.get(class)
    }

    pub fn classes(&self) -> impl Iterator<Item = &SlotClass> {
        self.slots[&SlotGroup::A].keys()
    }
}

/// Where a configuration file lives, which decides what it may set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// `/usr/lib/tandem/conf.d`: part of the verified image.
    Image,
    /// The main file, `/run` and `/etc` drop-ins, `--config`: writable state.
    Local,
}

/// One configuration file's text and where it came from.
pub struct Source {
    pub path: PathBuf,
    pub text: String,
    pub origin: Origin,
}

impl Source {
    pub fn image(path: impl Into<PathBuf>, text: impl Into<String>) -> Source {
        Source {
            path: path.into(),
            text: text.into(),
            origin: Origin::Image,
        }
    }

    pub fn local(path: impl Into<PathBuf>, text: impl Into<String>) -> Source {
        Source {
            path: path.into(),
            text: text.into(),
            origin: Origin::Local,
        }
    }
}

/// Keys only the image may set, and whether `allow_local` opens them.
const IMAGE_ONLY: [(&str, &str, bool); 7] = [
    ("keyring", "directory", true),
    ("keyring", "threshold", true),
    ("keyring", "allow_local", false),
    ("image", "version", false),
    ("image", "security_epoch", false),
    ("boot", "require_verity", false),
    ("channel", "root", false),
];

/// Refuses trust settings in local files (see the module docs).
fn check_trust(sources: &[Source], tables: &[toml::Table]) -> Result<(), ConfigError> {
    let allow_local = sources
        .iter()
        .zip(tables)
        .filter(|(s, _)| s.origin == Origin::Image)
        .filter_map(|(_, t)| t.get("keyring")?.get("allow_local")?.as_bool())
        .next_back()
        .unwrap_or(false);
    for (s, t) in sources.iter().zip(tables) {
        if s.origin == Origin::Image {
            continue;
        }
        for (table, key, opens) in IMAGE_ONLY {
            if t.get(table).and_then(|v| v.get(key)).is_some() && !(opens && allow_local) {
                return Err(ConfigError::Untrusted {
                    path: s.path.clone(),
                    key: format!("{table}.{key}"),
                    opt_in: opens,
                });
            }
        }
    }
    Ok(())
}

/// Merges and validates configuration texts given in merge order. Pure.
pub fn parse(sources: &[Source]) -> Result<Settings, ConfigError> {
    let mut merged = toml::Table::new();
    let mut tables = Vec::new();
    for s in sources {
        let perr = |message: String| ConfigError::Parse {
            path: s.path.clone(),
            message,
        };
        // First against the schema, so an unknown key names this file.
        toml::from_str::<RawConfig>(&s.text).map_err(|e| perr(one_line(&e.to_string())))?;
        let table: toml::Table = toml::from_str(&s.text).map_err(|e| perr(e.to_string()))?;
        tables.push(table);
    }
    check_trust(sources, &tables)?;
    for t in tables {
        merge(&mut merged, t);
    }
    let raw: RawConfig = toml::Value::Table(merged)
        .try_into()
        .map_err(|e: toml::de::Error| invalid("(merged)", e.to_string()))?;
    validate(raw, sources.iter().map(|s| s.path.clone()).collect())
}

fn one_line(s: &str) -> String {
    // toml's messages span several lines with a source excerpt; keep them
    // but make the first line self-contained.
    s.trim_end().replace('\n', "\n    ")
}

fn merge(into: &mut toml::Table, from: toml::Table) {
    for (k, v) in from {
        match (into.get_mut(&k), v) {
            (Some(toml::Value::Table(a)), toml::Value::Table(b)) => merge(a, b),
            (_, v) => {
                into.insert(k, v);
            }
        }
    }
}

fn validate(raw: RawConfig, sources: Vec<PathBuf>) -> Result<Settings, ConfigError> {
    let compatible = raw
        .compatible
        .filter(|c| !c.is_empty())
        .ok_or_else(|| invalid("compatible", "must be set to this device's product string"))?;
    let keyring = raw.keyring.unwrap_or_default();
    let threshold = keyring.threshold.unwrap_or(1);
    if threshold == 0 {
        return Err(invalid("keyring.threshold", "must be at least 1"));
    }
    let boot = raw.boot.unwrap_or_default();
    let slot_parameter = boot
        .slot_parameter
        .clone()
        .unwrap_or_else(|| "tandem.slot".into());
    if slot_parameter.is_empty() || slot_parameter.contains(['=', ' ']) {
        return Err(invalid(
            "boot.slot_parameter",
            "must be a bare parameter name",
        ));
    }
    let image = raw.image.unwrap_or_default();
    let health = crate::health::validate(raw.health.unwrap_or_default())
        .map_err(|(key, msg)| invalid(key, msg))?;
    let hawkbit = raw
        .hawkbit
        .map(hawkbit::validate)
        .transpose()
        .map_err(|(key, msg)| invalid(key, msg))?;
    let channel = raw
        .channel
        .map(channel::validate)
        .transpose()
        .map_err(|(key, msg)| invalid(key, msg))?;
    let http = raw.http.unwrap_or_default();
    let d = HttpSettings::default();
    let http = HttpSettings {
        connect_timeout_secs: http.connect_timeout_secs.unwrap_or(d.connect_timeout_secs),
        stall_timeout_secs: http.stall_timeout_secs.unwrap_or(d.stall_timeout_secs),
        retries: http.retries.unwrap_or(d.retries),
        deadline_secs: http.deadline_secs.unwrap_or(d.deadline_secs),
        min_rate_bytes: http.min_rate_bytes.unwrap_or(d.min_rate_bytes),
        min_rate_window_secs: http.min_rate_window_secs.unwrap_or(d.min_rate_window_secs),
        ca_file: http.ca_file,
        client_cert: http.client_cert,
        client_key: http.client_key,
    };
    if http.stall_timeout_secs == 0 || http.connect_timeout_secs == 0 {
        return Err(invalid("http", "timeouts must be at least 1 second"));
    }
    if http.min_rate_window_secs == 0 {
        return Err(invalid(
            "http.min_rate_window_secs",
            "must be at least 1 second",
        ));
    }
    if http.client_cert.is_some() != http.client_key.is_some() {
        return Err(invalid(
            "http.client_cert",
            "client_cert and client_key must be set together",
        ));
    }
    let oci = raw.oci.unwrap_or_default();
    let oci = OciSettings {
        auth_file: oci.auth_file,
        insecure_registries: oci.insecure_registries.unwrap_or_default(),
    };
    for r in &oci.insecure_registries {
        if r.is_empty() || r.contains(['/', ' ', '@']) || r.contains("://") {
            return Err(invalid(
                "oci.insecure_registries",
                format!("{r:?} is not a HOST or HOST:PORT"),
            ));
        }
    }
    let mut slots = BTreeMap::new();
    for (gname, classes) in raw.slots.unwrap_or_default() {
        let group: SlotGroup = gname
            .parse()
            .map_err(|_| invalid(format!("slots.{gname}"), "slot groups are named a and b"))?;
        let mut out = BTreeMap::new();
        for (cname, s) in classes {
            let key = format!("slots.{gname}.{cname}");
            let class = SlotClass::new(&cname).map_err(|e| invalid(&key, e.to_string()))?;
            let size = match s.size {
                None => None,
                Some(SizeSpec::Bytes(0)) => {
                    return Err(invalid(format!("{key}.size"), "must be > 0"))
                }
                Some(SizeSpec::Bytes(n)) => Some(n),
                Some(SizeSpec::Text(t)) => {
                    Some(parse_size(&t).filter(|&n| n > 0).ok_or_else(|| {
                        invalid(format!("{key}.size"), format!("cannot parse size {t:?}"))
                    })?)
                }
            };
            out.insert(
                class,
                SlotDevice {
                    device: s.device,
                    size,
                },
            );
        }
        slots.insert(group, out);
    }
    let (Some(a), Some(b)) = (slots.get(&SlotGroup::A), slots.get(&SlotGroup::B)) else {
        return Err(invalid(
            "slots",
            "both slot groups, slots.a and slots.b, must be configured",
        ));
    };
    if a.is_empty() {
        return Err(invalid("slots.a", "declares no slot class"));
    }
    if !a.keys().eq(b.keys()) {
        return Err(invalid(
            "slots",
            "slots.a and slots.b must declare the same slot classes",
        ));
    }
    let devices = slot_devices(&slots);
    for (i, (key, dev)) in devices.iter().enumerate() {
        if let Some((first, _)) = devices[..i].iter().find(|(_, d)| d == dev) {
            return Err(invalid(
                key,
                format!(
                    "is {}, the same device as {first}; every slot of both groups needs a device of its own",
                    dev.display()
                ),
            ));
        }
    }
    Ok(Settings {
        compatible,
        keyring_dir: keyring.directory.unwrap_or_else(|| DEFAULT_KEYRING.into()),
        threshold,
        state_dir: raw
            .state
            .as_ref()
            .and_then(|s| s.directory.clone())
            .unwrap_or_else(|| "/var/lib/tandem".into()),
        degraded_marker: raw
            .state
            .as_ref()
            .and_then(|s| s.degraded_marker.clone())
            .unwrap_or_else(|| DEGRADED_MARKER.into()),
        etc_merge_report: raw
            .state
            .and_then(|s| s.etc_merge_report)
            .unwrap_or_else(|| ETC_MERGE_REPORT.into()),
        boot: boot_config(&boot)?,
        boot_tries: match boot.tries {
            None => 1,
            Some(0) => return Err(invalid("boot.tries", "must be at least 1")),
            Some(n) => n,
        },
        cmdline_path: boot
            .cmdline
            .clone()
            .unwrap_or_else(|| "/proc/cmdline".into()),
        slot_parameter,
        require_verity: boot.require_verity.unwrap_or(false),
        image_version: image.version,
        image_security_epoch: image.security_epoch.unwrap_or(0),
        http,
        oci,
        adaptive: raw.install.and_then(|i| i.adaptive).unwrap_or(true),
        health,
        hawkbit,
        channel,
        slots,
        sources,
    })
}

/// Every slot device with its key (`slots.a.rootfs.device`), group a first.
fn slot_devices(
    slots: &BTreeMap<SlotGroup, BTreeMap<SlotClass, SlotDevice>>,
) -> Vec<(String, PathBuf)> {
    slots
        .iter()
        .flat_map(|(g, classes)| {
            classes
                .iter()
                .map(move |(c, d)| (format!("slots.{g}.{c}.device"), d.device.clone()))
        })
        .collect()
}

/// The same check as the pure one in [`parse`], after resolving links and
/// comparing device numbers: `/dev/disk/by-partlabel/x` and `/dev/vda2` may
/// be one device. Devices that do not exist yet (file slots) are skipped.
pub fn check_devices_distinct(s: &Settings) -> Result<(), ConfigError> {
    let devices: Vec<(String, PathBuf, Option<u64>)> = slot_devices(&s.slots)
        .into_iter()
        .filter_map(|(key, path)| {
            let real = std::fs::canonicalize(&path).ok()?;
            let rdev = crate::sys::block_dev(&real).ok().flatten();
            Some((key, real, rdev))
        })
        .collect();
    for (i, (key, real, rdev)) in devices.iter().enumerate() {
        let same = devices[..i]
            .iter()
            .find(|(_, r, d)| r == real || (rdev.is_some() && d == rdev));
        if let Some((first, other, _)) = same {
            return Err(invalid(
                key,
                format!(
                    "resolves to {}, the same device as {first} ({}); every slot of both groups needs a device of its own",
                    real.display(),
                    other.display()
                ),
            ));
        }
    }
    Ok(())
}

fn boot_config(b: &RawBoot) -> Result<BootConfig, ConfigError> {
    let need = |v: &Option<PathBuf>, key: &str, backend: &str| {
        v.clone().ok_or_else(|| {
            invalid(
                format!("boot.{key}"),
                format!("must be set for backend \"{backend}\""),
            )
        })
    };
    Ok(match b.backend.unwrap_or(BootBackend::None) {
        BootBackend::None => BootConfig::None,
        BootBackend::Grub => BootConfig::Grub {
            grubenv: need(&b.grubenv, "grubenv", "grub")?,
        },
        BootBackend::Uboot => BootConfig::Uboot {
            fw_env_config: b
                .fw_env_config
                .clone()
                .unwrap_or_else(|| "/etc/fw_env.config".into()),
        },
        BootBackend::UbootFile => BootConfig::UbootFile {
            env_file: need(&b.uboot_env_file, "uboot_env_file", "uboot-file")?,
        },
        BootBackend::SystemdBoot if b.uki.is_some() && b.kernel_options.is_some() => {
            return Err(invalid(
                "boot.kernel_options",
                "cannot be set with boot.uki: a unified kernel image boots with its own signed command line",
            ))
        }
        BootBackend::SystemdBoot => BootConfig::SystemdBoot {
            esp: b.esp.clone().unwrap_or_else(|| "/boot/efi".into()),
            efivars: b
                .efivars
                .clone()
                .unwrap_or_else(|| "/sys/firmware/efi/efivars".into()),
            kernel_options: b.kernel_options.clone().unwrap_or_default(),
            uki: b.uki.clone(),
        },
        BootBackend::Custom => {
            let command = need(&b.custom_command, "custom_command", "custom")?;
            if !command.is_absolute() {
                return Err(invalid(
                    "boot.custom_command",
                    "must be an absolute path (helpers run with a clean environment)",
                ));
            }
            BootConfig::Custom { command }
        }
    })
}

/// Lists the files to read under `root`, in merge order: the main file at
/// `main` (absolute paths are used as is), then the drop-in directories;
/// each with its [`Origin`].
pub fn discover(root: &Path, main: Option<&Path>) -> Result<Vec<(PathBuf, Origin)>, ConfigError> {
    let main_path = match main {
        Some(p) => p.to_path_buf(),
        None => root.join(MAIN_FILE),
    };
    let mut files = Vec::new();
    if main_path.exists() {
        files.push((main_path.clone(), Origin::Local));
    } else if main.is_some() {
        return Err(ConfigError::Missing(main_path));
    }
    for dir in DROPIN_DIRS {
        let origin = if dir.starts_with("usr/") {
            Origin::Image
        } else {
            Origin::Local
        };
        let dir = root.join(dir);
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(ConfigError::Io { path: dir, source }),
        };
        let mut names: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        names.sort();
        files.extend(names.into_iter().map(|n| (n, origin)));
    }
    if files.is_empty() {
        return Err(ConfigError::Missing(main_path));
    }
    Ok(files)
}

/// Reads and validates the configuration found under `root`.
pub fn load(root: &Path, main: Option<&Path>) -> Result<Settings, ConfigError> {
    let sources = discover(root, main)?
        .into_iter()
        .map(|(path, origin)| {
            crate::sys::check_trusted_file(&path).map_err(|message| ConfigError::Unsafe {
                path: path.clone(),
                message,
            })?;
            std::fs::read_to_string(&path)
                .map(|text| Source {
                    path: path.clone(),
                    text,
                    origin,
                })
                .map_err(|source| ConfigError::Io { path, source })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let settings = parse(&sources)?;
    check_devices_distinct(&settings)?;
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
compatible = "demo"
[slots.a.rootfs]
device = "/dev/a"
size = "64M"
[slots.b.rootfs]
device = "/dev/b"
size = 67108864
"#;

    fn src(name: &str, text: &str) -> Source {
        Source::image(name, text)
    }

    #[test]
    fn defaults() {
        let s = parse(&[src("main.toml", BASE)]).unwrap();
        assert_eq!(s.compatible, "demo");
        assert_eq!(s.threshold, 1);
        assert_eq!(s.state_dir, PathBuf::from("/var/lib/tandem"));
        assert_eq!(s.slot_parameter, "tandem.slot");
        let c = SlotClass::new("rootfs").unwrap();
        assert_eq!(s.slot(SlotGroup::A, &c).unwrap().size, Some(64 << 20));
        assert_eq!(s.slot(SlotGroup::B, &c).unwrap().size, Some(64 << 20));
    }

    #[test]
    fn later_file_wins_key_by_key() {
        let s = parse(&[
            src("main.toml", BASE),
            src(
                "10.toml",
                "[keyring]\nthreshold = 2\n[slots.b.rootfs]\ndevice = \"/dev/c\"\n",
            ),
            src("20.toml", "compatible = \"other\"\n"),
        ])
        .unwrap();
        assert_eq!(s.compatible, "other");
        assert_eq!(s.threshold, 2);
        let b = s
            .slot(SlotGroup::B, &SlotClass::new("rootfs").unwrap())
            .unwrap();
        assert_eq!(b.device, PathBuf::from("/dev/c"));
        assert_eq!(b.size, Some(64 << 20), "size kept from the earlier file");
    }

    #[test]
    fn errors_name_file_and_key() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[
                    ("main.toml", BASE),
                    (
                        "/etc/tandem/conf.d/50-x.toml",
                        "[keyring]\nthreshhold = 2\n",
                    ),
                ],
                "50-x.toml",
            ),
            (&[("main.toml", BASE), ("x.toml", "bogus = 1\n")], "bogus"),
            (&[("main.toml", "compatible = \n")], "main.toml"),
            (
                &[("main.toml", &BASE.replace("compatible = \"demo\"", ""))],
                "compatible",
            ),
            (
                &[("main.toml", &format!("{BASE}\n[keyring]\nthreshold = 0\n"))],
                "keyring.threshold",
            ),
            (
                &[("main.toml", &BASE.replace("64M", "lots"))],
                "slots.a.rootfs.size",
            ),
            (
                &[("main.toml", &BASE.replace("/dev/b", "/dev/a"))],
                "slots.b.rootfs.device",
            ),
            (
                // across classes too: b's boot on a's rootfs device
                &[(
                    "main.toml",
                    &format!(
                        "{BASE}[slots.a.boot]\ndevice = \"/dev/ab\"\n[slots.b.boot]\ndevice = \"/dev/a\"\n"
                    ),
                )],
                "slots.b.boot.device",
            ),
            (
                &[(
                    "main.toml",
                    &format!(
                        "{BASE}[slots.a.boot]\ndevice = \"/dev/b\"\n[slots.b.boot]\ndevice = \"/dev/bb\"\n"
                    ),
                )],
                "the same device as slots.a.boot.device",
            ),
            (
                &[("main.toml", &BASE.replace("slots.b.rootfs", "slots.b.boot"))],
                "same slot classes",
            ),
            (
                &[(
                    "main.toml",
                    &BASE.replace("slots.b.rootfs", "slots.c.rootfs"),
                )],
                "slots.c",
            ),
            (
                &[(
                    "main.toml",
                    &format!("{BASE}\n[boot]\nbackend = \"lilo\"\n"),
                )],
                "lilo",
            ),
        ];
        for (files, needle) in cases {
            let sources: Vec<Source> = files.iter().map(|(n, t)| src(n, t)).collect();
            let e = parse(&sources).unwrap_err().to_string();
            assert!(e.contains(needle), "want {needle:?} in {e:?}");
        }
    }

    #[test]
    fn only_the_image_decides_what_is_trusted() {
        let local = |t: &str| Source::local("/etc/tandem/conf.d/50-x.toml", t);
        let image = |t: &str| Source::image("/usr/lib/tandem/conf.d/00-image.toml", t);
        // Defaults: the image's keyring, no local trust settings.
        let s = parse(&[Source::local("/etc/tandem/tandem.toml", BASE)]).unwrap();
        assert_eq!(s.keyring_dir, PathBuf::from(DEFAULT_KEYRING));
        assert!(!s.require_verity);
        for (key, text, opt_in) in [
            (
                "keyring.directory",
                "[keyring]\ndirectory = \"/etc/tandem/keys\"\n",
                true,
            ),
            ("keyring.threshold", "[keyring]\nthreshold = 1\n", true),
            (
                "keyring.allow_local",
                "[keyring]\nallow_local = true\n",
                false,
            ),
            ("image.version", "[image]\nversion = \"9.0.0\"\n", false),
            (
                "image.security_epoch",
                "[image]\nsecurity_epoch = 0\n",
                false,
            ),
            (
                "boot.require_verity",
                "[boot]\nrequire_verity = false\n",
                false,
            ),
        ] {
            let e = parse(&[image(BASE), local(text)]).unwrap_err();
            match &e {
                ConfigError::Untrusted {
                    path,
                    key: k,
                    opt_in: o,
                } => {
                    assert_eq!(k, key);
                    assert_eq!(*o, opt_in, "{key}");
                    assert!(path.ends_with("50-x.toml"));
                }
                other => panic!("{key}: {other}"),
            }
            let msg = e.to_string();
            assert!(msg.contains(key) && msg.contains("50-x.toml"), "{msg}");
            // The same key in the image is fine.
            parse(&[image(BASE), image(text)]).unwrap();
        }
        // The image may open the keyring (only the keyring) to /etc.
        let opened = "[keyring]\nallow_local = true\n";
        let s = parse(&[
            image(BASE),
            image(opened),
            local("[keyring]\ndirectory = \"/etc/tandem/keys\"\nthreshold = 2\n"),
        ])
        .unwrap();
        assert_eq!(s.keyring_dir, PathBuf::from("/etc/tandem/keys"));
        assert_eq!(s.threshold, 2);
        assert!(parse(&[
            image(BASE),
            image(opened),
            local("[image]\nversion = \"9.0.0\"\n")
        ])
        .is_err());
        // ...but a local file cannot open it for itself.
        assert!(parse(&[image(BASE), local(opened)]).is_err());
        let s = parse(&[image(BASE), image("[boot]\nrequire_verity = true\n")]).unwrap();
        assert!(s.require_verity);
        // The channel's root of trust ships in the image; its URL may be local.
        let ch = "[channel]\nurl = \"https://u.example/tuf\"\n";
        let root = "[channel]\nroot = \"/etc/evil-root.json\"\n";
        let s = parse(&[image(BASE), local(ch)]).unwrap();
        assert_eq!(s.channel.unwrap().url, "https://u.example/tuf");
        let e = parse(&[image(BASE), image(ch), local(root)]).unwrap_err();
        assert!(e.to_string().contains("channel.root"), "{e}");
    }

    #[test]
    fn devices_are_distinct_after_resolving_links() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a.img");
        std::fs::write(&a, b"").unwrap();
        std::os::unix::fs::symlink(&a, d.path().join("link-to-a")).unwrap();
        let text = format!(
            "compatible = \"x\"\n[slots.a.rootfs]\ndevice = \"{}\"\n[slots.b.rootfs]\ndevice = \"{}/link-to-a\"\n",
            a.display(),
            d.path().display()
        );
        // Two different paths: the pure check passes...
        let s = parse(&[Source::image("t.toml", text)]).unwrap();
        // ...the resolved one does not.
        let e = check_devices_distinct(&s).unwrap_err().to_string();
        assert!(
            e.contains("slots.b.rootfs.device") && e.contains("slots.a.rootfs.device"),
            "{e}"
        );
    }

    #[test]
    fn sizes() {
        for (s, want) in [
            ("4096", Some(4096)),
            ("512K", Some(512 << 10)),
            ("64M", Some(64 << 20)),
            ("2G", Some(2 << 30)),
            ("2GiB", Some(2 << 30)),
            ("1T", Some(1 << 40)),
            ("x", None),
            ("", None),
            ("99999999999T", None),
        ] {
            assert_eq!(parse_size(s), want, "{s}");
        }
    }

    #[test]
    fn discover_order() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        for d in DROPIN_DIRS {
            std::fs::create_dir_all(r.join(d)).unwrap();
        }
        std::fs::create_dir_all(r.join("etc/tandem")).unwrap();
        std::fs::write(r.join(MAIN_FILE), BASE).unwrap();
        std::fs::write(r.join("etc/tandem/conf.d/10-b.toml"), "").unwrap();
        std::fs::write(r.join("etc/tandem/conf.d/05-a.toml"), "").unwrap();
        std::fs::write(r.join("etc/tandem/conf.d/README"), "").unwrap();
        std::fs::write(r.join("usr/lib/tandem/conf.d/99-z.toml"), "").unwrap();
        let got: Vec<(String, Origin)> = discover(r, None)
            .unwrap()
            .iter()
            .map(|(p, o)| (p.strip_prefix(r).unwrap().display().to_string(), *o))
            .collect();
        let want = [
            ("etc/tandem/tandem.toml", Origin::Local),
            ("usr/lib/tandem/conf.d/99-z.toml", Origin::Image),
            ("etc/tandem/conf.d/05-a.toml", Origin::Local),
            ("etc/tandem/conf.d/10-b.toml", Origin::Local),
        ];
        assert_eq!(got, want.map(|(p, o)| (p.to_string(), o)).to_vec());
    }
}

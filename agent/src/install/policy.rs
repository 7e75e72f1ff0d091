//! Whether a verified bundle may be installed on this device. Pure.

use std::collections::BTreeMap;

use crate::bundle::Manifest;
use crate::slot::SlotClass;

/// What the device is, as far as the policy needs to know.
#[derive(Debug, Clone)]
pub struct DeviceFacts {
    pub compatible: String,
    /// Version running in the booted slot, if known.
    pub booted_version: Option<semver::Version>,
    /// Lowest security epoch still accepted.
    pub epoch_floor: u64,
    /// Target slot capacity per class.
    pub capacities: BTreeMap<SlotClass, u64>,
    /// Versions that failed here before, with the reason.
    pub failed: Vec<(semver::Version, String)>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("bundle is for {bundle:?}, this device is {device:?} (compatible mismatch)")]
    Compatible { bundle: String, device: String },
    #[error(
        "bundle security epoch {bundle} is below this device's floor {floor}; older epochs are refused always"
    )]
    Epoch { bundle: u64, floor: u64 },
    #[error(
        "bundle version {bundle} is older than the running {booted}; pass --allow-downgrade to install it anyway"
    )]
    Downgrade {
        bundle: semver::Version,
        booted: semver::Version,
    },
    #[error(
        "version {version} failed on this device before ({reason}); pass --force to install it again"
    )]
    FailedBefore {
        version: semver::Version,
        reason: String,
    },
    #[error(
        "version {0} is already running here; pass --force to install it into the other slot group too"
    )]
    SameVersion(semver::Version),
    #[error("dm-verity: {0}")]
    Verity(String),
    #[error(
        "the bundle's rootfs has no dm-verity data, and this device requires it ([boot] require_verity)"
    )]
    VerityRequired,
    #[error("image {index} is for slot class \"{class}\", which this device does not have")]
    UnknownClass { index: usize, class: SlotClass },
    #[error("bundle has no image for slot class \"{0}\"; the target group would mix versions")]
    MissingClass(SlotClass),
    #[error("image {index} ({class}) is {size} bytes, larger than the target slot's {capacity}")]
    TooLarge {
        index: usize,
        class: SlotClass,
        size: u64,
        capacity: u64,
    },
}

pub fn check(m: &Manifest, dev: &DeviceFacts, allow_downgrade: bool) -> Result<(), PolicyError> {
    check_with(m, dev, allow_downgrade, false)
}

pub fn check_with(
    m: &Manifest,
    dev: &DeviceFacts,
    allow_downgrade: bool,
    force: bool,
) -> Result<(), PolicyError> {
    if !force {
        if let Some((v, reason)) = dev.failed.iter().find(|(v, _)| *v == m.version) {
            return Err(PolicyError::FailedBefore {
                version: v.clone(),
                reason: reason.clone(),
            });
        }
    }
    if m.compatible != dev.compatible {
        return Err(PolicyError::Compatible {
            bundle: m.compatible.clone(),
            device: dev.compatible.clone(),
        });
    }
    if m.security_epoch < dev.epoch_floor {
        return Err(PolicyError::Epoch {
            bundle: m.security_epoch,
            floor: dev.epoch_floor,
        });
    }
    if let Some(booted) = &dev.booted_version {
        if m.version == *booted && !force {
            return Err(PolicyError::SameVersion(m.version.clone()));
        }
        if m.version < *booted && !allow_downgrade {
            return Err(PolicyError::Downgrade {
                bundle: m.version.clone(),
                booted: booted.clone(),
            });
        }
    }
    for (index, img) in m.images.iter().enumerate() {
        let Some(&capacity) = dev.capacities.get(&img.slot_class) else {
            return Err(PolicyError::UnknownClass {
                index,
                class: img.slot_class.clone(),
            });
        };
        if img.size > capacity {
            return Err(PolicyError::TooLarge {
                index,
                class: img.slot_class.clone(),
                size: img.size,
                capacity,
            });
        }
    }
    if let Some(c) = dev
        .capacities
        .keys()
        .find(|c| !m.images.iter().any(|i| &i.slot_class == *c))
    {
        return Err(PolicyError::MissingClass(c.clone()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::manifest::{Compression, Image, FORMAT};
    use proptest::prelude::*;

    fn manifest(version: &str, epoch: u64, classes: &[(&str, u64)]) -> Manifest {
        Manifest {
            format: FORMAT,
            version: version.parse().unwrap(),
            compatible: "dev".into(),
            security_epoch: epoch,
            created: "2026-01-01T00:00:00Z".into(),
            description: None,
            features: vec![],
            images: classes
                .iter()
                .map(|(c, size)| Image {
                    slot_class: SlotClass::new(c).unwrap(),
                    group: None,
                    size: *size,
                    sha256: "00".repeat(32),
                    compression: Compression::None,
                    payload_size: *size,
                    frame_size: None,
                    chunks: None,
                    cdc: None,
                    verity: None,
                })
                .collect(),
        }
    }

    fn device(booted: Option<&str>, floor: u64) -> DeviceFacts {
        DeviceFacts {
            compatible: "dev".into(),
            booted_version: booted.map(|v| v.parse().unwrap()),
            epoch_floor: floor,
            capacities: [(SlotClass::new("rootfs").unwrap(), 100)].into(),
            failed: vec![],
        }
    }

    #[test]
    fn table() {
        type Check = fn(&Result<(), PolicyError>) -> bool;
        let ok: Check = |r| r.is_ok();
        let cases: Vec<(&str, Manifest, DeviceFacts, bool, Check)> = vec![
            (
                "upgrade",
                manifest("1.1.0", 0, &[("rootfs", 10)]),
                device(Some("1.0.0"), 0),
                false,
                ok,
            ),
            (
                // A replay of the running version: nothing to gain, a
                // reboot to lose; only with --force (check_with below).
                "same version",
                manifest("1.0.0", 0, &[("rootfs", 10)]),
                device(Some("1.0.0"), 0),
                false,
                |r| matches!(r, Err(PolicyError::SameVersion(_))),
            ),
            (
                "unknown booted",
                manifest("0.1.0", 0, &[("rootfs", 10)]),
                device(None, 0),
                false,
                ok,
            ),
            (
                "downgrade",
                manifest("0.9.0", 0, &[("rootfs", 10)]),
                device(Some("1.0.0"), 0),
                false,
                |r| matches!(r, Err(PolicyError::Downgrade { .. })),
            ),
            (
                "downgrade allowed",
                manifest("0.9.0", 0, &[("rootfs", 10)]),
                device(Some("1.0.0"), 0),
                true,
                ok,
            ),
            (
                "prerelease is older",
                manifest("1.0.0-rc1", 0, &[("rootfs", 10)]),
                device(Some("1.0.0"), 0),
                false,
                |r| matches!(r, Err(PolicyError::Downgrade { .. })),
            ),
            (
                "epoch below floor",
                manifest("2.0.0", 1, &[("rootfs", 10)]),
                device(Some("1.0.0"), 2),
                true,
                |r| {
                    matches!(
                        r,
                        Err(PolicyError::Epoch {
                            bundle: 1,
                            floor: 2
                        })
                    )
                },
            ),
            (
                "epoch equal",
                manifest("2.0.0", 2, &[("rootfs", 10)]),
                device(Some("1.0.0"), 2),
                false,
                ok,
            ),
            (
                "too large",
                manifest("2.0.0", 0, &[("rootfs", 101)]),
                device(None, 0),
                false,
                |r| {
                    matches!(
                        r,
                        Err(PolicyError::TooLarge {
                            size: 101,
                            capacity: 100,
                            ..
                        })
                    )
                },
            ),
            (
                "exactly fits",
                manifest("2.0.0", 0, &[("rootfs", 100)]),
                device(None, 0),
                false,
                ok,
            ),
            (
                "unknown class",
                manifest("2.0.0", 0, &[("rootfs", 1), ("boot", 1)]),
                device(None, 0),
                false,
                |r| matches!(r, Err(PolicyError::UnknownClass { index: 1, .. })),
            ),
            (
                "missing class",
                manifest("2.0.0", 0, &[("boot", 1)]),
                device(None, 0),
                false,
                |r| matches!(r, Err(PolicyError::UnknownClass { .. })),
            ),
        ];
        for (name, m, d, allow, expect) in cases {
            let r = check(&m, &d, allow);
            assert!(expect(&r), "{name}: {r:?}");
        }
        let mut m = manifest("1.0.0", 0, &[("rootfs", 1)]);
        m.compatible = "other".into();
        assert!(matches!(
            check(&m, &device(None, 0), true),
            Err(PolicyError::Compatible { .. })
        ));
        let mut d = device(None, 0);
        d.failed
            .push(("1.0.0".parse().unwrap(), "health check app failed".into()));
        let e = check(&manifest("1.0.0", 0, &[("rootfs", 1)]), &d, false).unwrap_err();
        assert!(matches!(e, PolicyError::FailedBefore { .. }) && e.to_string().contains("--force"));
        assert!(check_with(&manifest("1.0.0", 0, &[("rootfs", 1)]), &d, false, true).is_ok());
        assert!(check_with(
            &manifest("1.0.0", 0, &[("rootfs", 1)]),
            &device(Some("1.0.0"), 0),
            false,
            true
        )
        .is_ok());
        let mut d = device(None, 0);
        d.capacities.insert(SlotClass::new("boot").unwrap(), 10);
        assert_eq!(
            check(&manifest("1.0.0", 0, &[("rootfs", 1)]), &d, false),
            Err(PolicyError::MissingClass(SlotClass::new("boot").unwrap()))
        );
    }

    proptest! {
        #[test]
        fn downgrade_rule_matches_semver(a in (0u64..5, 0u64..5, 0u64..5), b in (0u64..5, 0u64..5, 0u64..5)) {
            let va = format!("{}.{}.{}", a.0, a.1, a.2);
            let vb = format!("{}.{}.{}", b.0, b.1, b.2);
            let r = check(&manifest(&va, 0, &[("rootfs", 1)]), &device(Some(&vb), 0), false);
            prop_assert_eq!(r.is_ok(), a > b);
        }
    }
}

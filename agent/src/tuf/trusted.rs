//! The trusted-metadata set: what the client has accepted in this
//! refresh, and the rules (specification §5.3–§5.6) by which a new file
//! may join it. Pure: bytes in, a verdict out; `now` is given.
//!
//! Order is fixed: root updates first, then timestamp, snapshot, targets,
//! delegated targets. A role's metadata is set before its final checks
//! (expiry, the version pinned by the role above) so that an expired or
//! not-yet-final local copy still serves as the floor for rollback checks
//! of the one fetched next, as python-tuf does.

use std::collections::{BTreeMap, BTreeSet};

use super::keys::{Key, RoleKeys};
use super::metadata::{
    self, check_length_and_hashes, Parsed, Root, Signed, Snapshot, Targets, Timestamp, ROOT,
    SNAPSHOT, TARGETS, TIMESTAMP,
};
use super::TufError;

/// Metadata accepted so far in one refresh.
#[derive(Debug)]
pub struct TrustedSet {
    now: u64,
    root: Parsed<Root>,
    timestamp: Option<Parsed<Timestamp>>,
    snapshot: Option<Parsed<Snapshot>>,
    targets: BTreeMap<String, Parsed<Targets>>,
    /// (role, delegator) pairs whose signatures were checked: a role
    /// reached again through another delegator is checked again.
    verified: BTreeSet<(String, String)>,
}

fn expired<T: Signed>(role: &str, md: &T, now: u64) -> TufError {
    TufError::Expired {
        role: role.to_string(),
        version: md.version(),
        expires: md.expires().to_string(),
        now: crate::timefmt::rfc3339(now),
    }
}

fn top_role<'a>(root: &'a Root, name: &str) -> Result<&'a metadata::Role, TufError> {
    root.role(name).ok_or_else(|| TufError::Missing {
        role: ROOT.into(),
        reason: format!("no {name} role"),
    })
}

impl TrustedSet {
    /// Starts from the locally trusted root, which must be signed by a
    /// threshold of its own root keys (its expiry is checked after the
    /// root updates, [`Self::check_root_expiry`]).
    pub fn new(root: &[u8], now: u64) -> Result<TrustedSet, TufError> {
        let parsed = metadata::parse::<Root>(ROOT, root)?;
        let role = top_role(&parsed.signed, ROOT)?;
        metadata::verify(ROOT, &parsed, role, &parsed.signed.keys)?;
        Ok(TrustedSet {
            now,
            root: parsed,
            timestamp: None,
            snapshot: None,
            targets: BTreeMap::new(),
            verified: BTreeSet::new(),
        })
    }

    pub fn root(&self) -> &Root {
        &self.root.signed
    }
    pub fn timestamp(&self) -> Option<&Timestamp> {
        self.timestamp.as_ref().map(|p| &p.signed)
    }
    pub fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_ref().map(|p| &p.signed)
    }
    /// A targets role accepted in this refresh (`targets` or delegated).
    pub fn targets(&self, role: &str) -> Option<&Targets> {
        self.targets.get(role).map(|p| &p.signed)
    }

    /// The accepted `role` as `delegator` delegates it: `Ok(None)` if it
    /// is not loaded yet; an error if it was accepted through another
    /// delegator and `delegator`'s keys for it do not sign it (a role
    /// two delegators name must satisfy each on its own path).
    pub fn targets_via(
        &mut self,
        role: &str,
        delegator: &str,
    ) -> Result<Option<&Targets>, TufError> {
        let Some(parsed) = self.targets.get(role) else {
            return Ok(None);
        };
        let pair = (role.to_string(), delegator.to_string());
        if !self.verified.contains(&pair) {
            let (keys, entry) = self.delegation(role, delegator)?;
            metadata::verify(role, parsed, entry, keys)?;
            self.verified.insert(pair);
        }
        Ok(self.targets(role))
    }

    /// §5.3: the next root, signed by a threshold of the trusted root's
    /// root keys and of its own, with exactly the next version.
    pub fn update_root(&mut self, data: &[u8]) -> Result<(), TufError> {
        if self.timestamp.is_some() {
            return Err(TufError::Missing {
                role: ROOT.into(),
                reason: "cannot update root after timestamp".into(),
            });
        }
        let new = metadata::parse::<Root>(ROOT, data)?;
        let old = &self.root.signed;
        metadata::verify(ROOT, &new, top_role(old, ROOT)?, &old.keys)?;
        if new.signed.version != old.version + 1 {
            return Err(TufError::Version {
                role: ROOT.into(),
                got: new.signed.version,
                expected: (old.version + 1).to_string(),
            });
        }
        metadata::verify(ROOT, &new, top_role(&new.signed, ROOT)?, &new.signed.keys)?;
        self.root = new;
        Ok(())
    }

    /// §5.3.10: the final root must not have expired.
    pub fn check_root_expiry(&self) -> Result<(), TufError> {
        let root = &self.root.signed;
        if root.is_expired(self.now) {
            return Err(expired(ROOT, root, self.now));
        }
        Ok(())
    }

    /// §5.4: a timestamp signed by the root's timestamp keys, not older
    /// than the trusted one, nor pointing to an older snapshot. `Ok(false)`
    /// when it is the trusted version again (the trusted one stays).
    pub fn update_timestamp(&mut self, data: &[u8]) -> Result<bool, TufError> {
        if self.snapshot.is_some() {
            return Err(TufError::Missing {
                role: TIMESTAMP.into(),
                reason: "cannot update timestamp after snapshot".into(),
            });
        }
        self.check_root_expiry()?;
        let new = metadata::parse::<Timestamp>(TIMESTAMP, data)?;
        let root = &self.root.signed;
        metadata::verify(TIMESTAMP, &new, top_role(root, TIMESTAMP)?, &root.keys)?;
        if let Some(old) = &self.timestamp {
            let (old, ver) = (&old.signed, new.signed.version);
            if ver < old.version {
                return Err(TufError::Rollback {
                    role: TIMESTAMP.into(),
                    trusted: old.version,
                    got: ver,
                });
            }
            if ver == old.version {
                return Ok(false);
            }
            let (was, now) = (
                old.snapshot_meta().version,
                new.signed.snapshot_meta().version,
            );
            if now < was {
                return Err(TufError::Rollback {
                    role: format!("snapshot (in timestamp version {ver})"),
                    trusted: was,
                    got: now,
                });
            }
        }
        self.timestamp = Some(new);
        self.check_timestamp_final()?;
        Ok(true)
    }

    fn check_timestamp_final(&self) -> Result<&Timestamp, TufError> {
        let ts = self.timestamp().ok_or_else(|| TufError::Missing {
            role: TIMESTAMP.into(),
            reason: "no trusted timestamp".into(),
        })?;
        if ts.is_expired(self.now) {
            return Err(expired(TIMESTAMP, ts, self.now));
        }
        Ok(ts)
    }

    /// §5.5: a snapshot with the length and hashes the timestamp gives
    /// (skipped for the local copy, `local`, which was checked when it
    /// was fetched), signed by the root's snapshot keys, listing every
    /// targets role the trusted snapshot lists at no lower version; then
    /// not expired and of the version the timestamp gives.
    pub fn update_snapshot(&mut self, data: &[u8], local: bool) -> Result<(), TufError> {
        if !self.targets.is_empty() {
            return Err(TufError::Missing {
                role: SNAPSHOT.into(),
                reason: "cannot update snapshot after targets".into(),
            });
        }
        let meta = self.check_timestamp_final()?.snapshot_meta().clone();
        if !local {
            check_length_and_hashes("snapshot.json", data, meta.length, meta.hashes.as_ref())?;
        }
        let new = metadata::parse::<Snapshot>(SNAPSHOT, data)?;
        let root = &self.root.signed;
        metadata::verify(SNAPSHOT, &new, top_role(root, SNAPSHOT)?, &root.keys)?;
        if let Some(old) = &self.snapshot {
            for (name, was) in &old.signed.meta {
                let Some(now) = new.signed.meta.get(name) else {
                    return Err(TufError::Missing {
                        role: format!("snapshot version {}", new.signed.version),
                        reason: format!("{name} was removed"),
                    });
                };
                if now.version < was.version {
                    return Err(TufError::Rollback {
                        role: format!("{name} (in snapshot version {})", new.signed.version),
                        trusted: was.version,
                        got: now.version,
                    });
                }
            }
        }
        self.snapshot = Some(new);
        self.check_snapshot_final().map(|_| ())
    }

    fn check_snapshot_final(&self) -> Result<&Snapshot, TufError> {
        let ts = self.check_timestamp_final()?;
        let snap = self.snapshot().ok_or_else(|| TufError::Missing {
            role: SNAPSHOT.into(),
            reason: "no trusted snapshot".into(),
        })?;
        if snap.is_expired(self.now) {
            return Err(expired(SNAPSHOT, snap, self.now));
        }
        let want = ts.snapshot_meta().version;
        if snap.version != want {
            return Err(TufError::Version {
                role: SNAPSHOT.into(),
                got: snap.version,
                expected: format!("{want} (timestamp version {})", ts.version),
            });
        }
        Ok(snap)
    }

    /// The keys and role entry `delegator` gives `role`.
    fn delegation(
        &self,
        role: &str,
        delegator: &str,
    ) -> Result<(&BTreeMap<String, Key>, &dyn RoleKeys), TufError> {
        if delegator == ROOT {
            let root = &self.root.signed;
            return Ok((&root.keys, top_role(root, TARGETS)? as &dyn RoleKeys));
        }
        let missing = |reason: String| TufError::Missing {
            role: role.to_string(),
            reason,
        };
        let parent = self
            .targets(delegator)
            .ok_or_else(|| missing(format!("delegator {delegator} is not loaded")))?;
        let d = parent
            .delegations
            .as_ref()
            .ok_or_else(|| missing(format!("{delegator} delegates nothing")))?;
        if let Some(r) = d.roles.iter().flatten().find(|r| r.name == role) {
            return Ok((&d.keys, r as &dyn RoleKeys));
        }
        match &d.succinct_roles {
            Some(s) if s.is_bin(role) => Ok((&d.keys, s as &dyn RoleKeys)),
            _ => Err(missing(format!("not delegated by {delegator}"))),
        }
    }

    /// §5.6: `targets` (delegated by `root`) or a delegated role (by
    /// `delegator`): length and hashes as snapshot gives them, signed by
    /// the delegator's keys for it, exactly the version snapshot gives,
    /// not expired.
    pub fn update_targets(
        &mut self,
        data: &[u8],
        role: &str,
        delegator: &str,
    ) -> Result<(), TufError> {
        let snap = self.check_snapshot_final()?;
        let file = format!("{role}.json");
        let meta = snap.meta.get(&file).ok_or_else(|| TufError::Missing {
            role: role.to_string(),
            reason: format!("not listed in snapshot version {}", snap.version),
        })?;
        check_length_and_hashes(&file, data, meta.length, meta.hashes.as_ref())?;
        let want = meta.version;
        let new = metadata::parse::<Targets>(role, data)?;
        let (keys, entry) = self.delegation(role, delegator)?;
        metadata::verify(role, &new, entry, keys)?;
        if new.signed.version != want {
            return Err(TufError::Version {
                role: role.to_string(),
                got: new.signed.version,
                expected: format!("{want} (snapshot)"),
            });
        }
        if new.signed.is_expired(self.now) {
            return Err(expired(role, &new.signed, self.now));
        }
        self.targets.insert(role.to_string(), new);
        self.verified
            .insert((role.to_string(), delegator.to_string()));
        Ok(())
    }
}

#[cfg(test)]
#[path = "trusted_tests.rs"]
mod tests;

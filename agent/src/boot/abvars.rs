//! The A/B variable scheme shared by the env-style backends. Pure.
//!
//! | variable | values | meaning |
//! |----------|--------|---------|
//! | `TANDEM_ORDER` | `"a b"` or `"b a"` | groups in boot preference order |
//! | `TANDEM_A_OK`, `TANDEM_B_OK` | `1` / `0` | group may be booted / must not be |
//! | `TANDEM_A_TRIES`, `TANDEM_B_TRIES` | empty, or `0`–`N` | empty: committed; a number: trial boots left |
//! | `TANDEM_A_VERITY`, `TANDEM_B_VERITY` | kernel parameters | appended to the group's command line: its dm-verity root hash, hash offset and salt |
//!
//! The first three are the boot decision; the `VERITY` variables are data
//! the decision uses, written only while their group cannot be booted
//! (`OK=0`, during an install) and before it is armed.
//!
//! The boot script walks `TANDEM_ORDER` and boots the first group with
//! `OK=1` whose `TRIES` is empty, or a number above zero, which it first
//! decrements and saves. A trial that is never committed therefore runs out
//! and the next group in order boots. Missing variables read as: order
//! `a b`, `OK=1`, `TRIES` empty (a factory image with an empty env boots a).

use std::collections::BTreeMap;

use super::Mark;
use crate::slot::SlotGroup;

pub const ORDER: &str = "TANDEM_ORDER";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SchemeError {
    #[error("cannot arm for {tries} tries: this backend's boot script counts at most {max}")]
    TooManyTries { tries: u32, max: u32 },
    #[error("cannot arm for 0 tries")]
    ZeroTries,
}

pub fn ok_var(g: SlotGroup) -> String {
    format!("TANDEM_{}_OK", g.as_str().to_uppercase())
}

pub fn verity_var(g: SlotGroup) -> String {
    format!("TANDEM_{}_VERITY", g.as_str().to_uppercase())
}

/// True for the variables of the boot decision (order, OK, tries), which a
/// store must keep together against torn writes.
pub fn is_decision_var(name: &str) -> bool {
    name == ORDER
        || SlotGroup::ALL
            .iter()
            .any(|&g| name == ok_var(g) || name == tries_var(g))
}

/// The state a fresh disk starts with: order `a b`, `a` committed, `b`
/// never to be booted (`OK=0`: it holds nothing yet), and `a`'s verity
/// parameters when its image has them. Empty `TRIES` values stand for
/// "committed" (stores that drop empty values read the same).
pub fn factory(verity_a: Option<&str>) -> BTreeMap<String, String> {
    let mut v: BTreeMap<String, String> = [
        (ORDER.to_string(), "a b".to_string()),
        (ok_var(SlotGroup::A), "1".to_string()),
        (ok_var(SlotGroup::B), "0".to_string()),
        (tries_var(SlotGroup::A), String::new()),
        (tries_var(SlotGroup::B), String::new()),
    ]
    .into_iter()
    .collect();
    set_verity(&mut v, SlotGroup::A, verity_a);
    v
}

/// Sets (or with `None` removes) the group's verity kernel parameters.
pub fn set_verity(v: &mut BTreeMap<String, String>, g: SlotGroup, args: Option<&str>) {
    match args {
        Some(a) if !a.is_empty() => {
            v.insert(verity_var(g), a.to_string());
        }
        _ => {
            v.remove(&verity_var(g));
        }
    }
}

pub fn tries_var(g: SlotGroup) -> String {
    format!("TANDEM_{}_TRIES", g.as_str().to_uppercase())
}

/// The boot order; anything malformed reads as the default `a b`.
pub fn order(v: &BTreeMap<String, String>) -> [SlotGroup; 2] {
    let parsed: Vec<SlotGroup> = v
        .get(ORDER)
        .map(|s| {
            s.split_whitespace()
                .filter_map(|w| w.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    match parsed.first() {
        Some(&g) => [g, g.other()],
        None => [SlotGroup::A, SlotGroup::B],
    }
}

fn set_order(v: &mut BTreeMap<String, String>, first: SlotGroup) {
    v.insert(ORDER.into(), format!("{} {}", first, first.other()));
}

pub fn state(v: &BTreeMap<String, String>, g: SlotGroup) -> Mark {
    match v.get(&ok_var(g)).map(String::as_str) {
        Some("0") => Mark::Bad,
        _ => Mark::Good,
    }
}

pub fn tries_left(v: &BTreeMap<String, String>, g: SlotGroup) -> Option<u32> {
    match v.get(&tries_var(g)).map(|s| s.trim()) {
        None | Some("") => None,
        Some(n) => Some(n.parse().unwrap_or(0)),
    }
}

/// Whether the boot script would boot `g` if it came to it in the order.
pub fn bootable(v: &BTreeMap<String, String>, g: SlotGroup) -> bool {
    state(v, g) == Mark::Good && tries_left(v, g).is_none_or(|n| n > 0)
}

/// The group the boot script boots next: the first bootable one in order.
pub fn primary(v: &BTreeMap<String, String>) -> Option<SlotGroup> {
    order(v).into_iter().find(|&g| bootable(v, g))
}

pub fn set_primary(v: &mut BTreeMap<String, String>, g: SlotGroup) {
    v.insert(ok_var(g), "1".into());
    v.insert(tries_var(g), String::new());
    set_order(v, g);
}

pub fn set_state(v: &mut BTreeMap<String, String>, g: SlotGroup, m: Mark) {
    match m {
        Mark::Good => {
            v.insert(ok_var(g), "1".into());
        }
        Mark::Bad => {
            v.insert(ok_var(g), "0".into());
            v.insert(tries_var(g), String::new());
            if order(v)[0] == g {
                set_order(v, g.other());
            }
        }
    }
}

pub fn arm(
    v: &mut BTreeMap<String, String>,
    g: SlotGroup,
    tries: u32,
    max: u32,
) -> Result<(), SchemeError> {
    if tries == 0 {
        return Err(SchemeError::ZeroTries);
    }
    if tries > max {
        return Err(SchemeError::TooManyTries { tries, max });
    }
    v.insert(ok_var(g), "1".into());
    v.insert(tries_var(g), tries.to_string());
    set_order(v, g);
    Ok(())
}

/// What the boot script does on one boot when `loads(g)` says whether g's
/// kernel and initrd load: the first bootable group in order (a try
/// consumed first), or, when that fails to load or nothing is bootable,
/// the last resort: every group in order, the first that loads. `None`:
/// nothing loads at all. The shipped grub.cfg and boot.cmd do this; the
/// QEMU scenarios check them on real firmware.
pub fn simulate_boot_loading(
    v: &mut BTreeMap<String, String>,
    loads: impl Fn(SlotGroup) -> bool,
) -> Option<SlotGroup> {
    if let Some(g) = simulate_boot(v) {
        if loads(g) {
            return Some(g);
        }
    }
    order(v).into_iter().find(|&g| loads(g))
}

/// What the boot script does on one boot: picks a group and consumes a try.
/// Used to test the scheme against the shipped scripts' intent.
pub fn simulate_boot(v: &mut BTreeMap<String, String>) -> Option<SlotGroup> {
    for g in order(v) {
        if state(v, g) != Mark::Good {
            continue;
        }
        match tries_left(v, g) {
            None => return Some(g),
            Some(0) => continue,
            Some(n) => {
                v.insert(tries_var(g), (n - 1).to_string());
                return Some(g);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use SlotGroup::{A, B};

    #[test]
    fn empty_env_boots_a() {
        let mut v = BTreeMap::new();
        assert_eq!(primary(&v), Some(A));
        assert_eq!(simulate_boot(&mut v), Some(A));
    }

    #[test]
    fn factory_state_boots_a_and_never_b() {
        let mut v = factory(Some("tandem.verity.roothash=ab"));
        assert_eq!(primary(&v), Some(A));
        assert_eq!(state(&v, B), Mark::Bad);
        assert_eq!(tries_left(&v, A), None);
        assert_eq!(v[&verity_var(A)], "tandem.verity.roothash=ab");
        assert!(!v.contains_key(&verity_var(B)));
        assert_eq!(simulate_boot(&mut v), Some(A));
        assert!(!factory(None).contains_key(&verity_var(A)));
    }

    #[test]
    fn trial_then_fallback() {
        let mut v = BTreeMap::new();
        arm(&mut v, B, 2, 3).unwrap();
        assert_eq!(primary(&v), Some(B));
        assert_eq!(simulate_boot(&mut v), Some(B));
        assert_eq!(simulate_boot(&mut v), Some(B));
        assert_eq!(tries_left(&v, B), Some(0));
        assert_eq!(simulate_boot(&mut v), Some(A), "tries used up: fall back");
        assert_eq!(primary(&v), Some(A));
    }

    #[test]
    fn commit_during_trial() {
        let mut v = BTreeMap::new();
        arm(&mut v, B, 1, 3).unwrap();
        assert_eq!(simulate_boot(&mut v), Some(B));
        set_primary(&mut v, B);
        for _ in 0..5 {
            assert_eq!(simulate_boot(&mut v), Some(B));
        }
    }

    #[test]
    fn mark_bad_moves_primary() {
        let mut v = BTreeMap::new();
        set_primary(&mut v, B);
        set_state(&mut v, B, Mark::Bad);
        assert_eq!(primary(&v), Some(A));
        assert_eq!(order(&v), [A, B]);
        set_state(&mut v, A, Mark::Bad);
        assert_eq!(primary(&v), None);
    }

    /// The brick of issue #11: a half-written (its kernel does not load),
    /// b intact but marked bad: nothing is bootable by the variables, and
    /// the last resort must still find b, in either order.
    #[test]
    fn the_last_resort_finds_the_intact_group() {
        for (broken, intact) in [(A, B), (B, A)] {
            for first in [A, B] {
                let mut v = factory(None);
                set_primary(&mut v, first);
                set_state(&mut v, A, Mark::Bad);
                set_state(&mut v, B, Mark::Bad);
                assert_eq!(primary(&v), None);
                let got = simulate_boot_loading(&mut v, |g| g != broken);
                assert_eq!(got, Some(intact), "broken {broken}, order from {first}");
            }
        }
        // A bootable group that fails to load falls through to the other.
        let mut v = factory(None);
        arm(&mut v, B, 1, 3).unwrap();
        assert_eq!(simulate_boot_loading(&mut v, |g| g == A), Some(A));
        assert_eq!(tries_left(&v, B), Some(0), "the try was spent first");
        // Nothing loads: nothing boots (the script reboots and tries again).
        assert_eq!(simulate_boot_loading(&mut factory(None), |_| false), None);
    }

    #[test]
    fn arm_limits() {
        let mut v = BTreeMap::new();
        assert_eq!(arm(&mut v, B, 0, 3), Err(SchemeError::ZeroTries));
        assert_eq!(
            arm(&mut v, B, 4, 3),
            Err(SchemeError::TooManyTries { tries: 4, max: 3 })
        );
        assert!(v.is_empty());
    }

    proptest! {
        /// However many boots happen after arming N tries without a commit,
        /// the armed group boots at most N times and the other group boots after.
        #[test]
        fn armed_trial_runs_out(n in 1u32..=3, boots in 1usize..10) {
            let mut v = BTreeMap::new();
            set_primary(&mut v, A);
            arm(&mut v, B, n, 3).unwrap();
            let seq: Vec<_> = (0..boots).map(|_| simulate_boot(&mut v).unwrap()).collect();
            let b_count = seq.iter().filter(|&&g| g == B).count();
            prop_assert_eq!(b_count, (n as usize).min(boots));
            prop_assert!(seq.iter().skip(n as usize).all(|&g| g == A));
        }
    }
}

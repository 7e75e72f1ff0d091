//! Rollout waves. Each device keeps a random seed in `0..SEED_RANGE`
//! (persisted once, in `channel.json`); a wave of `percent` covers the
//! seeds below `percent * SEED_RANGE / 100`. A device's slice opens at the
//! start of the first wave that covers its seed — so a device in the first
//! 10 % is in every later wave too, and a rollout only ever widens.

use super::Wave;
use crate::timefmt;

/// Seeds are `0..SEED_RANGE` (0.01 % steps).
pub const SEED_RANGE: u32 = 10_000;

/// Checks a plan: starts parse, go forward in time, percentages grow and
/// stay within 1..=100.
pub fn validate(waves: &[Wave]) -> Result<(), String> {
    let mut last: Option<(u64, u8)> = None;
    for (i, w) in waves.iter().enumerate() {
        let start = timefmt::parse_rfc3339(&w.start).ok_or_else(|| {
            format!(
                "wave {i}: start {:?} is not an RFC 3339 UTC time (YYYY-MM-DDTHH:MM:SSZ)",
                w.start
            )
        })?;
        if !(1..=100).contains(&w.percent) {
            return Err(format!("wave {i}: percent {} is not 1 to 100", w.percent));
        }
        if let Some((s, p)) = last {
            if start < s || w.percent <= p {
                return Err(format!(
                    "wave {i}: waves must start later and reach more of the fleet than the one before"
                ));
            }
        }
        last = Some((start, w.percent));
    }
    Ok(())
}

/// When the slice of the device with `seed` opens: `Some(0)` without
/// waves (at once), `None` when no wave covers it (the plan stops short of
/// 100 %). The plan must have passed [`validate`].
pub fn opens_at(waves: &[Wave], seed: u32) -> Option<u64> {
    if waves.is_empty() {
        return Some(0);
    }
    waves
        .iter()
        .find(|w| u64::from(seed) * 100 < u64::from(w.percent) * u64::from(SEED_RANGE))
        .and_then(|w| timefmt::parse_rfc3339(&w.start))
}

/// A seed from 32 random bytes.
pub fn seed_from(bytes: [u8; 32]) -> u32 {
    u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) % SEED_RANGE
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn w(start: &str, percent: u8) -> Wave {
        Wave {
            start: start.into(),
            percent,
        }
    }

    const D1: &str = "2026-12-01T00:00:00Z";
    const D2: &str = "2026-12-02T00:00:00Z";
    const D3: &str = "2026-12-03T00:00:00Z";

    #[test]
    fn slices_open_in_order() {
        let plan = [w(D1, 10), w(D2, 50), w(D3, 100)];
        validate(&plan).unwrap();
        let at = |s| opens_at(&plan, s).map(timefmt::rfc3339);
        assert_eq!(at(0).as_deref(), Some(D1));
        assert_eq!(at(999).as_deref(), Some(D1));
        assert_eq!(at(1000).as_deref(), Some(D2), "10 % is seeds 0..1000");
        assert_eq!(at(4999).as_deref(), Some(D2));
        assert_eq!(at(5000).as_deref(), Some(D3));
        assert_eq!(at(9999).as_deref(), Some(D3));
        assert_eq!(opens_at(&[], 9999), Some(0));
        assert_eq!(opens_at(&[w(D1, 10)], 1000), None, "not covered");
    }

    #[test]
    fn bad_plans_are_refused() {
        for plan in [
            vec![w("tomorrow", 10)],
            vec![w(D1, 0)],
            vec![w(D1, 101)],
            vec![w(D2, 10), w(D1, 50)],
            vec![w(D1, 50), w(D2, 50)],
        ] {
            assert!(validate(&plan).is_err(), "{plan:?}");
        }
    }

    proptest! {
        /// A device in an earlier slice never opens later than one in a
        /// later slice: seeds and opening times are ordered alike.
        #[test]
        fn opening_is_monotonic_in_the_seed(a in 0u32..SEED_RANGE, b in 0u32..SEED_RANGE, p1 in 1u8..50, p2 in 50u8..=100) {
            let plan = [w(D1, p1), w(D3, p2.max(p1 + 1))];
            let (lo, hi) = (a.min(b), a.max(b));
            match (opens_at(&plan, lo), opens_at(&plan, hi)) {
                (Some(x), Some(y)) => prop_assert!(x <= y),
                (None, Some(_)) => prop_assert!(false, "a lower seed is always covered first"),
                _ => {}
            }
        }
    }
}

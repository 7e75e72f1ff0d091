//! bundle::signature::SignatureList::parse over any bytes, then verify
//! against a fixed keyring: never panics; a parsed list survives
//! to_bytes/parse; a successful verification names distinct trusted keys,
//! at least the threshold.
//!
//! Shared by the fuzz target and agent/tests/fuzz_regressions.rs.

use tandem::bundle::keys::keypair_from_seed;
use tandem::bundle::signature::SignatureList;
use tandem::bundle::Keyring;

const MANIFEST: &[u8] = b"{\"format\": 1}\n";

/// Panics if `data` breaks a property above.
pub fn check(data: &[u8]) {
    let Some((&threshold, json)) = data.split_first() else {
        return;
    };
    let Ok(list) = SignatureList::parse(json) else {
        return;
    };
    assert_eq!(SignatureList::parse(&list.to_bytes()).as_ref(), Ok(&list));
    let mut ring = Keyring::default();
    for seed in 1..=3u8 {
        ring.add(keypair_from_seed([seed; 32]).verifying_key(), "fuzz")
            .unwrap();
    }
    let threshold = usize::from(threshold % 4);
    // The real signatures of the three keys, so the fuzzer can mix good
    // entries with its own (the seed corpus has them).
    if let Ok(ids) = list.verify(MANIFEST, &ring, threshold) {
        let mut sorted = ids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), ids.len(), "a key counted twice");
        assert!(ids.len() >= threshold.max(1));
        assert!(ids.iter().all(|id| ring.get(id).is_some()));
    }
}

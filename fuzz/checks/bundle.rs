//! A whole bundle through bundle::reader: UnverifiedBundle::open, verify
//! against a fixed keyring, then every image's chunk index and payload
//! (decoded as the manifest says, chunks checked). Never panics, and never
//! hands out more payload bytes than the header declared.
//!
//! Input: first byte even, the rest is the bundle as it arrives. First byte
//! odd: two bytes of manifest length (LE), the manifest, then the rest of
//! the archive; the target writes the manifest member and a valid signature
//! by the trusted key in front, so the fuzzer reaches the payload code with
//! manifests of its own.
//!
//! Shared by the fuzz target and agent/tests/fuzz_regressions.rs.

use std::io::Read;

use tandem::bundle::chunks::ChunkCheck;
use tandem::bundle::keys::keypair_from_seed;
use tandem::bundle::manifest::MAX_IMAGES;
use tandem::bundle::reader::{NextImage, MANIFEST_NAME, SIGNATURES_NAME};
use tandem::bundle::signature::SignatureList;
use tandem::bundle::tar::{self, Header};
use tandem::bundle::{self as b, Keyring, UnverifiedBundle};

/// Image bytes decoded per input at most (a small payload may claim a
/// large image).
const BUDGET: u64 = 8 << 20;

fn member(out: &mut Vec<u8>, name: &str, data: &[u8]) {
    let h = Header {
        name: name.into(),
        size: data.len() as u64,
        mtime: 0,
    };
    out.extend_from_slice(&tar::build_header(&h).unwrap());
    out.extend_from_slice(data);
    out.resize(out.len() + tar::padding(data.len() as u64) as usize, 0);
}

fn assemble(data: &[u8]) -> Option<Vec<u8>> {
    let (&mode, rest) = data.split_first()?;
    if mode & 1 == 0 {
        return Some(rest.to_vec());
    }
    if rest.len() < 2 {
        return None;
    }
    let len = usize::from(u16::from_le_bytes([rest[0], rest[1]])).min(rest.len() - 2);
    let (manifest, tail) = rest[2..].split_at(len);
    let mut sigs = SignatureList::default();
    sigs.sign(manifest, &keypair_from_seed([1; 32]));
    let mut out = Vec::new();
    member(&mut out, MANIFEST_NAME, manifest);
    member(&mut out, SIGNATURES_NAME, &sigs.to_bytes());
    out.extend_from_slice(tail);
    Some(out)
}

/// Panics if `data` breaks a property above.
pub fn check(data: &[u8]) {
    let Some(bytes) = assemble(data) else {
        return;
    };
    let mut ring = Keyring::default();
    ring.add(keypair_from_seed([1; 32]).verifying_key(), "fuzz")
        .unwrap();
    let Ok(u) = UnverifiedBundle::open(&bytes[..]) else {
        return;
    };
    assert!(u.offset() <= bytes.len() as u64);
    let Ok(mut v) = u.verify(&ring, 1) else {
        return;
    };
    let mut budget = BUDGET;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let before = v.offset();
        let next = match v.next_image() {
            Ok(Some(n)) => n,
            Ok(None) | Err(_) => break,
        };
        let NextImage {
            index,
            image: img,
            chunks,
            payload,
        } = next;
        assert!(index < MAX_IMAGES);
        let mut check = chunks.as_ref().map(ChunkCheck::new);
        let Ok(mut src) = b::decode(payload, &img) else {
            continue;
        };
        let mut got = 0u64;
        while budget > 0 {
            let want = buf.len().min(usize::try_from(budget).unwrap_or(usize::MAX));
            match src.read(&mut buf[..want]) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    got += n as u64;
                    budget -= n as u64;
                    if got > img.size {
                        break; // the installer's TooLong
                    }
                    if let Some(c) = check.as_mut() {
                        if c.update(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
        }
        drop(src);
        assert!(v.offset() >= before);
        assert!(v.offset() <= bytes.len() as u64);
        // Carry on with the next image even after a failed payload: the
        // reader must skip what is left of this one, or refuse, not panic.
    }
}

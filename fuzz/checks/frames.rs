//! bundle::frames over arbitrary payload bytes: FrameReader splits them,
//! decode_frame decodes each frame; never panics, never hands out more
//! image bytes than the declared size, and every frame it accepts lies
//! inside the buffer. Then the round trip: frames::encode of the input,
//! walked and decoded again, gives back the input.
//!
//! Shared by the fuzz target and agent/tests/fuzz_regressions.rs.

use tandem::bundle::frames::{self, FrameReader};

/// Image bytes decoded per input at most, so a tiny frame that claims a
/// huge image costs bounded time.
const BUDGET: u64 = 8 << 20;

/// Panics if `data` breaks a property above.
pub fn check(data: &[u8]) {
    let Some((&sel, payload)) = data.split_first() else {
        return;
    };
    // frame_size as the manifest allows it (4 KiB..1 MiB, powers of two),
    // and an image size near what the payload could hold.
    let frame_size = 4096u32 << (sel % 9);
    let size = match sel >> 4 {
        0 => 0,
        1 => u64::MAX,
        k => (payload.len() as u64) * u64::from(k) * 64 + u64::from(sel),
    };
    let mut r = FrameReader::new(payload, frame_size, size);
    let mut dctx = frames::context();
    let mut input = Vec::new();
    let mut yielded = 0u64;
    let mut out = Vec::new();
    loop {
        input.clear();
        match r.next_frame(&mut input) {
            Ok(Some(f)) => {
                assert!(f.start <= f.end && f.end == input.len());
                assert!(f.yields > 0 && f.yields <= frame_size as usize);
                yielded += f.yields as u64;
                assert!(yielded <= size);
                if yielded > BUDGET {
                    break;
                }
                out.resize(f.yields, 0);
                if frames::decode_frame(&mut dctx, &f, &input, &mut out).is_err() {
                    break;
                }
            }
            Ok(None) => {
                assert_eq!(yielded, size, "the frames end where the image does");
                break;
            }
            Err(_) => break,
        }
    }

    // Round trip: the payload's bytes as an image.
    if payload.len() <= 64 << 10 {
        let fs = 4096u32 << (sel % 3);
        let mut enc = Vec::new();
        let n = frames::encode(&mut &payload[..], &mut enc, fs, 1).unwrap();
        assert_eq!(n, payload.len() as u64);
        let mut r = FrameReader::new(&enc[..], fs, n);
        let mut input = Vec::new();
        let mut back = Vec::new();
        while let Some(f) = r.next_frame(&mut input).expect("own frames walk") {
            let mut piece = vec![0u8; f.yields];
            frames::decode_frame(&mut dctx, &f, &input, &mut piece).expect("own frames decode");
            back.extend_from_slice(&piece);
        }
        assert!(back == payload, "round trip");
    }
}

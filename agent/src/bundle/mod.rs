//! The update bundle: manifest, signatures, keys, and the streaming reader
//! and writer. See docs/bundle-format.md.

pub mod cdc;
pub mod chunks;
pub mod compress;
pub mod frames;
pub mod keys;
pub mod manifest;
pub mod reader;
pub mod signature;
pub mod tar;
pub mod writer;

pub use keys::{KeyId, Keyring};
pub use manifest::{Compression, Image, Manifest};
pub use reader::{BundleError, UnverifiedBundle, VerifiedBundle};

use std::io::{self, Read};

/// Largest zstd window accepted (2^23 = 8 MiB), which bounds the decoder's
/// memory. `bundle create` stays within it.
pub const ZSTD_WINDOW_LOG_MAX: u32 = 23;

/// Wraps a payload stream in the decoder its manifest entry names.
pub fn decode<'a, R: Read + 'a>(payload: R, image: &Image) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match (image.compression, image.frame_size) {
        (Compression::None, _) => Box::new(payload),
        (Compression::Zstd, Some(frame)) => {
            Box::new(frames::FramedDecoder::new(payload, frame, image.size))
        }
        (Compression::Zstd, None) => {
            let mut d = zstd::stream::read::Decoder::new(payload)?;
            d.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
            Box::new(d)
        }
    })
}

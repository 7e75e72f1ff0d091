#![no_main]

#[path = "../checks/tuf_metadata.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));

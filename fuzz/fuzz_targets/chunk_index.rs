#![no_main]

#[path = "../checks/chunk_index.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));

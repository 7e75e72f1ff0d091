#![no_main]

#[path = "../checks/uboot_env.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));

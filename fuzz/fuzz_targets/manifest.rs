//! The manifest parser (checks/manifest.rs), and one more property that
//! needs the initramfs crate: dm-verity parameters the agent passes to the
//! kernel for an accepted manifest are ones the initramfs accepts, with the
//! same values (else the new slot could never boot).
#![no_main]

#[path = "../checks/manifest.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some(m) = check::check(data) else {
        return;
    };
    for v in m.images.iter().filter_map(|i| i.verity.as_ref()) {
        // Err: the install refuses the bundle before writing (PolicyError).
        let Ok(args) = tandem::install::verity_kernel_args(v) else {
            continue;
        };
        let line = format!("ro tandem.slot=b {args}");
        let c = tandem_initramfs::cmdline::parse(&line)
            .unwrap_or_else(|e| panic!("initramfs refuses {line:?}: {e}"));
        let p = c.verity.expect("verity parameters");
        assert_eq!(p.root_hash, v.root_hash);
        assert_eq!(p.hash_offset, v.hash_offset);
        assert_eq!(p.salt.unwrap_or_default(), v.salt);
    }
});

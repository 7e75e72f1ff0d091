use super::*;

const H: &str = "4392712ba01368efdf14b05c76f9e4df0d53664630b5d48632ed17a137f39076";

fn key_of(e: &VerityError) -> Option<&'static str> {
    match e {
        VerityError::BadValue { key, .. } => Some(key),
        _ => None,
    }
}

#[test]
fn formatter_accepts_what_the_initramfs_boots() {
    let upper = H.to_ascii_uppercase();
    let cases: &[(&str, u64, &str, String)] = &[
        (
            H,
            4096,
            "",
            format!("{ROOT_HASH}={H} {HASH_OFFSET}=4096 {SALT}=-"),
        ),
        (
            H,
            8 << 20,
            "-",
            format!("{ROOT_HASH}={H} {HASH_OFFSET}=8388608 {SALT}=-"),
        ),
        (
            &upper,
            4096,
            "00FF",
            format!("{ROOT_HASH}={H} {HASH_OFFSET}=4096 {SALT}=00ff"),
        ),
    ];
    for (root, offset, salt, want) in cases {
        assert_eq!(
            kernel_args(root, *offset, salt, 4096, 4096, "sha256").as_ref(),
            Ok(want),
            "{root} {offset} {salt}"
        );
    }
}

#[test]
fn formatter_refuses_what_the_initramfs_would_reject() {
    let long_salt = "ab".repeat(MAX_SALT_BYTES + 1);
    let cases: Vec<(&str, u64, &str, u32, u32, &str, &str)> = vec![
        ("abcd", 4096, "", 4096, 4096, "sha256", "64 hex digits"),
        (&H[..63], 4096, "", 4096, 4096, "sha256", "64 hex digits"),
        (
            "g".repeat(64).leak(),
            4096,
            "",
            4096,
            4096,
            "sha256",
            "64 hex digits",
        ),
        (H, 0, "", 4096, 4096, "sha256", "multiple of 4096"),
        (H, 4097, "", 4096, 4096, "sha256", "multiple of 4096"),
        (H, 4096, "abc", 4096, 4096, "sha256", "even number"),
        (H, 4096, "zz", 4096, 4096, "sha256", "even number"),
        (H, 4096, &long_salt, 4096, 4096, "sha256", "256 bytes"),
        (H, 4096, "", 1024, 4096, "sha256", "data block size"),
        (H, 4096, "", 4096, 512, "sha256", "hash block size"),
        (H, 4096, "", 4096, 4096, "sha512", "hash algorithm"),
    ];
    for (root, offset, salt, db, hb, alg, why) in cases {
        let e = kernel_args(root, offset, salt, db, hb, alg).unwrap_err();
        assert!(e.to_string().contains(why), "{why} in {e}");
    }
}

#[test]
fn params_as_found_on_a_command_line() {
    let v = |offset, salt: Option<&str>| Some(Verity::new(H, offset, salt).unwrap());
    let ok: Vec<(String, Option<Verity>)> = vec![
        ("console=ttyS0 tandem.slot=a".into(), None),
        (format!("{ROOT_HASH}={H} {HASH_OFFSET}=8192"), v(8192, None)),
        (
            format!("{ROOT_HASH}={H} {HASH_OFFSET}=8192 {SALT}=-"),
            v(8192, None),
        ),
        (
            format!("{ROOT_HASH}={H}\t{HASH_OFFSET}=4096 {SALT}=AABB"),
            v(4096, Some("aabb")),
        ),
        // the last one wins
        (
            format!("{HASH_OFFSET}=4 {ROOT_HASH}={H} {HASH_OFFSET}=4096"),
            v(4096, None),
        ),
        // after -- belongs to init
        (
            format!("{ROOT_HASH}={H} {HASH_OFFSET}=4096 -- {SALT}=zz"),
            v(4096, None),
        ),
    ];
    for (line, want) in ok {
        assert_eq!(Verity::parse_kernel_args(&line), Ok(want), "{line}");
    }
    let refused: Vec<(String, VerityError)> = vec![
        (format!("{ROOT_HASH}={H}"), VerityError::NoHashOffset),
        (
            format!("{HASH_OFFSET}=4096"),
            VerityError::NoRootHash(HASH_OFFSET),
        ),
        (format!("{SALT}=00"), VerityError::NoRootHash(SALT)),
        (format!("{SALT}=-"), VerityError::NoRootHash(SALT)),
        (
            format!("{ROOT_HASH}=abcd {HASH_OFFSET}=4096"),
            bad(ROOT_HASH, "", ""),
        ),
        (
            format!("{ROOT_HASH}={H} {HASH_OFFSET}=+4096"),
            bad(HASH_OFFSET, "", ""),
        ),
        (
            format!("{ROOT_HASH}={H} {HASH_OFFSET}=-4096"),
            bad(HASH_OFFSET, "", ""),
        ),
        (
            format!("{ROOT_HASH}={H} {HASH_OFFSET}= "),
            bad(HASH_OFFSET, "", ""),
        ),
        (
            format!("{ROOT_HASH}={H} {HASH_OFFSET}=0"),
            bad(HASH_OFFSET, "", ""),
        ),
        (
            format!("{ROOT_HASH}={H} {HASH_OFFSET}=99999999999999999999999"),
            bad(HASH_OFFSET, "", ""),
        ),
        (
            format!("{ROOT_HASH}={H} {HASH_OFFSET}=4096 {SALT}="),
            bad(SALT, "", ""),
        ),
        (
            format!("{ROOT_HASH}={H} {HASH_OFFSET}=4096 {SALT}=abc"),
            bad(SALT, "", ""),
        ),
    ];
    for (line, want) in refused {
        let got = Verity::parse_kernel_args(&line).unwrap_err();
        match key_of(&want) {
            Some(k) => assert_eq!(key_of(&got), Some(k), "{line}: {got}"),
            None => assert_eq!(got, want, "{line}"),
        }
    }
}

#[test]
fn errors_name_the_parameter() {
    let e = parse_hash_offset("4097").unwrap_err().to_string();
    assert_eq!(
        e,
        "tandem.verity.hashoffset=\"4097\": must be a positive multiple of 4096 (the filesystem is padded to 4 KiB)"
    );
    let e = kernel_args(H, 4096, "", 4096, 4096, "sha1")
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "dm-verity hash algorithm \"sha1\" is not supported: the initramfs uses sha256"
    );
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the formatter writes, the validator reads back as the
        /// same values.
        #[test]
        fn round_trip(root in "[0-9a-fA-F]{64}", blocks in 1u64..(1 << 40), salt in "([0-9a-fA-F]{2}){0,256}") {
            let args = kernel_args(&root, blocks * 4096, &salt, 4096, 4096, "sha256").unwrap();
            let v = Verity::parse_kernel_args(&args).unwrap().unwrap();
            prop_assert_eq!(v.root_hash(), root.to_ascii_lowercase());
            prop_assert_eq!(v.hash_offset(), blocks * 4096);
            let want = (!salt.is_empty()).then(|| salt.to_ascii_lowercase());
            prop_assert_eq!(v.salt(), want.as_deref());
            prop_assert_eq!(v.kernel_args(), args);
        }

        /// Arbitrary text never panics the validator.
        #[test]
        fn never_panics(line in "\\PC{0,200}") {
            let _ = Verity::parse_kernel_args(&line);
        }
    }
}

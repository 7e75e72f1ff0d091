//! systemd-boot 252's menu order and default choice, ported from
//! `src/boot/efi/boot.c` (Debian 12's `systemd-boot-efi` 252.39). Pure.
//!
//! `config_entry_compare`, in order of precedence:
//! 1. entries with a counter and 0 tries left go last;
//! 2. entries with a `sort-key` go before entries without one;
//! 3. if both have one: `sort-key` ascending (`strcmp16`), then
//!    `machine-id` ascending (a missing one first), then `version`
//!    *descending* by `strverscmp_improved` (newest first);
//! 4. the id *descending* by `strverscmp_improved`. In systemd-boot the id
//!    is the whole file name, counter included, lower-cased (bootctl 252
//!    strips the counter first, so two files of one entry tie there);
//! 5. if both have counters: more tries left first, then fewer tries done.
//!
//! The entries are sorted with a stable insertion sort, so remaining ties
//! keep directory order; we break them by file name.
//!
//! `config_default_entry_select`: the first entry matching
//! `LoaderEntryOneShot`, else `LoaderEntryDefault` (or, if that is
//! `@saved`, `LoaderEntryLastBooted`), else `default` in `loader.conf`
//! (same `@saved` rule), else the *first entry in the order*. Entries with
//! no tries left are not skipped: if every entry is exhausted, the first
//! exhausted one boots. Patterns are lower-cased and matched against the
//! id with `efi_fnmatch` (`*`, `?`, `[...]`, `\`).

use std::cmp::Ordering;

use super::entry::{parse_tries, Conf, Tries};

/// One menu entry systemd-boot would show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The file name in `loader/entries`.
    pub file: String,
    /// systemd-boot's id: the file name, lower-cased.
    pub id: String,
    pub conf: Conf,
    pub tries: Option<Tries>,
}

impl Candidate {
    /// The entry systemd-boot makes of `file`, if any. `loader_exists`: the
    /// `linux`/`efi` file is on the ESP (systemd-boot drops it otherwise).
    pub fn new(file: &str, content: &str, loader_exists: bool) -> Option<Candidate> {
        let lower = file.to_ascii_lowercase();
        if file.starts_with('.') || !lower.ends_with(".conf") || lower.starts_with("auto-") {
            return None;
        }
        let conf = Conf::parse(content);
        (conf.bootable() && loader_exists).then(|| Candidate {
            file: file.to_string(),
            id: lower,
            tries: parse_tries(file),
            conf,
        })
    }

    pub fn exhausted(&self) -> bool {
        self.tries.is_some_and(|t| t.left == 0)
    }
}

/// `config_entry_compare`, then the file name for a total order.
pub fn compare(a: &Candidate, b: &Candidate) -> Ordering {
    compare_sd_boot(a, b).then_with(|| a.file.cmp(&b.file))
}

fn compare_sd_boot(a: &Candidate, b: &Candidate) -> Ordering {
    let utf16 = |s: &str| s.encode_utf16().collect::<Vec<_>>();
    a.exhausted()
        .cmp(&b.exhausted())
        .then_with(|| a.conf.sort_key.is_none().cmp(&b.conf.sort_key.is_none()))
        .then_with(|| match (&a.conf.sort_key, &b.conf.sort_key) {
            (Some(x), Some(y)) => utf16(x)
                .cmp(&utf16(y))
                .then_with(|| {
                    let (p, q) = (&a.conf.machine_id, &b.conf.machine_id);
                    p.as_deref().map(utf16).cmp(&q.as_deref().map(utf16))
                })
                .then_with(|| {
                    strverscmp_improved(
                        b.conf.version.as_deref().unwrap_or(""),
                        a.conf.version.as_deref().unwrap_or(""),
                    )
                }),
            _ => Ordering::Equal,
        })
        .then_with(|| strverscmp_improved(&b.id, &a.id))
        .then_with(|| match (a.tries, b.tries) {
            (Some(x), Some(y)) => y.left.cmp(&x.left).then(x.done.cmp(&y.done)),
            _ => Ordering::Equal,
        })
}

/// Sorts like systemd-boot's menu.
pub fn sort(entries: &mut [Candidate]) {
    entries.sort_by(compare);
}

fn valid_version_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '~' | '-' | '^' | '.')
}

/// systemd's `strverscmp_improved` (src/fundamental/string-util-fundamental.c):
/// rpmvercmp-like; `~` sorts oldest, then `-`, `^`, `.` prefixes; numeric
/// segments compare by value and beat alphabetic ones; other characters
/// only separate segments.
pub fn strverscmp_improved(a: &str, b: &str) -> Ordering {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let at = |s: &[char], i: usize| s.get(i).copied().unwrap_or('\0');
    let (mut i, mut j) = (0, 0);
    loop {
        while at(&a, i) != '\0' && !valid_version_char(at(&a, i)) {
            i += 1;
        }
        while at(&b, j) != '\0' && !valid_version_char(at(&b, j)) {
            j += 1;
        }
        if at(&a, i) == '~' || at(&b, j) == '~' {
            let r = (at(&a, i) != '~').cmp(&(at(&b, j) != '~'));
            if r.is_ne() {
                return r;
            }
            i += 1;
            j += 1;
        }
        if at(&a, i) == '\0' || at(&b, j) == '\0' {
            return at(&a, i).cmp(&at(&b, j));
        }
        for sep in ['-', '^', '.'] {
            if at(&a, i) == sep || at(&b, j) == sep {
                let r = (at(&a, i) != sep).cmp(&(at(&b, j) != sep));
                if r.is_ne() {
                    return r;
                }
                i += 1;
                j += 1;
            }
        }
        let (mut aa, mut bb) = (i, j);
        if at(&a, i).is_ascii_digit() || at(&b, j).is_ascii_digit() {
            while at(&a, aa).is_ascii_digit() {
                aa += 1;
            }
            while at(&b, bb).is_ascii_digit() {
                bb += 1;
            }
            let r = (i != aa).cmp(&(j != bb));
            if r.is_ne() {
                return r;
            }
            while at(&a, i) == '0' {
                i += 1;
            }
            while at(&b, j) == '0' {
                j += 1;
            }
            let r = (aa - i)
                .cmp(&(bb - j))
                .then_with(|| a[i..aa].cmp(&b[j..bb]));
            if r.is_ne() {
                return r;
            }
        } else {
            while at(&a, aa).is_ascii_alphabetic() {
                aa += 1;
            }
            while at(&b, bb).is_ascii_alphabetic() {
                bb += 1;
            }
            let m = (aa - i).min(bb - j);
            let r = a[i..i + m]
                .cmp(&b[j..j + m])
                .then_with(|| (aa - i).cmp(&(bb - j)));
            if r.is_ne() {
                return r;
            }
        }
        i = aa;
        j = bb;
    }
}

/// systemd-boot's `efi_fnmatch` (src/boot/efi/efi-string.c).
pub fn fnmatch(pattern: &str, haystack: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let h: Vec<char> = haystack.chars().collect();
    let (mut pi, mut hi) = (0, 0);
    let mut first = true;
    loop {
        let (matched, tail) = fnmatch_prefix(&p, pi, &h, hi);
        if first {
            if !matched {
                return false;
            }
            if tail.is_none() {
                return true;
            }
            first = false;
        }
        match tail {
            Some((tp, th)) => {
                pi = tp;
                hi = th;
            }
            None => {
                if matched || hi >= h.len() {
                    return matched;
                }
                hi += 1;
            }
        }
    }
}

/// Matches `p[pi..]` against the start of `h[hi..]` up to the first `*`;
/// returns whether it matched and, at a `*`, where both continue.
fn fnmatch_prefix(
    p: &[char],
    mut pi: usize,
    h: &[char],
    mut hi: usize,
) -> (bool, Option<(usize, usize)>) {
    let at = |s: &[char], i: usize| s.get(i).copied().unwrap_or('\0');
    loop {
        match at(p, pi) {
            '\0' => return (at(h, hi) == '\0', None),
            '\\' => {
                pi += 1;
                if at(p, pi) == '\0' || at(p, pi) != at(h, hi) {
                    return (false, None);
                }
            }
            '?' => {
                if at(h, hi) == '\0' {
                    return (false, None);
                }
            }
            '*' => {
                while at(p, pi) == '*' {
                    pi += 1;
                }
                return (true, Some((pi, hi)));
            }
            '[' => {
                if at(h, hi) == '\0' {
                    return (false, None);
                }
                let (mut first, mut can_range, mut matched) = (true, true, false);
                loop {
                    pi += 1;
                    let c = at(p, pi);
                    if c == '\0' {
                        return (false, None);
                    }
                    if c == '\\' {
                        pi += 1;
                        if at(p, pi) == '\0' {
                            return (false, None);
                        }
                        matched |= at(p, pi) == at(h, hi);
                        can_range = true;
                        first = false;
                        continue;
                    }
                    if c == ']' && !first {
                        break;
                    }
                    if c == '-' && can_range && !first && at(p, pi + 1) != ']' {
                        let low = at(p, pi - 1);
                        pi += 1;
                        if at(p, pi) == '\\' {
                            pi += 1;
                        }
                        if at(p, pi) == '\0' {
                            return (false, None);
                        }
                        matched |= low <= at(h, hi) && at(h, hi) <= at(p, pi);
                        can_range = false;
                        first = false;
                        continue;
                    }
                    matched |= c == at(h, hi);
                    can_range = true;
                    first = false;
                }
                if !matched {
                    return (false, None);
                }
            }
            c => {
                if c != at(h, hi) {
                    return (false, None);
                }
            }
        }
        pi += 1;
        hi += 1;
    }
}

/// The settings that can override "first entry": EFI variables and
/// `loader.conf`'s `default`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selectors {
    /// `LoaderEntryOneShot`.
    pub oneshot: Option<String>,
    /// `LoaderEntryDefault` (`bootctl set-default`).
    pub efi_default: Option<String>,
    /// `default` in `loader/loader.conf` (the last one counts).
    pub config_default: Option<String>,
    /// `LoaderEntryLastBooted`, used for `@saved`.
    pub last_booted: Option<String>,
}

/// Why systemd-boot picks its default entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chosen {
    OneShot(String),
    EfiDefault(String),
    ConfigDefault(String),
    Saved(String),
    First,
}

impl Chosen {
    /// What makes it so, and how to undo that.
    pub fn explain(&self) -> String {
        match self {
            Chosen::OneShot(p) => format!(
                "the EFI variable LoaderEntryOneShot ({p:?}) picks it for the next boot; clear it with `bootctl set-oneshot ''`"
            ),
            Chosen::EfiDefault(p) => format!(
                "the EFI variable LoaderEntryDefault ({p:?}) picks it; clear it with `bootctl set-default ''`"
            ),
            Chosen::ConfigDefault(p) => format!(
                "`default {p}` in loader/loader.conf picks it; remove that line (Tandem orders entries by version)"
            ),
            Chosen::Saved(p) => format!(
                "`@saved` picks the last booted entry ({p:?}); remove the `@saved` default"
            ),
            Chosen::First => "it sorts first (sort-key, then version); remove it or give it a sort-key after \"tandem\"".into(),
        }
    }
}

/// `config_default_entry_select` over entries already in menu order.
pub fn select_default(order: &[Candidate], s: &Selectors) -> Option<(usize, Chosen)> {
    if order.is_empty() {
        return None;
    }
    let lower = |o: &Option<String>| o.as_ref().map(|p| p.to_lowercase());
    let find = |p: &Option<String>| {
        p.as_ref()
            .and_then(|p| order.iter().position(|e| fnmatch(p, &e.id)))
    };
    let (oneshot, efi, conf, saved) = (
        lower(&s.oneshot),
        lower(&s.efi_default),
        lower(&s.config_default),
        lower(&s.last_booted),
    );
    if let Some(i) = find(&oneshot) {
        return Some((i, Chosen::OneShot(oneshot.unwrap_or_default())));
    }
    let saved_efi = efi.as_deref() == Some("@saved");
    let saved_conf = conf.as_deref() == Some("@saved");
    if let Some(i) = find(if saved_efi { &saved } else { &efi }) {
        let why = if saved_efi {
            Chosen::Saved(saved.unwrap_or_default())
        } else {
            Chosen::EfiDefault(efi.unwrap_or_default())
        };
        return Some((i, why));
    }
    let pick = match (saved_conf, saved_efi) {
        (true, true) => None,
        (true, false) => {
            find(&saved).map(|i| (i, Chosen::Saved(saved.clone().unwrap_or_default())))
        }
        (false, _) => {
            find(&conf).map(|i| (i, Chosen::ConfigDefault(conf.clone().unwrap_or_default())))
        }
    };
    pick.or(Some((0, Chosen::First)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cand(file: &str, content: &str) -> Candidate {
        Candidate::new(file, content, true).unwrap()
    }

    fn ours(file: &str, version: u64) -> Candidate {
        cand(
            file,
            &format!("sort-key tandem\nversion {version}\nlinux /k\n"),
        )
    }

    #[test]
    fn strverscmp_documented_order() {
        // The list in strverscmp_improved's comment, oldest first.
        let list = [
            "122.1",
            "123~rc1-1",
            "123",
            "123-a",
            "123-a.1",
            "123-1",
            "123-1.1",
            "123^post1",
            "123.a-1",
            "123.1-1",
            "123a-1",
            "124-1",
        ];
        for (i, x) in list.iter().enumerate() {
            for (j, y) in list.iter().enumerate() {
                assert_eq!(strverscmp_improved(x, y), i.cmp(&j), "{x} vs {y}");
            }
        }
        assert_eq!(strverscmp_improved("10", "9"), Ordering::Greater);
        assert_eq!(strverscmp_improved("007", "7"), Ordering::Equal);
        assert_eq!(strverscmp_improved("123_a", "123a"), Ordering::Equal);
        // Our two files of one entry: the counted name is "newer".
        assert_eq!(
            strverscmp_improved("tandem-b+1-1.conf", "tandem-b.conf"),
            Ordering::Greater
        );
        assert_eq!(
            strverscmp_improved("tandem-b+2.conf", "tandem-b+1-1.conf"),
            Ordering::Greater
        );
    }

    #[test]
    fn fnmatch_table() {
        let cases = [
            ("tandem-*", "tandem-b+1.conf", true),
            ("*", "", true),
            ("", "", true),
            ("", "a", false),
            ("tandem-?.conf", "tandem-a.conf", true),
            ("tandem-?.conf", "tandem-ab.conf", false),
            ("tandem-[ab].conf", "tandem-b.conf", true),
            ("tandem-[a-c].conf", "tandem-c.conf", true),
            ("tandem-[!a].conf", "tandem-b.conf", false),
            ("*-*.conf", "4a3b-6.1.conf", true),
            ("4a3b-*", "tandem-a.conf", false),
            ("a\\*", "a*", true),
            ("a\\*", "ab", false),
            ("*.conf", "x.conf.bak", false),
            ("*b*b", "abcb", true),
            ("[]]", "]", true),
            ("[a-]", "-", true),
        ];
        for (p, h, want) in cases {
            assert_eq!(fnmatch(p, h), want, "{p:?} {h:?}");
        }
    }

    #[test]
    fn menu_order() {
        let mut v = vec![
            cand("debian.conf", "linux /k\n"),
            ours("tandem-a.conf", 5),
            ours("tandem-b+0-3.conf", 9),
            ours("tandem-b+2.conf", 7),
            cand("zzz.conf", "sort-key aaa\nlinux /k\n"),
            ours("tandem-a+1-1.conf", 5),
        ];
        sort(&mut v);
        let files: Vec<_> = v.iter().map(|c| c.file.as_str()).collect();
        assert_eq!(
            files,
            [
                "zzz.conf",          // sort-key "aaa" < "tandem"
                "tandem-b+2.conf",   // version 7
                "tandem-a+1-1.conf", // version 5, id newer than "tandem-a.conf"
                "tandem-a.conf",
                "debian.conf",       // no sort-key: after all with one
                "tandem-b+0-3.conf", // no tries left: last, whatever its version
            ]
        );
        assert!(Candidate::new(".tandem-a.tmp", "linux /k\n", true).is_none());
        assert!(Candidate::new("auto-x.conf", "linux /k\n", true).is_none());
        assert!(Candidate::new("a.conf", "linux /k\n", false).is_none());
        assert!(Candidate::new("a.conf", "title x\n", true).is_none());
    }

    #[test]
    fn default_selection() {
        let mut v = vec![ours("tandem-a.conf", 5), ours("tandem-b+2.conf", 7)];
        sort(&mut v);
        let none = Selectors::default();
        assert_eq!(select_default(&v, &none), Some((0, Chosen::First)));
        assert_eq!(select_default(&[], &none), None);
        // bootctl install writes `default <machine-id>-*`: matches nothing of ours.
        let s = Selectors {
            config_default: Some("4a3b-*".into()),
            ..none.clone()
        };
        assert_eq!(select_default(&v, &s), Some((0, Chosen::First)));
        let s = Selectors {
            config_default: Some("TANDEM-A*".into()),
            ..none.clone()
        };
        assert_eq!(
            select_default(&v, &s),
            Some((1, Chosen::ConfigDefault("tandem-a*".into())))
        );
        let s = Selectors {
            efi_default: Some("@saved".into()),
            last_booted: Some("tandem-a.conf".into()),
            config_default: Some("tandem-b*".into()),
            ..none.clone()
        };
        assert_eq!(
            select_default(&v, &s),
            Some((1, Chosen::Saved("tandem-a.conf".into())))
        );
        let s = Selectors {
            oneshot: Some("tandem-a.conf".into()),
            efi_default: Some("tandem-b*".into()),
            ..none
        };
        assert_eq!(
            select_default(&v, &s),
            Some((1, Chosen::OneShot("tandem-a.conf".into())))
        );
    }

    proptest! {
        #[test]
        fn strverscmp_is_an_order(a in "[0-9a-z.~^+_-]{0,8}", b in "[0-9a-z.~^+_-]{0,8}", c in "[0-9a-z.~^+_-]{0,8}") {
            prop_assert_eq!(strverscmp_improved(&a, &b), strverscmp_improved(&b, &a).reverse());
            prop_assert_eq!(strverscmp_improved(&a, &a), Ordering::Equal);
            if strverscmp_improved(&a, &b).is_le() && strverscmp_improved(&b, &c).is_le() {
                prop_assert!(strverscmp_improved(&a, &c).is_le(), "{} {} {}", a, b, c);
            }
        }

        /// Generations order numerically, whatever their length.
        #[test]
        fn generations_order_numerically(x in 0u64..u64::MAX, y in 0u64..u64::MAX) {
            prop_assert_eq!(strverscmp_improved(&x.to_string(), &y.to_string()), x.cmp(&y));
        }

        /// The newest non-exhausted Tandem entry is first, whatever the
        /// counters and the directory order.
        #[test]
        fn newest_good_entry_first(
            ga in 1u64..1000, gb in 1u64..1000,
            la in proptest::option::of(0u32..5), lb in proptest::option::of(0u32..5),
            rev in any::<bool>(),
        ) {
            prop_assume!(ga != gb);
            let name = |g: &str, l: Option<u32>| match l {
                None => format!("tandem-{g}.conf"),
                Some(l) => format!("tandem-{g}+{l}-1.conf"),
            };
            let mut v = vec![ours(&name("a", la), ga), ours(&name("b", lb), gb)];
            if rev { v.reverse(); }
            sort(&mut v);
            let exhausted = |l: Option<u32>| l == Some(0);
            let want_a = match (exhausted(la), exhausted(lb)) {
                (false, true) => true,
                (true, false) => false,
                _ => ga > gb,
            };
            prop_assert_eq!(v[0].file.starts_with("tandem-a"), want_a);
        }

        #[test]
        fn fnmatch_never_panics(p in "[a-c*?\\[\\]\\\\!-]{0,10}", h in "[a-c\\]-]{0,10}") {
            let _ = fnmatch(&p, &h);
        }
    }
}

//! tandem_initramfs::cmdline::parse over any string: never panics; what it
//! accepts, written out again, parses to the same; and the agent
//! (slot::booted_from_cmdline) never reads another slot from it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem_initramfs::cmdline::{self, Cmdline};

fn render(c: &Cmdline) -> String {
    let mut s = format!("tandem.slot={}", c.slot.as_str());
    if let Some(v) = &c.verity {
        s += &format!(
            " tandem.verity.roothash={} tandem.verity.hashoffset={} tandem.verity.salt={}",
            v.root_hash,
            v.hash_offset,
            v.salt.as_deref().unwrap_or("-")
        );
    }
    if c.debug {
        s += " tandem.debug";
    }
    s
}

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    let debug = cmdline::wants_debug(line);
    let Ok(c) = cmdline::parse(line) else {
        return;
    };
    assert_eq!(c.debug, debug);
    let again = cmdline::parse(&render(&c)).expect("rendered line parses");
    assert_eq!(again, c);
    // The agent reads the booted slot from the same line: it must never
    // name another slot, nor miss it. It may refuse a line the initramfs
    // takes (it fails closed: no install, no commit), as it does today for
    // `tandem.slot=a tandem.slot=b` (the initramfs takes the last) and for
    // a second `tandem.slot=` after `--` (the initramfs stops there).
    match tandem::slot::booted_from_cmdline(line, "tandem.slot") {
        Ok(Some(g)) => assert_eq!(g.as_str(), c.slot.as_str(), "{line:?}"),
        Ok(None) => panic!(
            "initramfs boots slot {} but the agent finds no slot in {line:?}",
            c.slot.as_str()
        ),
        Err(_) => {}
    }
});

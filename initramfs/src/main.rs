//! `/init` of the Tandem initramfs. See the library docs and README.md.

const HELP: &str = "\
tandem-initramfs: the /init of a Tandem initramfs (docs/disk-layout.md).
It runs only as PID 1 of an initramfs: it mounts the slot named by
tandem.slot=a|b on the kernel command line and switches root into it.
Arguments are passed on to the slot's /sbin/init.";

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if !tandem_initramfs::sys::is_pid1() {
        let help = args.iter().any(|a| a == "--help" || a == "-h");
        eprintln!("{HELP}");
        std::process::exit(if help { 0 } else { 2 });
    }
    tandem_initramfs::init::run(args)
}

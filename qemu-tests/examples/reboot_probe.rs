//! Probe for the clean-reboot hang once seen after an install
//! (qemu-tests/README.md): boots the debian image, runs the `PRE` commands
//! in the guest, then reboots with `REBOOT`, and says whether GRUB came up;
//! `ROUNDS` times in one QEMU process (scenario 9's hangs were on the
//! second reboot), with the `PRE2` commands before the later reboots.
//!
//! Environment: `IMAGES` (the images directory, as for `tandem-qemu
//! scenarios`), `PRE` and `PRE2` (guest commands separated by `;`),
//! `REBOOT` (default `systemctl reboot`), `ROUNDS` (default 1), `NAME` and
//! `WORK` (VM name and work directory, to run two at once). Exit status 0
//! when GRUB came up every time, 1 otherwise.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use tandem_qemu::scenario::Fixture;
use tandem_qemu::{RigError, Vm};

fn var(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn probe() -> Result<bool, RigError> {
    let rounds: usize = var("ROUNDS", "1").parse().map_err(|e| {
        RigError::Setup(format!(
            "ROUNDS={:?}: not a number of reboots: {e}",
            var("ROUNDS", "")
        ))
    })?;
    let images = PathBuf::from(var("IMAGES", "work-out/images"));
    let work = PathBuf::from(var("WORK", "/var/tmp/reboot-probe"));
    std::fs::create_dir_all(&work)
        .map_err(|e| RigError::Setup(format!("{}: {e}", work.display())))?;
    let name = var("NAME", "reboot-probe");
    let fx = Fixture::new(&images, &work)?;
    let dfx = tandem_qemu::debian::fixture(&fx)?;
    let server = dfx.serve()?;
    let mut vm = Vm::start(&dfx.config(&name, dfx.fresh_disk(&name)?, Some(&server)))?;
    for round in 1..=rounds {
        let ready = vm.expect("TANDEM-READY slot=", Duration::from_secs(300))?;
        eprintln!(
            "round {round}: shell ready at {:.1} s",
            ready.at.as_secs_f64()
        );
        let pre = if round == 1 {
            var("PRE", "")
        } else {
            var("PRE2", "")
        };
        for cmd in pre.split(';').filter(|c| !c.trim().is_empty()) {
            let out = vm.output(cmd, Duration::from_secs(120))?;
            eprintln!("$ {cmd}\n{out}");
        }
        vm.send(&var("REBOOT", "systemctl reboot"))?;
        match vm.expect("Welcome to GRUB", Duration::from_secs(150)) {
            Ok(l) => eprintln!("round {round}: GRUB came up at {:.1} s", l.at.as_secs_f64()),
            Err(e) => {
                eprintln!("round {round}: GRUB did not come up: {e}");
                return Ok(false);
            }
        }
    }
    Ok(true)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    // QEMU's guestfwd runs this executable as the relay to the file server.
    if args.len() == 3 && args[1] == "relay" {
        return match tandem_qemu::http::relay(&args[2]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::FAILURE,
        };
    }
    match probe() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

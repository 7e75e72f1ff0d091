//! One QEMU virtual machine: command line, lifetime, console and QMP.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use crate::console::{Console, Line};
use crate::qmp::Qmp;
use crate::{io, RigError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// q35 with OVMF (UEFI).
    X86_64,
    /// `virt` with Debian's U-Boot.
    Aarch64,
}

#[derive(Debug, Clone)]
pub struct Disk {
    pub path: PathBuf,
    /// `raw` or `qcow2`.
    pub format: String,
    pub readonly: bool,
}

impl Disk {
    pub fn raw(path: &Path) -> Disk {
        Disk {
            path: path.to_path_buf(),
            format: "raw".into(),
            readonly: false,
        }
    }
}

/// A port on the guest's user-mode network forwarded to 127.0.0.1.
#[derive(Debug, Clone)]
pub struct GuestFwd {
    /// Port on 10.0.2.100 as the guest sees it.
    pub guest_port: u16,
    /// Port on 127.0.0.1 where the host serves.
    pub host_port: u16,
}

#[derive(Debug, Clone)]
pub struct VmConfig {
    pub name: String,
    pub arch: Arch,
    pub disks: Vec<Disk>,
    pub memory_mib: u32,
    /// An i6300esb watchdog whose expiry resets the machine.
    pub watchdog: bool,
    /// `None`: no network at all. `Some`: user-mode networking with
    /// `restrict=on` (no way out) and these forwards only.
    pub forwards: Option<Vec<GuestFwd>>,
    /// Relay program for forwards (the `tandem-qemu` binary: `relay ADDR`).
    pub relay: Option<PathBuf>,
    /// Where logs, the OVMF vars copy (x86_64) or the two flash images
    /// (aarch64) and the QMP socket go.
    pub dir: PathBuf,
    pub firmware: Firmware,
    /// aarch64: U-Boot's environment (`mkenvimage`, 0x40000 bytes) for
    /// pflash unit 1; `None` leaves it blank (U-Boot's built-in env).
    pub uboot_env: Option<PathBuf>,
    pub extra_args: Vec<String>,
    /// `tcg` (default) or `kvm`; see [`probe_kvm`].
    pub accel: String,
}

/// Firmware files; the defaults are Debian's.
#[derive(Debug, Clone)]
pub struct Firmware {
    pub ovmf_code: PathBuf,
    pub ovmf_vars: PathBuf,
    pub uboot_arm64: PathBuf,
    /// OVMF's Secure Boot build: the machine gets SMM and secure flash.
    pub secure_boot: bool,
}

impl Default for Firmware {
    fn default() -> Self {
        Firmware {
            ovmf_code: "/usr/share/OVMF/OVMF_CODE_4M.fd".into(),
            ovmf_vars: "/usr/share/OVMF/OVMF_VARS_4M.fd".into(),
            uboot_arm64: "/usr/lib/u-boot/qemu_arm64/u-boot.bin".into(),
            secure_boot: false,
        }
    }
}

impl Firmware {
    /// Secure Boot on: OVMF's secboot build (SMM-protected variables) with
    /// Debian's snakeoil vars, whose PK, KEK and db are the snakeoil test
    /// certificate (/usr/share/ovmf/PkKek-1-snakeoil.pem).
    pub fn secure_boot() -> Firmware {
        Firmware {
            ovmf_code: "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd".into(),
            ovmf_vars: "/usr/share/OVMF/OVMF_VARS_4M.snakeoil.fd".into(),
            secure_boot: true,
            ..Firmware::default()
        }
    }
}

impl VmConfig {
    pub fn new(name: &str, arch: Arch, dir: &Path) -> VmConfig {
        VmConfig {
            name: name.into(),
            arch,
            disks: vec![],
            // booti needs the kernel, its decompression buffer and the
            // initrd below 0x80000000 on virt (RAM starts at 1 GiB).
            memory_mib: if arch == Arch::Aarch64 { 1024 } else { 512 },
            watchdog: false,
            forwards: None,
            relay: None,
            dir: dir.to_path_buf(),
            firmware: Firmware::default(),
            uboot_env: None,
            extra_args: vec![],
            accel: "tcg".into(),
        }
    }

    /// The QEMU program and arguments. Pure, so it can be tested.
    pub fn command_line(&self, vars: &Path, qmp: &Path) -> (String, Vec<String>) {
        let mut a: Vec<String> = Vec::new();
        let mut push = |s: &str| a.push(s.to_string());
        let program = match self.arch {
            Arch::X86_64 if self.firmware.secure_boot => {
                for s in [
                    "-machine",
                    "q35,smm=on",
                    "-cpu",
                    "max",
                    "-global",
                    "driver=cfi.pflash01,property=secure,value=on",
                ] {
                    push(s);
                }
                "qemu-system-x86_64"
            }
            Arch::X86_64 => {
                for s in ["-machine", "q35", "-cpu", "max"] {
                    push(s);
                }
                "qemu-system-x86_64"
            }
            Arch::Aarch64 => {
                for s in ["-machine", "virt", "-cpu", "cortex-a57"] {
                    push(s);
                }
                "qemu-system-aarch64"
            }
        };
        push("-accel");
        push(&self.accel);
        for s in ["-nodefaults", "-display", "none", "-serial", "stdio"] {
            push(s);
        }
        push("-m");
        push(&self.memory_mib.to_string());
        push("-qmp");
        push(&format!("unix:{},server=on,wait=off", qmp.display()));
        match self.arch {
            Arch::X86_64 => {
                push("-drive");
                push(&format!(
                    "if=pflash,format=raw,readonly=on,file={}",
                    self.firmware.ovmf_code.display()
                ));
                push("-drive");
                push(&format!("if=pflash,format=raw,file={}", vars.display()));
            }
            Arch::Aarch64 => {
                // U-Boot runs from flash 0; its env is read from flash 1.
                let (f0, f1) = self.flash_paths();
                push("-drive");
                push(&format!(
                    "if=pflash,unit=0,format=raw,readonly=on,file={}",
                    f0.display()
                ));
                push("-drive");
                push(&format!(
                    "if=pflash,unit=1,format=raw,file={}",
                    f1.display()
                ));
            }
        }
        for (i, d) in self.disks.iter().enumerate() {
            let ro = if d.readonly { ",readonly=on" } else { "" };
            if self.firmware.secure_boot && i == 0 {
                // The system disk is the one boot option (QEMU's boot
                // order; OVMF drops the others, network boot included, as
                // a server whose firmware boots only its disk): after a
                // refused image, OVMF falls back to the disk's
                // removable-media path, systemd-boot again
                // (qemu-tests/src/uki.rs).
                push("-drive");
                push(&format!(
                    "file={},format={},if=none,id=system{ro}",
                    d.path.display(),
                    d.format
                ));
                push("-device");
                push("virtio-blk-pci,drive=system,bootindex=0");
                continue;
            }
            push("-drive");
            push(&format!(
                "file={},format={},if=virtio{ro}",
                d.path.display(),
                d.format
            ));
        }
        if self.watchdog {
            for s in ["-device", "i6300esb", "-action", "watchdog=reset"] {
                push(s);
            }
        }
        match &self.forwards {
            None => {
                push("-nic");
                push("none");
            }
            Some(fwds) => {
                let mut nic = String::from("user,model=virtio-net-pci,restrict=on");
                for f in fwds {
                    let relay = self
                        .relay
                        .as_ref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_else(|| "tandem-qemu".into());
                    nic += &format!(
                        ",guestfwd=tcp:10.0.2.100:{}-cmd:{relay} relay 127.0.0.1:{}",
                        f.guest_port, f.host_port
                    );
                }
                push("-nic");
                push(&nic);
            }
        }
        for e in &self.extra_args {
            push(e);
        }
        (program.to_string(), a)
    }

    /// aarch64: the per-VM copies of U-Boot (flash 0) and its environment
    /// (flash 1), made by [`Vm::start`].
    pub fn flash_paths(&self) -> (PathBuf, PathBuf) {
        (self.dir.join("flash0.img"), self.dir.join("flash1.img"))
    }

    /// Writes the two 64 MiB flash images QEMU `virt` wants: U-Boot and
    /// the environment (or nothing), each padded with zeros. A fresh pair
    /// per start, like the OVMF vars.
    fn prepare_flash(&self) -> Result<(), RigError> {
        let (f0, f1) = self.flash_paths();
        let pad = |src: Option<&Path>, dst: &Path| -> Result<(), RigError> {
            let _ = std::fs::remove_file(dst);
            let what = format!("flash image {}", dst.display());
            match src {
                Some(s) => {
                    std::fs::copy(s, dst).map_err(io(format!(
                        "copy {} to {}",
                        s.display(),
                        dst.display()
                    )))?;
                }
                None => drop(File::create(dst).map_err(io(what.clone()))?),
            }
            let f = File::options()
                .write(true)
                .open(dst)
                .map_err(io(what.clone()))?;
            let len = f.metadata().map_err(io(what.clone()))?.len();
            if len > FLASH_SIZE {
                return Err(RigError::Setup(format!(
                    "{what}: {len} bytes do not fit the 64 MiB flash"
                )));
            }
            f.set_len(FLASH_SIZE).map_err(io(what))
        };
        pad(Some(&self.firmware.uboot_arm64), &f0)?;
        pad(self.uboot_env.as_deref(), &f1)
    }
}

/// Size of each of QEMU `virt`'s two flash banks.
pub const FLASH_SIZE: u64 = 64 << 20;

/// Whether KVM really runs guests here: boots the firmware of `cfg` with
/// `-accel kvm` and waits a few seconds for its first boot-manager line.
/// On these machines `/dev/kvm` exists but guests hang (FACTS.md), so the
/// answer is usually no and the rig stays on TCG.
pub fn probe_kvm(cfg: &VmConfig) -> bool {
    if !Path::new("/dev/kvm").exists() {
        return false;
    }
    let mut probe = cfg.clone();
    probe.name = format!("{}-kvm-probe", cfg.name);
    probe.dir = cfg.dir.join("kvm-probe");
    probe.accel = "kvm".into();
    probe.watchdog = false;
    probe.forwards = None;
    let Ok(mut vm) = Vm::start(&probe) else {
        return false;
    };
    // OVMF prints BdsDxe after ~4 s under TCG, well under 1 s under KVM.
    let ok = vm.expect("BdsDxe", Duration::from_secs(3)).is_ok();
    drop(vm);
    let _ = std::fs::remove_dir_all(&probe.dir);
    ok
}

/// How a power cut went: how long QEMU took to stop, and `by` when it
/// was not QMP's `quit` that stopped it.
#[derive(Debug)]
pub struct PowerCut {
    pub took: Duration,
    pub by: Option<String>,
}

impl std::fmt::Display for PowerCut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.by {
            None => write!(f, "QMP quit {} ms", self.took.as_millis()),
            Some(by) => write!(f, "{by}; {} ms", self.took.as_millis()),
        }
    }
}

/// A running VM. Dropping it kills QEMU.
pub struct Vm {
    pub name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    pub console: Console,
    qmp_path: PathBuf,
    /// Console cursor: waits look only after the last match.
    cursor: usize,
    pub dir: PathBuf,
}

impl Vm {
    pub fn start(cfg: &VmConfig) -> Result<Vm, RigError> {
        std::fs::create_dir_all(&cfg.dir).map_err(io(format!("create {}", cfg.dir.display())))?;
        let vars = cfg.dir.join("OVMF_VARS.fd");
        if cfg.arch == Arch::X86_64 && !vars.exists() {
            // A fresh copy per VM (FACTS: a reused one can strand OVMF in its shell).
            std::fs::copy(&cfg.firmware.ovmf_vars, &vars)
                .map_err(io(format!("copy {}", cfg.firmware.ovmf_vars.display())))?;
        }
        if cfg.arch == Arch::Aarch64 {
            cfg.prepare_flash()?;
        }
        let qmp = cfg.dir.join("qmp.sock");
        let _ = std::fs::remove_file(&qmp);
        let (program, args) = cfg.command_line(&vars, &qmp);
        let mut cmdfile = File::create(cfg.dir.join("qemu.cmdline")).map_err(io("qemu.cmdline"))?;
        let _ = writeln!(cmdfile, "{program} {}", args.join(" "));
        let log = File::options()
            .create(true)
            .append(true)
            .open(cfg.dir.join("serial.log"))
            .map_err(io("serial.log"))?;
        // Appended, like the serial log: a scenario boots many VMs here.
        let stderr = File::options()
            .create(true)
            .append(true)
            .open(cfg.dir.join("qemu.stderr"))
            .map_err(io("qemu.stderr"))?;
        let mut child = Command::new(&program)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(io(format!("start {program}")))?;
        let stdout = child.stdout.take().expect("piped");
        let stdin = child.stdin.take();
        Ok(Vm {
            name: cfg.name.clone(),
            child,
            stdin,
            console: Console::spawn(stdout, log),
            qmp_path: qmp,
            cursor: 0,
            dir: cfg.dir.clone(),
        })
    }

    fn err(&mut self, what: &str, timeout: Duration, closed: bool) -> RigError {
        let tail = self.console.tail(25);
        if closed {
            let status = self
                .child
                .wait()
                .map(|s| s.to_string())
                .unwrap_or_else(|e| e.to_string());
            RigError::Exited {
                vm: self.name.clone(),
                status,
                what: what.into(),
                tail,
            }
        } else {
            // A silent console says nothing of where the guest is: the CPU
            // may loop in the firmware, halt, or sit at the reset vector
            // (scenario 9's clean-reboot hang, qemu-tests/README.md).
            let tail = format!("{tail}\n{}", self.cpu_state());
            RigError::Timeout {
                vm: self.name.clone(),
                what: what.into(),
                secs: timeout.as_secs(),
                tail,
            }
        }
    }

    /// Where the guest's CPU is, for a timed-out wait: QEMU's run state
    /// and three samples of the first CPU's registers 200 ms apart (the
    /// same RIP each time and HLT=0 is a tight loop; HLT=1 waits for an
    /// interrupt). The full registers, the code at RIP, the local APIC and
    /// the interrupt counts go to `cpu-state.txt` in the VM's directory;
    /// the summary is one line.
    fn cpu_state(&self) -> String {
        let path = self.dir.join("cpu-state.txt");
        let mut q = match Qmp::connect(&self.qmp_path, Duration::from_secs(2)) {
            Ok(q) => q,
            Err(e) => return format!("CPU state: not read ({e})"),
        };
        let status = q
            .execute("query-status", None)
            .ok()
            .and_then(|v| v.get("status").and_then(|s| s.as_str()).map(String::from))
            .unwrap_or_else(|| "unknown".into());
        let mut full = format!("run state: {status}\n");
        let mut samples = Vec::new();
        for i in 0..3 {
            if i > 0 {
                std::thread::sleep(Duration::from_millis(200));
            }
            for cmd in ["info registers", "x/6i $pc"] {
                let out = hmp(&mut q, cmd);
                full += &format!("--- sample {} `{cmd}`\n{out}\n", i + 1);
                if cmd == "info registers" {
                    samples.push(register_summary(&out));
                }
            }
        }
        // Twenty more, 50 ms apart, counted by the code they found the CPU
        // at (`x/3i $pc` gives the address and the bytes, which
        // scripts/ovmf-where.py looks up): a wait loop shows a few
        // addresses over and over, an interrupt storm the handler's, a
        // guest making progress many.
        let mut seen: Vec<(String, usize)> = Vec::new();
        for _ in 0..20 {
            std::thread::sleep(Duration::from_millis(50));
            let code = hmp(&mut q, "x/3i $pc").trim_end().to_string();
            match seen.iter_mut().find(|(s, _)| *s == code) {
                Some((_, n)) => *n += 1,
                None => seen.push((code, 1)),
            }
        }
        seen.sort_by_key(|s| std::cmp::Reverse(s.1));
        for (code, n) in &seen {
            full += &format!("--- short sample x{n} `x/3i $pc`\n{code}\n");
        }
        // The interrupt side, twice a second apart: the local APIC's timer
        // (mode, counts) and the interrupt lines' counts, whose growth tells
        // an interrupt storm from a quiet wait. x86 only; elsewhere QEMU
        // answers with an error, which is written as it is.
        for round in 1..=2 {
            if round > 1 {
                std::thread::sleep(Duration::from_secs(1));
            }
            for cmd in ["info lapic", "info irq", "info pic"] {
                full += &format!("--- round {round} `{cmd}`\n{}\n", hmp(&mut q, cmd));
            }
        }
        let _ = std::fs::write(&path, &full);
        format!(
            "CPU state: QEMU {status}; CPU 0 at {} (registers in {})",
            samples.join(", "),
            path.display()
        )
    }

    /// Waits for a console line containing `needle` after the last match.
    pub fn expect(&mut self, needle: &str, timeout: Duration) -> Result<Line, RigError> {
        self.expect_any(&[needle], timeout).map(|(l, _)| l)
    }

    /// Waits for the first of several markers; returns the line and which.
    pub fn expect_any(
        &mut self,
        needles: &[&str],
        timeout: Duration,
    ) -> Result<(Line, usize), RigError> {
        match self.console.wait_from(self.cursor, needles, timeout) {
            Ok((i, line, k)) => {
                self.cursor = i + 1;
                Ok((line, k))
            }
            Err(closed) => Err(self.err(&needles.join(" | "), timeout, closed)),
        }
    }

    /// Types a line into the serial console.
    pub fn send(&mut self, line: &str) -> Result<(), RigError> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| RigError::Setup("console input closed".into()))?;
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| stdin.flush())
            .map_err(io("write to the serial console"))
    }

    /// Runs a shell command in the guest (whose console runs a shell) and
    /// waits for its exit status, printed after a unique marker.
    pub fn run(&mut self, cmd: &str, timeout: Duration) -> Result<i32, RigError> {
        let tag = format!("RIG-DONE-{}", self.console.len());
        // A subshell, so `exit` in the command cannot end the console shell.
        self.send(&format!("({cmd}); echo \"{tag}:$?\""))?;
        // The echo of the typed command contains the tag too; match ":<digit>".
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.expect(&format!("{tag}:"), left)?;
            if let Some(rest) = line.text.split(&format!("{tag}:")).nth(1) {
                if let Ok(code) = rest.trim().parse::<i32>() {
                    return Ok(code);
                }
            }
        }
    }

    /// Runs a shell command in the guest and returns its standard output
    /// as one line (newlines become spaces: enough for JSON and short
    /// files). The guest prints it after `TAG=`; the echo of the typed
    /// command has `TAG""=` there instead, so it never matches.
    pub fn output(&mut self, cmd: &str, timeout: Duration) -> Result<String, RigError> {
        let tag = format!("RIG-OUT-{}", self.console.len());
        self.send(&format!("echo \"{tag}\"\"=$( ({cmd}) | tr '\\n' ' ')\""))?;
        let line = self.expect(&format!("{tag}="), timeout)?;
        let rest = line.text.split(&format!("{tag}=")).nth(1).unwrap_or("");
        Ok(rest.trim_end().to_string())
    }

    /// Cuts power at once through QMP and waits for QEMU to exit. Should
    /// QMP fail while QEMU still runs, SIGKILL cuts it instead (just as
    /// abrupt: QEMU keeps no disk data of its own in memory) and the cut
    /// says so. A QEMU that exited by itself before the cut is an error
    /// with its exit status, its standard error and the console's tail.
    pub fn power_cut(mut self) -> Result<PowerCut, RigError> {
        let t = Instant::now();
        let by = match Qmp::connect(&self.qmp_path, Duration::from_secs(10)).and_then(Qmp::quit) {
            Ok(()) => None,
            Err(e) => {
                if let Some(status) = self.child.try_wait().map_err(io("wait for QEMU"))? {
                    let mut tail = self.console.tail(25);
                    let stderr =
                        std::fs::read_to_string(self.dir.join("qemu.stderr")).unwrap_or_default();
                    if !stderr.trim().is_empty() {
                        tail = format!("{tail}\nQEMU's standard error:\n{}", stderr.trim_end());
                    }
                    return Err(RigError::Exited {
                        vm: self.name.clone(),
                        status: status.to_string(),
                        what: format!("a power cut (QEMU had exited by itself; QMP: {e})"),
                        tail,
                    });
                }
                let _ = self.child.kill();
                Some(format!("SIGKILL, as QMP failed: {e}"))
            }
        };
        let took = t.elapsed();
        // QEMU exits right after answering; never wait on it forever.
        let deadline = Instant::now() + Duration::from_secs(10);
        while self
            .child
            .try_wait()
            .map_err(io("wait for QEMU"))?
            .is_none()
        {
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = self.child.wait();
        Ok(PowerCut { took, by })
    }

    /// A hardware reset (like the watchdog's), through QMP.
    pub fn reset(&mut self) -> Result<(), RigError> {
        let mut q = Qmp::connect(&self.qmp_path, Duration::from_secs(10))?;
        q.execute("system_reset", None).map(drop)
    }

    /// Waits for QEMU to exit by itself (guest poweroff).
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<(), RigError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(_s) = self.child.try_wait().map_err(io("wait for QEMU"))? {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(self.err("QEMU to exit", timeout, false));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// One HMP command's output over QMP, or the error in parentheses.
fn hmp(q: &mut Qmp, cmd: &str) -> String {
    q.execute(
        "human-monitor-command",
        Some(serde_json::json!({ "command-line": cmd })),
    )
    .map(|v| v.as_str().unwrap_or_default().to_string())
    .unwrap_or_else(|e| format!("({e})"))
}

/// `RIP=… HLT=… SMM=…` (x86; EIP below 64-bit mode) or `PC=…` (aarch64) from HMP's `info registers`.
fn register_summary(regs: &str) -> String {
    let field = |name: &str| {
        regs.split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .map(str::to_string)
    };
    // x86 in 64-bit mode has RIP; in 32-bit and real mode (the firmware's
    // first phases, the reset vector) EIP.
    let ip = field("RIP=")
        .map(|v| format!("RIP={v}"))
        .or_else(|| field("EIP=").map(|v| format!("EIP={v}")));
    match (ip, field("HLT="), field("PC=")) {
        (Some(ip), Some(hlt), _) => {
            let smm = field("SMM=").unwrap_or_else(|| "?".into());
            format!("{ip} HLT={hlt} SMM={smm}")
        }
        (Some(ip), None, _) => ip,
        (None, _, Some(pc)) => format!("PC={pc}"),
        _ => {
            let first: String = regs.lines().next().unwrap_or("").chars().take(80).collect();
            format!("? (no registers: {first:?})")
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x86_command_line() {
        let mut c = VmConfig::new("t", Arch::X86_64, Path::new("/tmp/x"));
        c.disks.push(Disk::raw(Path::new("/d.img")));
        c.watchdog = true;
        c.forwards = Some(vec![GuestFwd {
            guest_port: 80,
            host_port: 18080,
        }]);
        c.relay = Some("/bin/relay".into());
        let (p, a) = c.command_line(Path::new("/tmp/x/vars.fd"), Path::new("/tmp/x/q.sock"));
        assert_eq!(p, "qemu-system-x86_64");
        let s = a.join(" ");
        for want in [
            "-accel tcg",
            "-nodefaults",
            "if=pflash,format=raw,file=/tmp/x/vars.fd",
            "file=/d.img,format=raw,if=virtio",
            "-device i6300esb -action watchdog=reset",
            "restrict=on",
            "guestfwd=tcp:10.0.2.100:80-cmd:/bin/relay relay 127.0.0.1:18080",
        ] {
            assert!(s.contains(want), "{want} in {s}");
        }
        c.forwards = None;
        let (_, a) = c.command_line(Path::new("v"), Path::new("q"));
        assert!(a.join(" ").contains("-nic none"));
    }

    #[test]
    fn register_summaries() {
        let x86 = "RAX=0 RBX=1\nRIP=000000007fe1a2b3 RFL=00000246 [---Z-P-] CPL=0 II=0 A20=1 SMM=0 HLT=1\n";
        assert_eq!(register_summary(x86), "RIP=000000007fe1a2b3 HLT=1 SMM=0");
        let x86_32 =
            "EAX=0 EBX=0\nEIP=fffffff0 EFL=00000002 [-------] CPL=0 II=0 A20=1 SMM=0 HLT=0\n";
        assert_eq!(register_summary(x86_32), "EIP=fffffff0 HLT=0 SMM=0");
        let arm = "PC=0000000040080000 X00=0000000000000000 X01=0\n";
        assert_eq!(register_summary(arm), "PC=0000000040080000");
        assert_eq!(register_summary(""), "? (no registers: \"\")");
    }

    /// A wait that times out says where the CPU is: a real QEMU whose
    /// OVMF finds nothing to boot, and a marker that never comes.
    #[test]
    fn a_timeout_reports_the_cpu_state() {
        let have = Path::new("/usr/share/OVMF/OVMF_CODE_4M.fd").exists()
            && Command::new("qemu-system-x86_64")
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success());
        if !have {
            assert!(
                std::env::var("TANDEM_TEST_REQUIRE_TOOLS").as_deref() != Ok("1"),
                "needs qemu-system-x86_64 and OVMF (scripts/setup.sh installs them)"
            );
            eprintln!("SKIP a_timeout_reports_the_cpu_state: needs QEMU and OVMF");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let cfg = VmConfig::new("cpu-state", Arch::X86_64, dir.path());
        let mut vm = Vm::start(&cfg).unwrap();
        let e = vm
            .expect("NEVER-PRINTED", Duration::from_secs(4))
            .unwrap_err()
            .to_string();
        eprintln!("{e}");
        assert!(e.contains("timed out after 4 s"), "{e}");
        assert!(e.contains("CPU state: QEMU running; CPU 0 at "), "{e}");
        assert!(!e.contains("no registers"), "{e}");
        let full = std::fs::read_to_string(dir.path().join("cpu-state.txt")).unwrap();
        assert!(full.starts_with("run state: running"), "{full}");
        assert_eq!(full.matches("`info registers`").count(), 3, "{full}");
        // RIP in 64-bit mode, EIP before it (a loaded host reaches 4 s
        // still in the firmware's first phases).
        assert!(
            (full.contains("RIP=") || full.contains("EIP=")) && full.contains("`x/6i $pc`"),
            "{full}"
        );
        let short: usize = full
            .lines()
            .filter_map(|l| l.strip_prefix("--- short sample x"))
            .filter_map(|l| l.split(' ').next()?.parse::<usize>().ok())
            .sum();
        assert_eq!(short, 20, "{full}");
        // The local APIC's timer and the interrupt counts, twice.
        assert_eq!(full.matches("`info lapic`").count(), 2, "{full}");
        assert!(full.contains("Timer"), "{full}");
        assert_eq!(full.matches("`info irq`").count(), 2, "{full}");
        // scripts/ovmf-where.py finds the sampled code in the firmware's
        // modules (PEI or DXE, whichever 4 s reached).
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/ovmf-where.py");
        let out = Command::new("python3")
            .arg(&script)
            .arg(dir.path().join("cpu-state.txt"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        eprintln!("{text}{}", String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{text}");
        assert!(text.starts_with("23 samples of the code"), "{text}");
        assert!(text.contains("+0x"), "no sample found in a module: {text}");
    }

    #[test]
    fn aarch64_command_line() {
        let mut c = VmConfig::new("t", Arch::Aarch64, Path::new("/tmp/y"));
        c.disks.push(Disk::raw(Path::new("/d.img")));
        c.forwards = Some(vec![GuestFwd {
            guest_port: 80,
            host_port: 18080,
        }]);
        let (p, a) = c.command_line(Path::new("/unused"), Path::new("/tmp/y/q.sock"));
        assert_eq!(p, "qemu-system-aarch64");
        let s = a.join(" ");
        for want in [
            "-machine virt -cpu cortex-a57",
            "-accel tcg",
            "-m 1024",
            "if=pflash,unit=0,format=raw,readonly=on,file=/tmp/y/flash0.img",
            "if=pflash,unit=1,format=raw,file=/tmp/y/flash1.img",
            "file=/d.img,format=raw,if=virtio",
            "model=virtio-net-pci,restrict=on",
        ] {
            assert!(s.contains(want), "{want} in {s}");
        }
        assert!(!s.contains("OVMF") && !s.contains("-bios"), "{s}");
    }

    #[test]
    fn flash_images_are_padded_copies() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = VmConfig::new("t", Arch::Aarch64, dir.path());
        let fw = dir.path().join("u-boot.bin");
        let env = dir.path().join("env.img");
        std::fs::write(&fw, b"uboot").unwrap();
        std::fs::write(&env, b"env").unwrap();
        c.firmware.uboot_arm64 = fw;
        c.prepare_flash().unwrap();
        let (f0, f1) = c.flash_paths();
        assert_eq!(std::fs::metadata(&f1).unwrap().len(), FLASH_SIZE);
        assert!(std::fs::read(&f1).unwrap().iter().all(|&b| b == 0));
        c.uboot_env = Some(env);
        c.prepare_flash().unwrap();
        let f0 = std::fs::read(f0).unwrap();
        assert_eq!((f0.len() as u64, &f0[..5]), (FLASH_SIZE, &b"uboot"[..]));
        assert_eq!(&std::fs::read(f1).unwrap()[..4], b"env\0");
    }
}

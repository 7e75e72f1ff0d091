//! Tandem's initramfs `/init`: finds the slot GRUB booted by its GPT
//! partition name, sets up dm-verity when the command line carries a root
//! hash, mounts the slot read-only and the data partition (`/var` bind,
//! `/etc` overlay), and switches root to the slot's `/sbin/init`. Any
//! failure reboots at once so the bootloader falls back.
//!
//! The contract is docs/disk-layout.md. Pure modules (`cmdline`, `uevent`,
//! `plan`, `verity`, `dm`, `fsmagic`) hold the logic and are unit tested;
//! `sys` makes the system calls; `init` runs the sequence.

pub mod cmdline;
pub mod dm;
pub mod fsmagic;
pub mod init;
pub mod plan;
pub mod reset;
pub mod sys;
pub mod uevent;
pub mod verity;

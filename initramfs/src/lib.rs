//! Tandem's initramfs `/init`: finds the slot the bootloader booted (by
//! the PARTUUID it passes, else by GPT name) and the data partition on the
//! same disk, sets up dm-verity (required unless the built-in policy says
//! otherwise), mounts the slot read-only and the data partition (`/var`
//! bind, `/etc` overlay; a tmpfs and a marker when it cannot be used), and
//! switches root to the slot's `/sbin/init`. Any other failure reboots at
//! once so the bootloader falls back.
//!
//! The contract is docs/disk-layout.md. Pure modules (`cmdline`, `policy`,
//! `uevent`, `gpt`, `plan`, `data`, `verity`, `dm`, `fsmagic`, `etcmerge`,
//! `varseed`) hold the
//! logic and are unit tested; `sys` makes the system calls; `init` runs the
//! sequence.

pub mod cmdline;
pub mod data;
pub mod dm;
pub mod etcmerge;
pub mod fsmagic;
pub mod gpt;
pub mod init;
pub mod plan;
pub mod policy;
pub mod reset;
pub mod sys;
pub mod uevent;
pub mod varseed;
pub mod verity;

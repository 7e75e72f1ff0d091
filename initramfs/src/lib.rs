//! Placeholder crate: see issues for the planned initramfs work.

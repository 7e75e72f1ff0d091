//! Placeholder crate: see issues for the planned qemu-tests work.

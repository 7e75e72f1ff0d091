//! GRUB environment block backend.

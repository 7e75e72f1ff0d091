//! Placeholder crate: see issues for the planned image-recipes work.

//! Tandem: an update agent for image-based, read-only Linux hosts.
//!
//! A signed bundle is verified, then streamed into the inactive slot of an
//! A/B pair; the booted slot is never written. See README.md and docs/.

pub mod boot;
pub mod bundle;
pub mod channel;
pub mod cli;
pub mod config;
pub mod control;
pub mod dbus;
pub mod fetch;
pub mod fleet;
pub mod fsm;
pub mod health;
pub mod install;
pub mod ops;
pub mod repo;
pub mod slot;
pub mod state;
pub mod status;
pub mod sys;
pub mod timefmt;
pub mod trial;
pub mod tuf;
pub mod window;

//! cdirun's modules as a library: the `cdirun` binary (src/main.rs) dispatches to `commands`, and
//! the benches and property tests reach the edit pipeline without going through a process.

pub mod bundle;
pub mod cdi;
pub mod cgroup;
pub mod claims;
pub mod cli;
pub mod commands;
pub mod config;
pub mod doctor;
pub mod edit;
pub mod engine;
pub mod hooksd;
pub mod install;
pub mod log;
pub mod request;
pub mod rootless;

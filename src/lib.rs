//! cdirun's modules as a library: the `cdirun` binary (src/main.rs) dispatches to `commands`, and
//! the benches and property tests reach the edit pipeline without going through a process.

pub mod bundle;
pub mod cdi;
pub mod cgroup;
pub mod claims;
pub mod cli;
pub mod commands;
pub mod config;
pub mod creation;
pub mod doctor;
pub mod edit;
pub mod files;
pub mod finish;
pub mod hook_failure;
pub mod hook_output;
pub mod hook_stage;
pub mod hooksd;
pub mod install;
pub mod late_hooks;
pub mod log;
pub mod request;
pub mod rootless;
pub mod seal;
pub mod seccomp;

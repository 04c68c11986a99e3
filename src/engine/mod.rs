//! Everything cdirun adds around youki's libcontainer 0.7 to behave like runc: the places where
//! cdirun talks to libcontainer and covers for what it leaves out or does differently. Each
//! module's first lines name the libcontainer behaviour it covers, so this is the list of code
//! that can go when libcontainer is fixed:
//!
//! - [`finish`]: what runc does while it creates a container and libcontainer leaves out
//!   (loopback up, tmpfs modes, `tmpcopyup`, read-only cgroup mounts). Goes when libcontainer
//!   does each of them.
//! - [`late_hooks`]: `poststart` and `poststop` hooks whose failure is a warning, not the verb's
//!   error. Goes when libcontainer runs these stages the runtime-spec way.
//! - [`hook_failure`]: error lines naming the failed hook's stage, index and path. Goes when
//!   libcontainer's hook errors name them.
//! - [`hook_output`]: hooks' output kept off the container's streams. Goes when libcontainer
//!   lets hooks have stdio of their own.
//! - [`executor`]: runc's check of the command, seccomp for `exec`, runc's HOME. Goes when
//!   libcontainer's default executor does these.
//! - [`precheck`]: refusals libcontainer makes only late or without naming the thing, made up
//!   front. Each check goes when libcontainer refuses early and by name.
//! - [`seccomp`]: profiles libcontainer would hang on (`SCMP_ACT_NOTIFY`), refused up front.
//!   Goes when cdirun passes the notify descriptor to the listener as runc does.
//! - [`creation`]: the processes of a create killed part-way, found and killed by `delete`.
//!   Goes when libcontainer's intermediate and init processes stop inheriting the create's
//!   descriptors and a killed create leaves nothing running.
//!
//! These stay when libcontainer is fixed:
//!
//! - [`seal`]: protection against CVE-2019-5736, which libcontainer leaves to the binary that
//!   embeds it.
//! - [`hook_stage`]: the runtime spec's hook stage names, which CDI specs, hooks.d files and
//!   `features` share.
//!
//! Still outside this module: the mount option fix-ups in `edit::mounts` and the build step in
//! `commands::create`.

pub mod creation;
pub mod executor;
pub mod finish;
pub mod hook_failure;
pub mod hook_output;
pub mod hook_stage;
pub mod late_hooks;
pub mod precheck;
pub mod seal;
pub mod seccomp;

//! One file per verb; each is a short delegation to libcontainer. Helpers they share live here.

pub mod cdi_generate;
pub mod cdi_list;
pub mod cdi_validate;
pub mod create;
pub mod delete;
pub mod doctor;
pub mod events;
pub mod exec;
pub mod explain;
pub mod features;
pub mod install;
pub mod kill;
pub mod list;
pub mod pause;
pub mod ps;
pub mod resume;
pub mod run;
pub mod spec;
pub mod start;
pub mod state;
pub mod unsupported;
pub mod update;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use libcontainer::container::{Container, ContainerStatus};
use nix::sys::wait::WaitStatus;

/// A verb's output could not be written to stdout (a closed pipe, a full disk).
#[derive(Debug, thiserror::Error)]
#[error("cannot write to stdout: {0}")]
pub struct StdoutError(#[source] pub std::io::Error);

impl StdoutError {
    /// Whether the reader went away (`cdirun state ID | head -c1`), which runc dies of quietly.
    pub fn is_closed_pipe(&self) -> bool {
        self.0.kind() == std::io::ErrorKind::BrokenPipe
    }
}

/// Writes a verb's output to stdout and flushes it. `print!` panics when stdout is closed or
/// full (status 134 and a backtrace on stderr); every verb prints through this instead, and
/// `main` ends the process as runc's would: of SIGPIPE when the pipe's reader is gone, else
/// with one error line.
pub fn print(text: &str) -> std::result::Result<(), StdoutError> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(StdoutError)
}

/// Writes one line to stderr; a closed or full stderr loses it (`eprintln!` would panic, and
/// there is nowhere else to say so).
pub fn print_err(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Global flags every verb may need, already validated.
#[derive(Debug, Clone)]
pub struct Globals {
    /// `--root`: one directory per container, named by its id.
    pub root: PathBuf,
    pub systemd_cgroup: bool,
    /// cdirun runs rootless (see crate::rootless).
    pub rootless: bool,
}

/// runc's default `--root` when running as root.
pub const DEFAULT_ROOT: &str = "/run/cdirun";

impl Globals {
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// The config (`CDIRUN_CONFIG` or the default path), with the rootless state-dir when
    /// rootless.
    pub fn load_config(&self) -> Result<crate::config::Loaded> {
        let mut loaded =
            crate::config::Config::load(std::env::var_os(crate::config::ENV_VAR).as_deref())?;
        if self.rootless {
            let state_dir =
                crate::rootless::default_state_dir().unwrap_or_else(|| self.root.join(":state"));
            loaded.config = loaded.config.for_rootless(&state_dir);
        }
        Ok(loaded)
    }
}

/// Rootless on a cgroup v1 or hybrid host without a delegated slice (`[slices] default`):
/// hides the host's cgroups from libcontainer (see [`crate::rootless::hide_cgroups`]). On
/// cgroup v2 libcontainer's manager skips what a rootless caller may not write by itself.
pub fn rootless_cgroups(globals: &Globals) -> Result<()> {
    let hierarchies = crate::cgroup::Hierarchies::discover()
        .context("cannot read the cgroup mounts from /proc/self/mountinfo")?;
    if matches!(hierarchies.layout(), None | Some(crate::cgroup::Layout::V2)) {
        return Ok(());
    }
    let loaded = globals.load_config()?;
    let slice = crate::cgroup::CgroupPath::parse_slice(&loaded.config.slices.default)?;
    if !crate::rootless::delegated(&hierarchies, &slice) {
        crate::rootless::hide_cgroups();
    }
    Ok(())
}

/// Checks a container id as runc does: letters, digits, `_`, `+`, `-` and `.`, but not `.` or
/// `..`. Every verb checks it before the id names a directory under `--root`, so no id can reach
/// outside it (`delete --force ../x` would otherwise remove `x` next to the root).
pub fn validate_id(id: &str) -> Result<()> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-' | '.');
    if id.is_empty() {
        bail!("container id cannot be empty");
    }
    if id == "." || id == ".." || !id.chars().all(allowed) {
        bail!(
            "invalid container id {id:?}: use letters, digits, '_', '+', '-' and '.' (not \".\" or \"..\")"
        );
    }
    Ok(())
}

/// A status as the OCI state names it (`running`, `stopped`, ...).
pub fn status_word(status: ContainerStatus) -> String {
    status.to_string().to_lowercase()
}

/// Refuses a verb unless the container is in one of `allowed`, with runc's words for why (the
/// status was refreshed when the container was loaded).
pub fn require_status(
    container: &Container,
    allowed: &[ContainerStatus],
    verb: &str,
    reason: &str,
) -> Result<()> {
    let status = container.status();
    if !allowed.contains(&status) {
        bail!(
            "cannot {verb} container {:?}: {reason} (it is {})",
            container.id(),
            status_word(status)
        );
    }
    Ok(())
}

/// Exit status as a shell reports it: the code, or 128 + signal number.
pub fn exit_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, signal, _) => Some(128 + signal as i32),
        _ => None,
    }
}

/// Makes `path` absolute against the current directory without resolving links, as runc does
/// for `--bundle` and `--pid-file`.
pub fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("invalid path {}", path.display()))
}

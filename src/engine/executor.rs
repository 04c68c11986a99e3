//! The workload executor for create and exec: libcontainer's, with runc's check of the command.
//!
//! Clients read meaning into the runtime's error text: podman turns "no such file or directory" or
//! "executable file not found in" into exit status 127 and "permission denied" into 126, as a
//! shell does. libcontainer's own check words these differently, refuses any command when the
//! process has no PATH (runc runs an absolute path without one), and wants the others-execute bit
//! (runc wants any execute bit). This check follows runc (Go's exec.LookPath) in both.
//!
//! For a created container it also keeps the startContainer hooks' stderr off the container's
//! (see [`super::hook_output`]). For `exec` it also loads the container's seccomp filter, which
//! libcontainer 0.7 leaves out (see [`seccomp_for_exec`]), and for every process it sets HOME as
//! runc does when the uid has no home in the container's /etc/passwd.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::OnceLock;

use libcontainer::oci_spec::runtime::{LinuxSeccomp, Spec};
use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{
    Executor, ExecutorError, ExecutorSetEnvsError, ExecutorValidationError,
};

#[derive(Clone, Default)]
pub struct RuncExecutor;

/// The container's seccomp profile, set by `exec` before libcontainer forks the process.
static EXEC_SECCOMP: OnceLock<LinuxSeccomp> = OnceLock::new();

/// Makes an exec'd process run under the container's seccomp `profile`, as runc's does.
/// libcontainer 0.7 builds an exec'd process's config from the namespaces, cgroup, personality
/// and time offsets of the container only, so its seccomp filter was never loaded: an exec'd
/// process could make every syscall the container's profile denies (unshare of a user
/// namespace, keyctl, ...). The executor runs in that process, after libcontainer has set its
/// user and capabilities and right before the exec, and loads the filter there (the profile is
/// read here and reaches the forked process in memory).
///
/// Loading a filter needs CAP_SYS_ADMIN or no_new_privileges. runc loads it before dropping
/// capabilities; libcontainer offers no hook there, so a process that has neither gets
/// no_new_privileges set first: set-user-ID programs run by that exec do not gain privileges.
pub fn seccomp_for_exec(profile: LinuxSeccomp) {
    // Set once per process: cdirun execs one process per invocation.
    let _ = EXEC_SECCOMP.set(profile);
}

fn load_exec_seccomp(profile: &LinuxSeccomp) -> Result<(), ExecutorError> {
    let privileged = caps::has_cap(
        None,
        caps::CapSet::Effective,
        caps::Capability::CAP_SYS_ADMIN,
    )
    .unwrap_or(false);
    if !privileged {
        nix::sys::prctl::set_no_new_privs()
            .map_err(|err| ExecutorError::Other(format!("cannot set no_new_privileges: {err}")))?;
    }
    let notify = libcontainer::seccomp::initialize_seccomp(profile).map_err(|err| {
        ExecutorError::Other(format!("cannot load the container's seccomp filter: {err}"))
    })?;
    if let Some(fd) = notify {
        // No listener takes an exec's notify descriptor; closed, the filter answers the
        // notify-action syscalls with ENOSYS instead of blocking them forever.
        let _ = nix::unistd::close(fd);
    }
    Ok(())
}

impl Executor for RuncExecutor {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        if let Some(profile) = EXEC_SECCOMP.get() {
            load_exec_seccomp(profile)?;
        }
        crate::engine::hook_output::before_exec()
            .map_err(|err| ExecutorError::Other(err.to_string()))?;
        DefaultExecutor {}.exec(spec)
    }

    /// libcontainer has already filled in HOME from the container's /etc/passwd entry for the
    /// uid; for a uid without one it leaves HOME unset, where runc sets `/`.
    fn setup_envs(&self, mut envs: HashMap<String, String>) -> Result<(), ExecutorSetEnvsError> {
        with_home(&mut envs);
        DefaultExecutor {}.setup_envs(envs)
    }

    /// Runs in the container's init after pivot_root, with the container's view of the files,
    /// after the createContainer hooks and before the startContainer ones.
    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        let process = spec.process().as_ref().ok_or_else(|| {
            ExecutorValidationError::ArgValidationError("the spec has no process".into())
        })?;
        crate::engine::hook_output::quiet_for_start_hooks(process.terminal().unwrap_or(false))
            .map_err(|err| ExecutorValidationError::ArgValidationError(err.to_string()))?;
        let Some(command) = process.args().as_ref().and_then(|args| args.first()) else {
            return Err(ExecutorValidationError::ArgValidationError(
                "the process has no args: nothing to run".into(),
            ));
        };
        let path_var = process
            .env()
            .iter()
            .flatten()
            .find_map(|entry| entry.strip_prefix("PATH="))
            .unwrap_or("");
        look_path(command, path_var).map_err(ExecutorValidationError::ArgValidationError)
    }
}

/// runc's fallback for a process without HOME (or with an empty one): `/`.
fn with_home(envs: &mut HashMap<String, String>) {
    let home = envs.entry("HOME".to_owned()).or_default();
    if home.is_empty() {
        *home = "/".to_owned();
    }
}

/// Finds `name` as Go's exec.LookPath does (which runc uses), with its error messages.
pub fn look_path(name: &str, path_var: &str) -> Result<(), String> {
    if name.contains('/') {
        return executable(Path::new(name)).map_err(|cause| format!("exec: {name:?}: {cause}"));
    }
    // Go: an empty PATH has no entries; an empty entry is the current directory.
    let found = path_var
        .split(':')
        .filter(|_| !path_var.is_empty())
        .map(|dir| Path::new(if dir.is_empty() { "." } else { dir }).join(name))
        .any(|candidate| executable(&candidate).is_ok());
    if found {
        Ok(())
    } else {
        Err(format!(
            "exec: {name:?}: executable file not found in $PATH"
        ))
    }
}

/// A regular file (after links) with any execute bit, else the reason in Go's words.
fn executable(path: &Path) -> Result<(), String> {
    let metadata = std::fs::metadata(path).map_err(|err| {
        let reason = err
            .raw_os_error()
            .map(|code| nix::errno::Errno::from_raw(code).desc().to_lowercase())
            .unwrap_or_else(|| err.to_string());
        format!("stat {}: {reason}", path.display())
    })?;
    if metadata.is_dir() || metadata.permissions().mode() & 0o111 == 0 {
        return Err("permission denied".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn file(dir: &Path, name: &str, mode: u32) {
        let path = dir.join(name);
        fs::write(&path, "#!/bin/sh\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn home_defaults_to_root_only_when_unset_or_empty() {
        let cases = [
            ("unset", None, "/"),
            ("empty", Some(""), "/"),
            ("from passwd or the client", Some("/home/u"), "/home/u"),
        ];
        for (name, before, want) in cases {
            let mut envs: HashMap<String, String> = before
                .map(|home| ("HOME".to_owned(), home.to_owned()))
                .into_iter()
                .collect();
            envs.insert("PATH".into(), "/bin".into());
            with_home(&mut envs);
            assert_eq!(envs.get("HOME").map(String::as_str), Some(want), "{name}");
            assert_eq!(envs.len(), 2, "{name}");
        }
    }

    #[test]
    fn look_path_words_errors_as_runc_does() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        file(d, "owner-only", 0o700);
        file(d, "plain", 0o644);
        let path_var = d.to_str().unwrap();
        let abs = |name: &str| d.join(name).to_str().unwrap().to_owned();
        let cases: Vec<(&str, String, &str, Result<(), String>)> = vec![
            (
                "absolute, owner-execute only",
                abs("owner-only"),
                "",
                Ok(()),
            ),
            (
                "relative found in PATH",
                "owner-only".into(),
                path_var,
                Ok(()),
            ),
            (
                "absolute missing",
                abs("missing"),
                path_var,
                Err(format!(
                    "exec: {:?}: stat {}: no such file or directory",
                    abs("missing"),
                    abs("missing")
                )),
            ),
            (
                "absolute not executable",
                abs("plain"),
                path_var,
                Err(format!("exec: {:?}: permission denied", abs("plain"))),
            ),
            (
                "a directory",
                path_var.to_owned(),
                path_var,
                Err(format!("exec: {path_var:?}: permission denied")),
            ),
            (
                "relative not in PATH",
                "missing".into(),
                path_var,
                Err("exec: \"missing\": executable file not found in $PATH".into()),
            ),
            (
                "relative, not executable",
                "plain".into(),
                path_var,
                Err("exec: \"plain\": executable file not found in $PATH".into()),
            ),
            (
                "relative without PATH",
                "owner-only".into(),
                "",
                Err("exec: \"owner-only\": executable file not found in $PATH".into()),
            ),
        ];
        for (name, command, path_var, want) in cases {
            assert_eq!(look_path(&command, path_var), want, "{name}");
        }
    }
}

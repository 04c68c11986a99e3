//! Error lines for hooks that fail while libcontainer creates a container, naming the stage, the
//! hook's index and path, and how it failed, as runc's `error running hook #N` does.
//!
//! libcontainer 0.7 runs `prestart` and `createRuntime` hooks in cdirun's own process and
//! returns the first failure as a bare [`HookError`] (`hook command exited with non-zero exit
//! code: 3`), without the stage or the hook. `createContainer` hooks run in the container's init,
//! which passes on only the text `failed to run hooks`, so even the exit status is lost. cdirun
//! knows the hooks it handed over, so it names the failed one: exactly when only one hook can
//! have failed that way, else the hooks it may have been.
//!
//! The line ends with the last lines the hooks wrote to stderr, which [`super::hook_output`]
//! keeps off the container's streams. What cannot be added here: which of several hooks of the
//! stages failed (libcontainer does not say how far it got).

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use libcontainer::hooks::HookError;
use libcontainer::oci_spec::runtime::{Hook, Hooks};
use libcontainer::process::channel::ChannelError;
use libcontainer::process::container_main_process::ProcessError;
use libcontainer::process::init::error::InitProcessError;

/// A hook that failed, or the hooks one of which did.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("error running {hooks}: {how}{}", stderr_part(.stderr))]
pub struct HookFailed {
    pub hooks: Suspects,
    pub how: String,
    /// The last lines the hooks wrote to stderr (crate::engine::hook_output), as runc adds them.
    pub stderr: String,
}

impl HookFailed {
    /// The same failure with the tail of the hooks' stderr.
    pub fn with_stderr(mut self, stderr: &str) -> Self {
        self.stderr = stderr.trim_end().to_owned();
        self
    }
}

fn stderr_part(stderr: &str) -> String {
    match stderr {
        "" => String::new(),
        text => format!(", stderr: {}", text.replace('\n', "\\n")),
    }
}

/// One hook of a config, as an error names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    pub stage: &'static str,
    pub index: usize,
    pub path: PathBuf,
    timeout: Option<i64>,
}

impl fmt::Display for Named {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} hook #{} ({})",
            self.stage,
            self.index,
            self.path.display()
        )
    }
}

/// The hooks that may have failed, in the order libcontainer runs them; never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suspects(Vec<Named>);

impl fmt::Display for Suspects {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_slice() {
            [one] => write!(f, "{one}"),
            many => {
                let names: Vec<String> = many.iter().map(ToString::to_string).collect();
                write!(f, "one of {}", names.join(", "))
            }
        }
    }
}

/// The hooks of `stages` in `hooks`, in run order.
fn named(hooks: &Hooks, stages: &[&'static str]) -> Vec<Named> {
    #[allow(deprecated)] // prestart is deprecated in the runtime spec but still run
    let list = |stage: &str| -> &Option<Vec<Hook>> {
        match stage {
            "prestart" => hooks.prestart(),
            "createRuntime" => hooks.create_runtime(),
            "startContainer" => hooks.start_container(),
            _ => hooks.create_container(),
        }
    };
    stages
        .iter()
        .flat_map(|&stage| {
            list(stage)
                .iter()
                .flatten()
                .enumerate()
                .map(move |(index, hook)| Named {
                    stage,
                    index,
                    path: hook.path().clone(),
                    timeout: hook.timeout(),
                })
        })
        .collect()
}

/// Whether `path` names a file with an execute bit (what a spawn needs).
fn runnable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Keeps the suspects the failure fits, unless none would be left.
fn narrow(suspects: Vec<Named>, fits: impl Fn(&Named) -> bool) -> Vec<Named> {
    let fitting: Vec<Named> = suspects.iter().filter(|n| fits(n)).cloned().collect();
    if fitting.is_empty() {
        suspects
    } else {
        fitting
    }
}

/// How a hook failed, as far as libcontainer's error says.
#[derive(Debug, PartialEq, Eq)]
enum How {
    Exit(i32),
    Killed,
    Timeout,
    Execute,
}

/// How a hook failed, in runc's words where it has them, and the suspects the failure fits.
fn describe(how: How, suspects: Vec<Named>) -> (String, Vec<Named>) {
    match how {
        How::Exit(code) => (format!("exit status {code}"), suspects),
        How::Killed => ("killed by a signal".to_owned(), suspects),
        How::Timeout => {
            let suspects = narrow(suspects, |n| n.timeout.is_some());
            let how = match suspects.as_slice() {
                [
                    Named {
                        timeout: Some(t), ..
                    },
                ] => format!("timed out after {t}s"),
                _ => "timed out".to_owned(),
            };
            (how, suspects)
        }
        How::Execute => (
            "cannot execute it".to_owned(),
            narrow(suspects, |n| !runnable(&n.path)),
        ),
    }
}

/// The failure a [`HookError`]'s text tells of. The texts come from libcontainer's own errors,
/// so a rewording there cannot make this misread one.
fn parse_hook_error(text: &str) -> Option<How> {
    let exit = HookError::NonZeroExitCode(0).to_string();
    let exit = exit.strip_suffix('0')?;
    if let Some(code) = text.strip_prefix(exit) {
        return code.parse().ok().map(How::Exit);
    }
    let io = || std::io::Error::from(std::io::ErrorKind::Other);
    [
        (HookError::Killed, How::Killed),
        (HookError::Timeout, How::Timeout),
        (HookError::CommandExecute(io()), How::Execute),
    ]
    .into_iter()
    .find_map(|(err, how)| (text == err.to_string()).then_some(how))
}

/// The error line for a failed create whose cause is a hook of `hooks`, or `None` when `err`
/// is no hook failure (or names no hook the config has).
///
/// libcontainer wraps the cause of a failed create in an error that keeps it only as text
/// (`CreateContainerError` has no source), so this reads the text.
pub fn explain(err: &dyn fmt::Display, hooks: &Hooks) -> Option<HookFailed> {
    let text = err.to_string();
    // A failed cleanup after the failure is appended; the failure is what counts here.
    let text = text
        .split(". error during cleanup: ")
        .next()
        .unwrap_or(&text);
    // Only the main process returns a HookError: prestart, then createRuntime.
    let marker = ProcessError::Hooks(HookError::Killed).to_string();
    let prefix = marker.strip_suffix(&HookError::Killed.to_string())?;
    if let Some((_, hook_err)) = text.split_once(prefix) {
        let how = parse_hook_error(hook_err)?;
        let (how, suspects) = describe(how, named(hooks, &["prestart", "createRuntime"]));
        return failed(how, suspects);
    }
    if reports_hook_failure(text) {
        let how = "the container's init reports no exit status; see the hook's stderr";
        return failed(how.to_owned(), named(hooks, &["createContainer"]));
    }
    None
}

/// Whether the text is the init's report of its createContainer hook failure (the only hooks it
/// runs before it reports ready).
fn reports_hook_failure(text: &str) -> bool {
    let exec_failed = ChannelError::ExecError(String::new()).to_string();
    let marker = InitProcessError::Hooks(HookError::Killed).to_string();
    text.contains(&exec_failed) && text.ends_with(&format!(": {marker}"))
}

fn failed(how: String, suspects: Vec<Named>) -> Option<HookFailed> {
    (!suspects.is_empty()).then_some(HookFailed {
        hooks: Suspects(suspects),
        how,
        stderr: String::new(),
    })
}

/// The error for a container whose init died after `start` and before the exec of the user
/// process: one of its startContainer `hooks` failed (libcontainer's init reports it to nobody,
/// as `start` has returned by then). Their paths resolve in the container, under `rootfs`: a
/// hook that is not there (or cannot be executed) is named as the one.
pub fn start_container_failed(hooks: &Hooks, rootfs: &Path) -> Option<HookFailed> {
    let suspects = named(hooks, &["startContainer"]);
    let inside = |n: &Named| rootfs.join(n.path.strip_prefix("/").unwrap_or(&n.path));
    let missing: Vec<Named> = suspects
        .iter()
        .filter(|n| !runnable(&inside(n)))
        .cloned()
        .collect();
    match missing.as_slice() {
        [] => failed(
            "the container's init died before it ran the process; the hook's exit status is lost"
                .to_owned(),
            suspects,
        ),
        [one] if !inside(one).exists() => failed(
            "no such file or directory in the container".to_owned(),
            missing,
        ),
        _ => failed("cannot execute it".to_owned(), missing),
    }
}

#[cfg(test)]
mod tests {
    use libcontainer::oci_spec::runtime::{HookBuilder, HooksBuilder};

    use super::*;

    fn hook(path: &str, timeout: Option<i64>) -> Hook {
        let mut hook = HookBuilder::default().path(path).build().unwrap();
        hook.set_timeout(timeout);
        hook
    }

    fn hooks(prestart: Vec<Hook>, runtime: Vec<Hook>, container: Vec<Hook>) -> Hooks {
        #[allow(deprecated)]
        HooksBuilder::default()
            .prestart(prestart)
            .create_runtime(runtime)
            .create_container(container)
            .build()
            .unwrap()
    }

    /// libcontainer 0.7's text for a hook failure in the main process.
    fn main_process_error(cause: &str) -> String {
        format!("failed to create container: failed hooks {cause}")
    }

    /// libcontainer 0.7's text for a createContainer hook failure in the init.
    fn init_error() -> String {
        "failed to create container: exec process failed with error error in executing process : failed to run hooks".to_owned()
    }

    fn line(err: String, hooks: &Hooks) -> Option<String> {
        explain(&err, hooks).map(|f| f.to_string())
    }

    /// Regression: a failed hook's error named neither its stage nor the hook.
    #[test]
    fn the_failed_hook_is_named_when_the_failure_fits_one() {
        let missing = "/nonexistent/hook";
        let cases: [(Hooks, String, &str); 7] = [
            (
                hooks(vec![], vec![hook("/bin/sh", None)], vec![]),
                main_process_error(
                    "hook command exited with non-zero exit code: 3. error during cleanup: x",
                ),
                "error running createRuntime hook #0 (/bin/sh): exit status 3",
            ),
            (
                hooks(vec![hook("/bin/sh", None)], vec![], vec![hook("/x", None)]),
                main_process_error("hook command was killed by a signal"),
                "error running prestart hook #0 (/bin/sh): killed by a signal",
            ),
            (
                hooks(
                    vec![hook("/bin/true", None)],
                    vec![hook("/bin/sh", Some(2))],
                    vec![],
                ),
                main_process_error("failed to execute hook command due to a timeout"),
                "error running createRuntime hook #0 (/bin/sh): timed out after 2s",
            ),
            (
                hooks(
                    vec![hook("/bin/true", None)],
                    vec![hook(missing, None)],
                    vec![],
                ),
                main_process_error("failed to execute hook command"),
                "error running createRuntime hook #0 (/nonexistent/hook): cannot execute it",
            ),
            (
                hooks(
                    vec![hook("/bin/true", None)],
                    vec![hook("/bin/sh", None)],
                    vec![],
                ),
                main_process_error("hook command exited with non-zero exit code: 1"),
                "error running one of prestart hook #0 (/bin/true), createRuntime hook #0 (/bin/sh): exit status 1",
            ),
            (
                hooks(
                    vec![hook("/bin/true", None)],
                    vec![],
                    vec![hook("/bin/sh", None)],
                ),
                init_error(),
                "error running createContainer hook #0 (/bin/sh): the container's init reports no exit status; see the hook's stderr",
            ),
            (
                hooks(vec![], vec![], vec![hook("/a", None), hook("/b", None)]),
                init_error(),
                "error running one of createContainer hook #0 (/a), createContainer hook #1 (/b): the container's init reports no exit status; see the hook's stderr",
            ),
        ];
        for (hooks, err, want) in cases {
            assert_eq!(line(err, &hooks).as_deref(), Some(want));
        }
    }

    #[test]
    fn other_errors_and_hooks_the_config_lacks_are_left_alone() {
        let none = hooks(vec![], vec![], vec![]);
        assert_eq!(
            line(
                main_process_error("hook command was killed by a signal"),
                &none
            ),
            None
        );
        assert_eq!(line(init_error(), &none), None);
        let some = hooks(vec![hook("/bin/sh", None)], vec![], vec![hook("/x", None)]);
        let other = "failed to create container: exec process failed with error error in executing process : failed to pivot";
        assert_eq!(line(other.into(), &some), None);
        let other =
            "failed to create container: failed hooks container state is required to run hook";
        assert_eq!(line(other.into(), &some), None);
    }
}

//! `poststart` and `poststop` hooks, run the runtime-spec way: a failing hook is logged as a
//! warning and the remaining hooks and the lifecycle go on (runtime.md, lifecycle steps 8 and
//! 12), so a failed hook never fails `start`, `run` or `delete`.
//!
//! libcontainer 0.7 runs these stages itself and turns the first failure into the error of
//! `start` or `delete`, skipping the rest (a failed poststop even leaves the container's state
//! dir behind, so the container can never be deleted). cdirun therefore takes the stage's hooks
//! out of the config libcontainer recorded at create (`youki_config.json` in the container's
//! dir) just before the verb, and runs them itself right after it, in the same place and with
//! the same state, working directory and environment libcontainer would use.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use libcontainer::config::YoukiConfig;
use libcontainer::container::{Container, State};
use libcontainer::error::LibcontainerError;
use libcontainer::oci_spec::runtime::{Hook, Hooks, Spec};
use nix::unistd::Pid;

use crate::engine::hook_failure::HookFailed;

/// The hook stages whose failures are only warnings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Poststart,
    Poststop,
}

impl Stage {
    /// The stage's name in config.json.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Poststart => "poststart",
            Stage::Poststop => "poststop",
        }
    }

    fn hooks_mut(self, hooks: &mut Hooks) -> &mut Option<Vec<Hook>> {
        match self {
            Stage::Poststart => hooks.poststart_mut(),
            Stage::Poststop => hooks.poststop_mut(),
        }
    }
}

/// Why `start` failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Libcontainer(#[from] LibcontainerError),
    #[error(transparent)]
    StartContainerHook(#[from] HookFailed),
}

/// `container.start()`, with poststart hook failures logged instead of failing the start, and a
/// failed startContainer hook failing it.
///
/// libcontainer's start returns once it has told the init to go; the init then runs the
/// startContainer hooks, and when one fails it dies with nobody told (its report to the
/// create's long-gone process fails with EBADF), so `start` and `run` succeeded or ended with
/// the init's 255 and no word. With startContainer hooks, `start` waits until the init reaches
/// the exec of the user process, and fails naming the hook when it dies before.
pub fn start(container: &mut Container) -> Result<(), StartError> {
    let dir = container.root.clone();
    let hooks = take(&dir, Stage::Poststart);
    let start_hooks = start_container_hooks(&dir);
    // Only these hooks wait for the init's exec: without them /proc is not read.
    let init = container
        .pid()
        .filter(|_| !hooks.is_empty() || start_hooks.is_some());
    let before = init.and_then(executable);
    if let Err(err) = container.start() {
        restore(&dir, Stage::Poststart, hooks);
        return Err(err.into());
    }
    if let (Some(init), Some(start_hooks)) = (init, &start_hooks) {
        if !crate::engine::hook_output::reached_exec(&dir, init, before.as_deref()) {
            let rootfs = rootfs(container.bundle());
            if let Some(failed) =
                crate::engine::hook_failure::start_container_failed(start_hooks, &rootfs)
            {
                return Err(failed.into());
            }
        }
    }
    if let Some(init) = init.filter(|_| !hooks.is_empty()) {
        wait_for_exec(init, before.as_deref());
    }
    // libcontainer runs poststart hooks in the container's state dir.
    run(&hooks, Stage::Poststart, &container.state, Some(&dir));
    Ok(())
}

/// The recorded config's hooks when it has startContainer hooks.
fn start_container_hooks(container_dir: &Path) -> Option<Hooks> {
    let config = YoukiConfig::load(container_dir).ok()?;
    config.hooks.filter(|hooks| {
        hooks
            .start_container()
            .as_ref()
            .is_some_and(|l| !l.is_empty())
    })
}

/// The root filesystem of a bundle, as its config.json names it (the bundle itself if unread).
fn rootfs(bundle: &Path) -> PathBuf {
    let config = Spec::load(bundle.join(crate::bundle::CONFIG_FILE)).ok();
    let root = config
        .as_ref()
        .and_then(|c| c.root().as_ref().map(|r| r.path().clone()));
    match root {
        Some(path) => bundle.join(path),
        None => bundle.to_owned(),
    }
}

/// How long poststart hooks wait for the init to exec the user process.
const EXEC_WAIT: Duration = Duration::from_secs(2);

/// The executable a process runs, as /proc shows it (`None` once it is gone).
fn executable(pid: Pid) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/exe")).ok()
}

/// Poststart hooks run "after the user-specified process is executed" (config.md), but
/// libcontainer's start returns once it has told the init to go, before the init's execve.
/// Waits until the init runs another executable than before start (or is gone), for at most
/// EXEC_WAIT: an init that execs the very binary it was cloned from is only waited out.
fn wait_for_exec(init: Pid, before: Option<&Path>) {
    let deadline = Instant::now() + EXEC_WAIT;
    while Instant::now() < deadline {
        match executable(init) {
            Some(now) if Some(now.as_path()) == before => {
                std::thread::sleep(Duration::from_millis(1))
            }
            _ => return,
        }
    }
    tracing::warn!(
        "container init {init} did not exec within {EXEC_WAIT:?}; running poststart hooks"
    );
}

/// `container.delete(force)`, with poststop hook failures logged instead of failing the delete.
pub fn delete(container: &mut Container, force: bool) -> Result<(), LibcontainerError> {
    let dir = container.root.clone();
    let hooks = take(&dir, Stage::Poststop);
    if let Err(err) = container.delete(force) {
        restore(&dir, Stage::Poststop, hooks);
        return Err(err);
    }
    run(&hooks, Stage::Poststop, &container.state, None);
    Ok(())
}

/// Removes the stage's hooks from the recorded config and returns them. A config that cannot
/// be read or written gives no hooks: libcontainer then sees it as it is and decides.
fn take(container_dir: &Path, stage: Stage) -> Vec<Hook> {
    let Ok(mut config) = YoukiConfig::load(container_dir) else {
        return Vec::new();
    };
    let Some(taken) = config
        .hooks
        .as_mut()
        .and_then(|hooks| stage.hooks_mut(hooks).take())
        .filter(|taken| !taken.is_empty())
    else {
        return Vec::new();
    };
    match config.save(container_dir) {
        Ok(()) => taken,
        Err(err) => {
            tracing::warn!(
                "cannot set aside the {} hooks in {}: {err}",
                stage.name(),
                container_dir.display()
            );
            Vec::new()
        }
    }
}

/// Puts hooks taken by `take` back after the verb failed, so a retry still runs them.
fn restore(container_dir: &Path, stage: Stage, hooks: Vec<Hook>) {
    if hooks.is_empty() {
        return;
    }
    let Ok(mut config) = YoukiConfig::load(container_dir) else {
        return; // the container dir is gone: nothing will run them any more
    };
    *stage.hooks_mut(config.hooks.get_or_insert_with(Hooks::default)) = Some(hooks);
    if let Err(err) = config.save(container_dir) {
        tracing::warn!(
            "cannot put back the {} hooks in {}: {err}",
            stage.name(),
            container_dir.display()
        );
    }
}

/// Runs the hooks in order; a failure is a warning naming the hook, and the next one still runs.
pub fn run(hooks: &[Hook], stage: Stage, state: &State, cwd: Option<&Path>) {
    for (index, hook) in hooks.iter().enumerate() {
        let one = vec![hook.clone()];
        if let Err(err) = libcontainer::hooks::run_hooks(Some(&one), Some(state), cwd, None, None) {
            tracing::warn!(
                "{} hook #{index} ({}) failed, continuing: {err}",
                stage.name(),
                hook.path().display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use libcontainer::container::ContainerStatus;
    use libcontainer::oci_spec::runtime::{HookBuilder, HooksBuilder, Spec};

    use super::*;

    fn hook(script: &str) -> Hook {
        HookBuilder::default()
            .path("/bin/sh")
            .args(vec!["sh".to_owned(), "-c".to_owned(), script.to_owned()])
            .build()
            .unwrap()
    }

    fn recorded(dir: &Path, poststart: Vec<Hook>, poststop: Vec<Hook>) {
        let mut spec = Spec::default();
        spec.set_hooks(Some(
            HooksBuilder::default()
                .poststart(poststart)
                .poststop(poststop)
                .build()
                .unwrap(),
        ));
        YoukiConfig::from_spec(&spec, "c1")
            .unwrap()
            .save(dir)
            .unwrap();
    }

    fn state(dir: &Path) -> State {
        State::new("c1", ContainerStatus::Stopped, None, PathBuf::from(dir))
    }

    #[test]
    fn take_removes_only_the_stage_and_restore_puts_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let start = vec![hook("true")];
        let stop = vec![hook("exit 1"), hook("true")];
        recorded(dir.path(), start.clone(), stop.clone());

        assert_eq!(take(dir.path(), Stage::Poststop), stop);
        let hooks = YoukiConfig::load(dir.path()).unwrap().hooks.unwrap();
        assert_eq!(hooks.poststop(), &None);
        assert_eq!(hooks.poststart(), &Some(start));
        assert_eq!(take(dir.path(), Stage::Poststop), Vec::<Hook>::new());

        restore(dir.path(), Stage::Poststop, stop.clone());
        let hooks = YoukiConfig::load(dir.path()).unwrap().hooks.unwrap();
        assert_eq!(hooks.poststop(), &Some(stop));
    }

    #[test]
    fn take_without_a_recorded_config_gives_nothing() {
        let dir = tempfile::tempdir().unwrap();
        assert!(take(dir.path(), Stage::Poststart).is_empty());
    }

    /// Regression (runtime-tools poststart): the hooks wait for the init's execve.
    #[test]
    fn wait_for_exec_returns_once_the_process_execs() {
        let mut child = std::process::Command::new("/bin/sh")
            .args(["-c", "sleep 0.2; exec sleep 5"])
            .spawn()
            .unwrap();
        let pid = Pid::from_raw(child.id() as i32);
        let before = executable(pid);
        let started = Instant::now();
        wait_for_exec(pid, before.as_deref());
        let after = executable(pid);
        child.kill().unwrap();
        child.wait().unwrap();
        assert_ne!(after, before);
        assert!(started.elapsed() < EXEC_WAIT);
    }

    /// Regression (runtime-tools poststop_fail / poststart_fail): a failing hook is a warning,
    /// and the hooks after it still run, in order, with the state on stdin.
    #[test]
    fn a_failing_hook_does_not_stop_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let hooks = vec![
            hook(&format!("echo first >> {}", out.display())),
            hook("exit 1"),
            hook(&format!(
                "grep -q '\"id\":\"c1\"' && echo third >> {}",
                out.display()
            )),
        ];
        run(&hooks, Stage::Poststop, &state(dir.path()), None);
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "first\nthird\n");
    }
}

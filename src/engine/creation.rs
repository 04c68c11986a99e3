//! The processes of one unfinished create, found by a file they all hold open.
//!
//! libcontainer clones its intermediate and init processes from the create without an exec,
//! so they inherit every descriptor, close-on-exec ones included, until the init execs the
//! container's process at `start`. A create killed part-way leaves them running: the
//! intermediate may not have joined the container's cgroup yet (and would make it again after
//! delete removed it), and the state may not name the init. create holds `<root>/.<id>:creating`
//! open from before the build until its record is saved; `delete --force` of a container
//! without a record kills every process that still holds it, then removes the cgroup, so
//! nothing can come back. (`:` is not allowed in an id: no container's name is the mark's.)
//!
//! Test-only: `CDIRUN_TEST_PAUSE_AT=<stage>` makes create stop at one named point (see
//! [`PAUSE_STAGES`]), say so on stderr and sleep, so the crash tests can SIGKILL it there and
//! check that `delete --force` still cleans up. It only ever delays; nothing sets it in use.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The mark of container `id` under `root`.
pub fn mark_path(root: &Path, id: &str) -> PathBuf {
    root.join(format!(".{id}:creating"))
}

/// The open mark: held by create and, through inheritance, by the processes it starts.
pub struct Mark {
    path: PathBuf,
    _file: File,
}

impl Mark {
    /// Creates (or reopens, after a crash) the mark of `id` under `root` and keeps it open.
    pub fn take(root: &Path, id: &str) -> io::Result<Self> {
        fs::create_dir_all(root)?;
        let path = mark_path(root, id);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        Ok(Self { path, _file: file })
    }

    /// The create is done (or undone): the mark goes, and this process lets go of it. A
    /// waiting init keeps the removed file open until `start`, which no scan matches.
    pub fn finish(self) {
        if let Err(err) = fs::remove_file(&self.path) {
            if err.kind() != io::ErrorKind::NotFound {
                tracing::warn!("cannot remove {}: {err}", self.path.display());
            }
        }
    }
}

/// How long [`kill_holders`] keeps killing: a forking intermediate makes new holders.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// Kills every process (other than this one) that holds the mark of `id` under `root` open,
/// until none is left, then removes the mark. Nothing to do when there is no mark.
pub fn kill_holders(root: &Path, id: &str) -> io::Result<()> {
    let path = mark_path(root, id);
    let target = match fs::canonicalize(&path) {
        Ok(target) => target,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err),
    };
    let deadline = Instant::now() + KILL_WAIT;
    loop {
        let holders = holders_of(&target);
        if holders.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            return Err(io::Error::other(format!(
                "processes {holders:?} of an unfinished create still hold {} after SIGKILL",
                path.display()
            )));
        }
        for pid in holders {
            // Gone meanwhile is what we want anyway.
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    match fs::remove_file(&path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

/// Pids of the processes with a descriptor open on `target` (this process left out). A killed
/// process closes its descriptors as it exits, before it is a zombie.
fn holders_of(target: &Path) -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(procs) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        // Another user's process, or one that exited: not ours to find.
        let Ok(fds) = fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        if fds
            .flatten()
            .any(|fd| fs::read_link(fd.path()).is_ok_and(|link| link == target))
        {
            found.push(pid);
        }
    }
    found
}

/// The points of create where `CDIRUN_TEST_PAUSE_AT` can stop it, in order: after the edits
/// took their claims; after config.json was rewritten; after libcontainer made the state dir
/// and the waiting init; after the init was placed in every hierarchy; after cdirun.json.
pub const PAUSE_STAGES: [&str; 5] = ["edited", "saved", "built", "placed", "recorded"];

/// Test-only crash point: when `CDIRUN_TEST_PAUSE_AT` names `stage`, prints
/// `cdirun: paused at <stage>` on stderr and sleeps (a minute at most, then goes on).
pub fn pause_at(stage: &str) {
    if std::env::var_os("CDIRUN_TEST_PAUSE_AT").is_some_and(|at| at == stage) {
        crate::commands::print_err(&format!("cdirun: paused at {stage}"));
        std::thread::sleep(Duration::from_secs(60));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_holding_the_mark_is_killed_and_the_mark_removed() {
        let root = tempfile::tempdir().unwrap();
        let mark = Mark::take(root.path(), "c1").unwrap();
        // A child that inherits the mark across a fork without exec, as libcontainer's do.
        // SAFETY: the child only sleeps and exits; it touches no lock the parent may hold.
        let child = match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                std::thread::sleep(Duration::from_secs(30));
                unsafe { nix::libc::_exit(0) }
            }
            nix::unistd::ForkResult::Parent { child } => child,
        };
        drop(mark);
        let target = fs::canonicalize(mark_path(root.path(), "c1")).unwrap();
        assert_eq!(holders_of(&target), [child.as_raw()]);
        kill_holders(root.path(), "c1").unwrap();
        let status = nix::sys::wait::waitpid(child, None).unwrap();
        assert!(
            matches!(
                status,
                nix::sys::wait::WaitStatus::Signaled(_, Signal::SIGKILL, _)
            ),
            "{status:?}"
        );
        assert!(!mark_path(root.path(), "c1").exists());
        kill_holders(root.path(), "c1").unwrap();
    }
}

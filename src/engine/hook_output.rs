//! Keeps hook programs' output off cdirun's and the container's streams: it goes to `--log`,
//! and the last lines are kept for the error line of a hook that fails. Also leaves a mark in the
//! container's state dir once the init executes the user process, so `start` and `run` can tell
//! a failed startContainer hook from a process that ran.
//!
//! libcontainer 0.7 spawns every hook with its stderr inherited (stdout goes to /dev/null):
//! prestart and createRuntime hooks from cdirun's process, createContainer and startContainer
//! hooks from the container's init, whose stderr is the container's. A shim or conmon hands
//! cdirun's stderr on as the container's, so every hook's chatter ended up in the container's
//! log. libcontainer offers no way to give hooks other stdio, so around `build` cdirun's fd 2
//! is a pipe that a thread here drains into the log; the init inherits it for its
//! createContainer hooks. The init's executor ([`quiet_for_start_hooks`], then
//! [`before_exec`]) points fd 2 at /dev/null for the startContainer hooks and gives the user
//! process the container's own stderr back right before the exec.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::unistd::Pid;

/// The file in a container's state dir that holds a byte once the init has reached the exec of
/// the user process.
pub const EXEC_MARK: &str = "cdirun-exec-started";

/// How many of the last lines of hook output an error line carries.
const TAIL_LINES: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum HookOutputError {
    #[error("cannot redirect stderr around the container's hooks: {0}")]
    Redirect(nix::errno::Errno),
    #[error("cannot give the container's process its stderr back: {0}")]
    Restore(nix::errno::Errno),
    #[error("cannot point the startContainer hooks' stderr at /dev/null: {0}")]
    DevNull(std::io::Error),
}

/// fd of the caller's stderr while the capture runs (the container's stderr); -1 outside it.
/// The init process gets a copy of this value, and of the descriptor, when it is cloned.
static CONTAINER_STDERR: AtomicI32 = AtomicI32::new(-1);
/// fd the init's executor gives back to the user process as stderr; set in the init only.
static STDERR_FOR_EXEC: AtomicI32 = AtomicI32::new(-1);
/// fd of the unnamed file that becomes EXEC_MARK; -1 when no startContainer hook needs it.
static MARK_FD: AtomicI32 = AtomicI32::new(-1);

/// Hook output being drained into the log while libcontainer builds a container.
pub struct Capture {
    saved: OwnedFd,
    mark: Option<File>,
    tail: Arc<Mutex<Tail>>,
    drained: std::sync::mpsc::Receiver<()>,
}

#[derive(Default)]
struct Tail {
    lines: std::collections::VecDeque<String>,
}

impl Tail {
    fn push(&mut self, line: String) {
        if self.lines.len() == TAIL_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }
}

impl Capture {
    /// Points fd 2 at a pipe drained into the log. With `mark_in` (the runtime root), also
    /// makes the unnamed file the init marks before its exec.
    pub fn begin(mark_in: Option<&Path>) -> Result<Capture, HookOutputError> {
        use nix::fcntl::{FcntlArg, OFlag, fcntl};
        let saved = fcntl(2, FcntlArg::F_DUPFD_CLOEXEC(10)).map_err(HookOutputError::Redirect)?;
        // SAFETY: F_DUPFD_CLOEXEC just returned this new descriptor; nothing else owns it.
        let saved = unsafe { OwnedFd::from_raw_fd(saved) };
        let (read, write) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(HookOutputError::Redirect)?;
        // An unnamed file in the root (same filesystem as the state dir, so it can be linked
        // there); the O_TMPFILE open fails on filesystems without it, and then no mark is left.
        let mark = mark_in.and_then(|root| {
            std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_TMPFILE)
                .mode(0o600)
                .open(root)
                .map_err(|err| tracing::debug!("no exec mark in {}: {err}", root.display()))
                .ok()
        });
        let tail = Arc::new(Mutex::new(Tail::default()));
        let (done, drained) = std::sync::mpsc::channel();
        let sink = Arc::clone(&tail);
        std::thread::spawn(move || {
            let to_log = crate::log::has_file();
            for line in BufReader::new(File::from(read)).lines() {
                let Ok(line) = line else { break };
                // Without a log file, tracing (--debug) writes to fd 2, which is this pipe:
                // only lines logged to a file are passed on, or they would go round forever.
                // At warn, the level --log keeps without --debug.
                if to_log {
                    tracing::warn!("hook output: {line}");
                }
                sink.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
            let _ = done.send(());
        });
        nix::unistd::dup2(write.as_raw_fd(), 2).map_err(HookOutputError::Redirect)?;
        drop(write);
        CONTAINER_STDERR.store(saved.as_raw_fd(), Ordering::SeqCst);
        MARK_FD.store(
            mark.as_ref().map_or(-1, AsRawFd::as_raw_fd),
            Ordering::SeqCst,
        );
        Ok(Capture {
            saved,
            mark,
            tail,
            drained,
        })
    }

    /// Gives fd 2 back and returns the last lines the hooks wrote. With the container's state
    /// dir (the build succeeded), the exec mark is linked into it.
    pub fn end(self, container_dir: Option<&Path>) -> String {
        if let Err(err) = nix::unistd::dup2(self.saved.as_raw_fd(), 2) {
            tracing::warn!("cannot restore stderr after the hooks ran: {err}");
        }
        CONTAINER_STDERR.store(-1, Ordering::SeqCst);
        MARK_FD.store(-1, Ordering::SeqCst);
        // The init gave up its end before it reported ready; a failed build killed it.
        let _ = self.drained.recv_timeout(Duration::from_secs(2));
        if let (Some(mark), Some(dir)) = (&self.mark, container_dir) {
            link_mark(mark, &dir.join(EXEC_MARK));
        }
        let tail = self.tail.lock().unwrap_or_else(|e| e.into_inner());
        tail.lines.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

/// Gives the unnamed file `mark` the name `path`.
fn link_mark(mark: &File, path: &Path) {
    let from = std::ffi::CString::new(format!("/proc/self/fd/{}", mark.as_raw_fd()));
    let to = std::ffi::CString::new(path.as_os_str().as_encoded_bytes());
    let (Ok(from), Ok(to)) = (from, to) else {
        return;
    };
    // SAFETY: both are valid NUL-terminated paths that outlive the call.
    let linked = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    if linked != 0 {
        let err = std::io::Error::last_os_error();
        tracing::debug!("cannot name the exec mark {}: {err}", path.display());
    }
}

/// In the container's init, after its createContainer hooks and before its startContainer
/// hooks: fd 2 goes to /dev/null, and the stderr the user process gets is kept (the
/// terminal when there is one, set up after the createContainer hooks; else the caller's).
pub fn quiet_for_start_hooks(terminal: bool) -> Result<(), HookOutputError> {
    let container = CONTAINER_STDERR.load(Ordering::SeqCst);
    if container < 0 {
        return Ok(()); // not an init cdirun captured (an exec, or a create without hooks)
    }
    let keep = if terminal {
        let keep = nix::fcntl::fcntl(2, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(10))
            .map_err(HookOutputError::Redirect)?;
        // With a terminal the caller's stderr is not the container's: it is the create's own
        // output, which containerd's shim reads to its end before it takes the pty master.
        // Kept open until the exec, it held Docker's `run -it` in create for ever (the start
        // that would close it never comes).
        let _ = nix::unistd::close(container);
        CONTAINER_STDERR.store(-1, Ordering::SeqCst);
        keep
    } else {
        container
    };
    STDERR_FOR_EXEC.store(keep, Ordering::SeqCst);
    let null = File::options()
        .write(true)
        .open("/dev/null")
        .map_err(HookOutputError::DevNull)?;
    nix::unistd::dup2(null.as_raw_fd(), 2).map_err(HookOutputError::Redirect)?;
    Ok(())
}

/// In the container's init, right before the exec of the user process: its stderr back, and
/// the exec mark set.
pub fn before_exec() -> Result<(), HookOutputError> {
    let keep: RawFd = STDERR_FOR_EXEC.load(Ordering::SeqCst);
    if keep >= 0 {
        nix::unistd::dup2(keep, 2).map_err(HookOutputError::Restore)?;
    }
    let mark = MARK_FD.load(Ordering::SeqCst);
    if mark >= 0 {
        // A lost mark only makes `start` wait for the process instead of seeing it ran.
        let _ = nix::unistd::write(
            // SAFETY: the descriptor was inherited from the create and stays open until exec.
            unsafe { std::os::fd::BorrowedFd::borrow_raw(mark) },
            b"1",
        );
    }
    Ok(())
}

/// How a started init went on: `true` once it reached the exec of the user process, `false`
/// when it died before (a startContainer hook failed). Without a mark file (a filesystem
/// without O_TMPFILE) a change of the init's executable counts as the exec.
pub fn reached_exec(container_dir: &Path, init: Pid, before: Option<&Path>) -> bool {
    let mark = container_dir.join(EXEC_MARK);
    let has_mark = mark.exists();
    let marked = || std::fs::metadata(&mark).is_ok_and(|m| m.len() > 0);
    let mut warned = Instant::now();
    loop {
        if marked() {
            return true;
        }
        let exe = std::fs::read_link(format!("/proc/{init}/exe")).ok();
        if !alive(init) {
            return marked();
        }
        if !has_mark && exe.is_some() && exe.as_deref() != before {
            return true;
        }
        if warned.elapsed() > Duration::from_secs(10) {
            tracing::warn!("container init {init} still runs its startContainer hooks");
            warned = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Whether `pid` runs (a zombie does not).
fn alive(pid: Pid) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, Some('Z' | 'X') | None)
}

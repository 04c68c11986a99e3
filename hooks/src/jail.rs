//! Runs a program of the container's image inside its rootfs, never seeing the host's files.
//!
//! The child joins the container's mount namespace if the hook runs outside it, unshares a
//! private mount namespace, bind-mounts the rootfs onto itself and pivots into it, detaching
//! the old root. A chroot alone would leave the host tree reachable to a root process (and
//! before pivot_root the container's mount tree still holds the host's files).

use std::ffi::CString;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::state::Target;

/// PATH for programs run in the rootfs when the container's env has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, thiserror::Error)]
pub enum JailError {
    #[error("cannot open the mount namespace {path}: {cause}")]
    Namespace { path: PathBuf, cause: io::Error },
    #[error("cannot run {program} inside the container rootfs {rootfs}: {cause}")]
    Spawn {
        program: String,
        rootfs: PathBuf,
        cause: io::Error,
    },
    #[error("cannot collect the output of {program}: {cause}")]
    Output { program: String, cause: io::Error },
    #[error("{program} did not finish within {seconds}s and was killed")]
    Timeout { program: String, seconds: u64 },
}

/// How one program run in the rootfs ended.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    /// stdout and stderr, interleaved as written, at most `keep` bytes (the head is kept).
    pub output: Vec<u8>,
    /// Bytes beyond `keep` that were read and dropped.
    pub dropped: u64,
}

impl Finished {
    /// "exit status N" or "signal N".
    pub fn describe(&self) -> String {
        match (self.status.code(), self.status.signal()) {
            (Some(code), _) => format!("exit status {code}"),
            (None, Some(signal)) => format!("killed by signal {signal}"),
            _ => "an unknown status".into(),
        }
    }

    /// The last `max` bytes of output as text, for error messages.
    pub fn tail(&self, max: usize) -> String {
        let start = self.output.len().saturating_sub(max);
        let text = String::from_utf8_lossy(&self.output[start..]);
        let text = text.trim_end();
        if start > 0 || self.dropped > 0 {
            format!("[...]\n{text}")
        } else {
            text.to_owned()
        }
    }
}

/// A program to run in the rootfs.
pub struct Run<'a> {
    pub target: &'a Target,
    /// Path of the program inside the container.
    pub program: &'a str,
    pub args: Vec<String>,
    /// Made fd 3 of the program (read-only delivery of a script).
    pub fd3: Option<&'a OwnedFd>,
    pub keep: usize,
    pub timeout: Duration,
}

fn cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The child's side: everything between fork and exec. Only syscalls on data prepared before
/// the fork (the hook process is single-threaded when it spawns, so nothing here can deadlock).
fn enter(ns: Option<RawFd>, root: &CString, fd3: Option<RawFd>) -> io::Result<()> {
    let dot = c".";
    let slash = c"/";
    // SAFETY: each call gets valid NUL-terminated strings or null pointers where the kernel
    // accepts them, and fds that are open in this (child) process; none touches our memory.
    unsafe {
        // Own process group, so a timeout kills whatever the program started.
        check(libc::setpgid(0, 0))?;
        if let Some(ns) = ns {
            check(libc::setns(ns, libc::CLONE_NEWNS))?;
        }
        check(libc::unshare(libc::CLONE_NEWNS))?;
        check(libc::mount(
            std::ptr::null(),
            slash.as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ))?;
        check(libc::mount(
            root.as_ptr(),
            root.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND | libc::MS_REC,
            std::ptr::null(),
        ))?;
        check(libc::chdir(root.as_ptr()))?;
        check(libc::syscall(libc::SYS_pivot_root, dot.as_ptr(), dot.as_ptr()) as libc::c_int)?;
        check(libc::umount2(dot.as_ptr(), libc::MNT_DETACH))?;
        check(libc::chdir(slash.as_ptr()))?;
        if let Some(fd) = fd3 {
            if libc::dup2(fd, 3) < 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

impl Run<'_> {
    /// Runs the program to completion with its output captured (stdin is /dev/null).
    pub fn run(self) -> Result<Finished, JailError> {
        let program = self.program.to_owned();
        let spawn_error = |cause| JailError::Spawn {
            program: program.clone(),
            rootfs: self.target.rootfs.clone(),
            cause,
        };
        let ns = match &self.target.mount_ns {
            Some(path) => {
                Some(
                    std::fs::File::open(path).map_err(|cause| JailError::Namespace {
                        path: path.clone(),
                        cause,
                    })?,
                )
            }
            None => None,
        };
        let root = cstring(&self.target.ns_rootfs).map_err(spawn_error)?;
        let (reader, writer) = std::io::pipe().map_err(spawn_error)?;
        let writer2 = writer.try_clone().map_err(spawn_error)?;

        let mut cmd = Command::new(self.program);
        cmd.args(&self.args)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(writer2);
        let mut has_path = false;
        for entry in &self.target.env {
            if let Some((key, value)) = entry.split_once('=') {
                has_path |= key == "PATH";
                cmd.env(key, value);
            }
        }
        if !has_path {
            cmd.env("PATH", DEFAULT_PATH);
        }
        let ns_fd = ns.as_ref().map(|f| f.as_raw_fd());
        let fd3 = self.fd3.map(|fd| fd.as_raw_fd());
        // SAFETY: `enter` only makes syscalls on values captured by copy or reference that
        // stay alive until after spawn returns; it allocates nothing.
        unsafe {
            cmd.pre_exec(move || enter(ns_fd, &root, fd3));
        }
        let mut child = cmd.spawn().map_err(spawn_error)?;
        // Our copies of the pipe's write end are gone with `cmd`, so EOF comes when the
        // program (and anything it left running with the pipe) is done.
        drop(cmd);
        let keep = self.keep;
        let collector = std::thread::spawn(move || collect(reader, keep));

        let deadline = Instant::now() + self.timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() >= deadline => {
                    // SAFETY: kill(2) on the child's process group (its pid, set in `enter`).
                    unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL) };
                    let _ = child.wait();
                    return Err(JailError::Timeout {
                        program,
                        seconds: self.timeout.as_secs(),
                    });
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(cause) => return Err(JailError::Output { program, cause }),
            }
        };
        // Whatever the program left behind in its group must not hold the output open.
        // SAFETY: kill(2) on the finished child's process group; ESRCH when it is empty.
        unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL) };
        let (output, dropped) = collector
            .join()
            .unwrap_or_else(|_| Ok((Vec::new(), 0)))
            .map_err(|cause| JailError::Output {
                program: program.clone(),
                cause,
            })?;
        Ok(Finished {
            status,
            output,
            dropped,
        })
    }
}

fn collect(mut reader: impl Read, keep: usize) -> io::Result<(Vec<u8>, u64)> {
    let mut output = Vec::new();
    let mut dropped = 0u64;
    let mut buf = [0u8; 8192];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        let room = keep.saturating_sub(output.len()).min(n);
        output.extend_from_slice(&buf[..room]);
        dropped += (n - room) as u64;
    }
    Ok((output, dropped))
}

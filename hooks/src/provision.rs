//! `provision`: runs a node-provided setup script inside the container before its process
//! starts (a createContainer hook: the container's namespaces, its rootfs mounted, full
//! privileges, before capabilities are dropped).
//!
//! - Delivery is read-only: the script is read from the host (at most `--max-size` bytes) into
//!   a sealed memfd that the shell sources as `/proc/self/fd/3`; nothing is written into the
//!   image and neither the container nor the script can change what runs.
//! - The shell runs `set -e -o pipefail` first; a shell without pipefail is a clear error.
//! - stdout and stderr are captured together; `--log` writes them into the container.
//! - A failure aborts the container's start: the hook exits non-zero and its stderr carries the
//!   script's exit status and the tail of its output.

use std::ffi::CString;
use std::io::{self, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::jail::{JailError, Run};
use crate::rootfs::{Root, RootError, components};
use crate::state::Target;

/// The default `--max-size`.
pub const DEFAULT_MAX_SIZE: u64 = 1 << 20;
/// Output kept (and logged) per run.
pub const KEEP_OUTPUT: usize = 1 << 20;
/// Exit status of the prelude when the shell lacks `set -o pipefail`.
pub const NO_PIPEFAIL: i32 = 125;

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error(
        "provision must be a createContainer hook (it runs in the container's namespaces); this one runs in the runtime's namespaces"
    )]
    Stage,
    #[error("cannot read provision script {path}: {cause}")]
    Read { path: PathBuf, cause: io::Error },
    #[error("provision script {path} is not a regular file")]
    NotAFile { path: PathBuf },
    #[error("provision script {path} is larger than the limit of {limit} bytes (--max-size)")]
    TooLarge { path: PathBuf, limit: u64 },
    #[error("cannot deliver provision script {path} read-only: {cause}")]
    Deliver { path: PathBuf, cause: io::Error },
    #[error("the shell {shell} does not exist in the container rootfs (choose one with --shell)")]
    NoShell { shell: String },
    #[error(
        "the shell {shell} in the container cannot `set -o pipefail` (choose one that can with --shell, e.g. /bin/bash)"
    )]
    NoPipefail { shell: String },
    #[error(transparent)]
    Root(#[from] RootError),
    #[error(transparent)]
    Jail(#[from] JailError),
    #[error("provision script {path} failed with {status}; its output:\n{output}")]
    Failed {
        path: PathBuf,
        status: String,
        output: String,
    },
}

/// What the shell runs: the pipefail check, the strict options, then the script.
pub fn prelude(shell: &str) -> String {
    format!(
        "(set -o pipefail) 2>/dev/null || {{ echo 'cdirun-hook provision: {shell} cannot set -o pipefail' >&2; exit {NO_PIPEFAIL}; }}\n\
         set -e -o pipefail\n\
         . /proc/self/fd/3\n"
    )
}

pub struct Options<'a> {
    pub script: &'a Path,
    pub shell: &'a str,
    pub max_size: u64,
    pub log: Option<&'a str>,
    pub timeout: Duration,
}

/// Reads at most `limit` bytes of a regular file; more is an error.
pub fn read_script(path: &Path, limit: u64) -> Result<Vec<u8>, ProvisionError> {
    let read_error = |cause| ProvisionError::Read {
        path: path.to_owned(),
        cause,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    if !file.metadata().map_err(read_error)?.is_file() {
        return Err(ProvisionError::NotAFile {
            path: path.to_owned(),
        });
    }
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > limit {
        return Err(ProvisionError::TooLarge {
            path: path.to_owned(),
            limit,
        });
    }
    Ok(bytes)
}

/// A read-only fd holding `bytes`: a memfd sealed against any change, reopened O_RDONLY.
pub fn sealed(bytes: &[u8]) -> io::Result<OwnedFd> {
    let name = CString::new("cdirun-provision").expect("no NUL");
    // SAFETY: memfd_create gets a valid NUL-terminated name; the new fd is ours.
    let fd =
        unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by the kernel and nothing else owns it.
    let memfd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut file = std::fs::File::from(memfd);
    file.write_all(bytes)?;
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: fcntl on an fd we own, with an integer argument.
    if unsafe {
        libc::fcntl(
            std::os::fd::AsRawFd::as_raw_fd(&file),
            libc::F_ADD_SEALS,
            seals,
        )
    } != 0
    {
        return Err(io::Error::last_os_error());
    }
    let reopened = std::fs::File::open(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&file)
    ))?;
    Ok(OwnedFd::from(reopened))
}

pub fn run(target: &Target, opts: &Options) -> Result<(), ProvisionError> {
    if !target.in_container() {
        return Err(ProvisionError::Stage);
    }
    if let Some(log) = opts.log {
        components(log)?;
    }
    let script = read_script(opts.script, opts.max_size)?;
    let fd = sealed(&script).map_err(|cause| ProvisionError::Deliver {
        path: opts.script.to_owned(),
        cause,
    })?;
    let root = Root::open(&target.rootfs)?;
    if !root.is_file(opts.shell) {
        return Err(ProvisionError::NoShell {
            shell: opts.shell.to_owned(),
        });
    }
    let finished = Run {
        target,
        program: opts.shell,
        args: vec!["-c".into(), prelude(opts.shell), "provision".into()],
        fd3: Some(&fd),
        keep: KEEP_OUTPUT,
        timeout: opts.timeout,
    }
    .run()?;
    if let Some(log) = opts.log {
        let mut text = finished.output.clone();
        if finished.dropped > 0 {
            text.extend_from_slice(
                format!("\n[cdirun-hook: {} more bytes dropped]\n", finished.dropped).as_bytes(),
            );
        }
        root.write_file(log, &text, 0o640)?;
    }
    if finished.status.code() == Some(NO_PIPEFAIL)
        && finished.output.starts_with(b"cdirun-hook provision:")
    {
        return Err(ProvisionError::NoPipefail {
            shell: opts.shell.to_owned(),
        });
    }
    if !finished.status.success() {
        return Err(ProvisionError::Failed {
            path: opts.script.to_owned(),
            status: finished.describe(),
            output: finished.tail(4096),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use super::*;

    #[test]
    fn script_size_is_limited_by_what_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sh");
        std::fs::write(&path, "echo hi\n").unwrap();
        assert_eq!(read_script(&path, 8).unwrap(), b"echo hi\n");
        let err = read_script(&path, 7).unwrap_err().to_string();
        assert!(err.contains("7 bytes") && err.contains("s.sh"), "{err}");
        let err = read_script(dir.path(), 7).unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");
    }

    #[test]
    fn delivered_script_cannot_be_changed() {
        let fd = sealed(b"echo hi\n").unwrap();
        let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
        assert_eq!(std::fs::read(&path).unwrap(), b"echo hi\n");
        // Even a read-write reopen cannot write a write-sealed memfd.
        let writable = std::fs::OpenOptions::new().write(true).open(&path);
        if let Ok(mut file) = writable {
            assert!(file.write_all(b"rm -rf /\n").is_err());
        }
        assert_eq!(std::fs::read(&path).unwrap(), b"echo hi\n");
    }

    #[test]
    fn prelude_checks_pipefail_then_sets_it() {
        let text = prelude("/bin/sh");
        let check = text.find("(set -o pipefail)").unwrap();
        let set = text.find("set -e -o pipefail").unwrap();
        let source = text.find(". /proc/self/fd/3").unwrap();
        assert!(check < set && set < source);
    }
}

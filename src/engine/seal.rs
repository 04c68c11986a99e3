//! Protection against CVE-2019-5736 for the verbs that put a process into a container.
//! libcontainer 0.7 has none: it leaves this to the binary that embeds it (youki's own `main`
//! seals itself with pentacle), so this stays when libcontainer is fixed.
//!
//! A process inside the container can reach the runtime's binary through `/proc/<pid>/exe` while
//! the runtime joins the container, and overwrite it on the host. The runtime must therefore run
//! from a file that cannot be written. pentacle (and youki) copy the binary into a sealed memfd
//! on every call, which costs ~10 ms for our binary (copy plus page faults on private pages).
//! Instead, cdirun re-executes itself through a detached, read-only bind mount of its own binary:
//! the kernel refuses any write through that mount (EROFS), the page cache stays shared, and a
//! mount that is never attached cannot propagate into other mount namespaces (the "mount storm"
//! that made runc drop its attached bind-mount variant). Where the kernel lacks `open_tree` /
//! `mount_setattr` (before 5.12) or cdirun lacks CAP_SYS_ADMIN, it falls back to pentacle.

use std::ffi::{CString, OsString};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;

/// Set in the environment of the re-executed process; removed again before anything else runs.
const MARKER: &str = "_CDIRUN_SEALED";

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("cannot re-execute cdirun from a read-only mount ({step}): {errno}")]
    Mount {
        step: &'static str,
        errno: nix::errno::Errno,
    },
    #[error("cannot re-execute cdirun from a sealed memfd: {0}")]
    Memfd(std::io::Error),
}

/// Returns once this process runs from a binary nobody can write; otherwise re-executes itself
/// (and does not return on success).
pub fn ensure() -> Result<(), SealError> {
    let marked = std::env::var_os(MARKER).is_some();
    if marked {
        // SAFETY: called at the start of main, before any other thread exists.
        unsafe { std::env::remove_var(MARKER) };
    }
    if exe_is_read_only() || pentacle::is_sealed() {
        return Ok(());
    }
    if !marked {
        match read_only_clone() {
            Ok(fd) => return Err(reexec(&fd)),
            Err(err) => tracing::debug!("{err}; falling back to a sealed memfd"),
        }
    }
    pentacle::ensure_sealed().map_err(SealError::Memfd)
}

/// Whether /proc/self/exe lives on a read-only mount (ours, or a read-only filesystem).
fn exe_is_read_only() -> bool {
    nix::sys::statvfs::statvfs("/proc/self/exe")
        .map(|st| st.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY))
        .unwrap_or(false)
}

/// A detached read-only bind mount of our own binary, as an O_PATH descriptor.
fn read_only_clone() -> Result<OwnedFd, SealError> {
    let exe = c"/proc/self/exe";
    // SAFETY: open_tree takes a valid C string and flags; it returns a new fd or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            exe.as_ptr(),
            libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(SealError::Mount {
            step: "open_tree",
            errno: nix::errno::Errno::last(),
        });
    }
    // SAFETY: fd was just returned by open_tree and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    use std::os::fd::AsRawFd;
    mount_setattr(
        fd.as_raw_fd(),
        c"",
        libc::AT_EMPTY_PATH,
        libc::MOUNT_ATTR_RDONLY,
    )
    .map_err(|errno| SealError::Mount {
        step: "mount_setattr",
        errno,
    })?;
    Ok(fd)
}

/// mount_setattr(2): sets the `attrs` flags (`MOUNT_ATTR_*`) on the mount at `path` (relative to
/// `dirfd`, resolved as `flags` say).
pub(crate) fn mount_setattr(
    dirfd: std::os::fd::RawFd,
    path: &std::ffi::CStr,
    flags: libc::c_int,
    attrs: u64,
) -> nix::Result<()> {
    let attr = libc::mount_attr {
        attr_set: attrs,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: the kernel reads the C string and `attr`, of the size passed, and nothing else.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            dirfd,
            path.as_ptr(),
            flags,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    nix::errno::Errno::result(rc).map(drop)
}

/// Executes the binary behind `fd` with our argv and environment plus the marker; returns only
/// the error if that fails.
fn reexec(fd: &OwnedFd) -> SealError {
    use std::os::fd::AsRawFd;
    let to_c = |s: OsString| CString::new(s.into_vec()).unwrap_or_default();
    let args: Vec<CString> = std::env::args_os().map(to_c).collect();
    let mut env: Vec<CString> = std::env::vars_os()
        .map(|(k, v)| {
            let mut kv = k;
            kv.push("=");
            kv.push(v);
            to_c(kv)
        })
        .collect();
    env.push(to_c(format!("{MARKER}=1").into()));
    let errno = nix::unistd::execveat(
        Some(fd.as_raw_fd()),
        c"",
        &args,
        &env,
        nix::fcntl::AtFlags::AT_EMPTY_PATH,
    )
    .unwrap_err();
    SealError::Mount {
        step: "execveat",
        errno,
    }
}

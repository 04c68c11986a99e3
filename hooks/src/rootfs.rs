//! File operations inside a container rootfs that cannot escape it.
//!
//! Hooks run as root in (or next to) the host's mount tree, and the rootfs belongs to an image
//! that may be hostile: a symlink `/etc -> /host/etc` or a `..` path must never make a hook
//! write on the host. Every lookup goes through openat2(2) with `RESOLVE_IN_ROOT` from a
//! directory fd of the rootfs, so absolute symlinks and `..` resolve inside it; final components
//! are created with *at(2) calls on the resolved parent and never followed when written.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum RootError {
    #[error("cannot open the container rootfs {root}: {cause}")]
    Open { root: PathBuf, cause: io::Error },
    #[error("invalid container path {path:?}: {reason}")]
    Path { path: String, reason: &'static str },
    #[error("cannot resolve {path} in the container rootfs {root}: {cause}")]
    Resolve {
        path: PathBuf,
        root: PathBuf,
        cause: io::Error,
    },
    #[error("cannot create {path} in the container rootfs {root}: {cause}")]
    Create {
        path: PathBuf,
        root: PathBuf,
        cause: io::Error,
    },
    #[error("{path} already exists in the container rootfs {root} and points to {current:?}")]
    OtherLink {
        path: PathBuf,
        root: PathBuf,
        current: PathBuf,
    },
    #[error("{path} already exists in the container rootfs {root} and is not a symlink")]
    NotALink { path: PathBuf, root: PathBuf },
}

/// An open container rootfs.
#[derive(Debug)]
pub struct Root {
    dir: OwnedFd,
    path: PathBuf,
}

fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// openat2(2) relative to `dirfd`.
fn openat2(dirfd: RawFd, path: &Path, flags: i32, mode: u32, resolve: u64) -> io::Result<OwnedFd> {
    let path = cstring(path.as_os_str().as_bytes())?;
    // SAFETY: open_how is plain data; all-zero is its documented "no options" value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.mode = u64::from(mode);
    how.resolve = resolve;
    loop {
        // SAFETY: `path` is a valid NUL-terminated string and `how` a valid open_how of the
        // size passed; the kernel only reads them. The result is a new fd we then own.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dirfd,
                path.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if fd >= 0 {
            // SAFETY: the kernel just returned this fd and nothing else owns it.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) });
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EAGAIN) && err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

const IN_ROOT: u64 = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;

/// The normal components of an absolute container path; `..` is refused outright (even though
/// resolution would clamp it at the root, such a path says something other than it means).
pub fn components(path: &str) -> Result<Vec<&OsStr>, RootError> {
    let bad = |reason| RootError::Path {
        path: path.to_owned(),
        reason,
    };
    let p = Path::new(path);
    if !p.is_absolute() {
        return Err(bad("not an absolute path"));
    }
    let mut parts = Vec::new();
    for component in p.components() {
        match component {
            Component::Normal(part) => parts.push(part),
            Component::ParentDir => return Err(bad("contains a `..` component")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Ok(parts)
}

impl Root {
    pub fn open(path: &Path) -> Result<Self, RootError> {
        let dir = openat2(libc::AT_FDCWD, path, libc::O_PATH | libc::O_DIRECTORY, 0, 0).map_err(
            |cause| RootError::Open {
                root: path.to_owned(),
                cause,
            },
        )?;
        Ok(Self {
            dir,
            path: path.to_owned(),
        })
    }

    fn resolve(&self, rel: &Path, flags: i32) -> io::Result<OwnedFd> {
        if rel.as_os_str().is_empty() {
            return openat2(self.dir.as_raw_fd(), Path::new("."), flags, 0, IN_ROOT);
        }
        openat2(self.dir.as_raw_fd(), rel, flags, 0, IN_ROOT)
    }

    /// Whether `path` (a container path) is a regular file, following symlinks inside the root.
    pub fn is_file(&self, path: &str) -> bool {
        let Ok(parts) = components(path) else {
            return false;
        };
        let rel: PathBuf = parts.iter().collect();
        let Ok(fd) = self.resolve(&rel, libc::O_PATH) else {
            return false;
        };
        // SAFETY: stat is plain data filled in by fstat on a valid fd we own.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `fd` is open and `st` is a valid out-pointer.
        let rc = unsafe { libc::fstat(fd.as_raw_fd(), &mut st) };
        rc == 0 && (st.st_mode & libc::S_IFMT) == libc::S_IFREG
    }

    /// Opens (creating as needed, mode 0755) the directory `parts` names; returns an O_PATH fd.
    fn mkdir_all(&self, parts: &[&OsStr]) -> Result<OwnedFd, RootError> {
        let mut current = self
            .resolve(Path::new(""), libc::O_PATH | libc::O_DIRECTORY)
            .map_err(|cause| self.resolve_error(Path::new("/"), cause))?;
        let mut prefix = PathBuf::new();
        for part in parts {
            prefix.push(part);
            let shown = Path::new("/").join(&prefix);
            current = match self.resolve(&prefix, libc::O_PATH | libc::O_DIRECTORY) {
                Ok(fd) => fd,
                Err(err) if err.raw_os_error() == Some(libc::ENOENT) => {
                    let name = cstring(part.as_bytes())
                        .map_err(|cause| self.create_error(&shown, cause))?;
                    // SAFETY: `current` is an open directory fd and `name` a NUL-terminated
                    // single component, so the new directory lands inside it.
                    let rc = unsafe { libc::mkdirat(current.as_raw_fd(), name.as_ptr(), 0o755) };
                    if rc != 0 {
                        let cause = io::Error::last_os_error();
                        if cause.raw_os_error() != Some(libc::EEXIST) {
                            return Err(self.create_error(&shown, cause));
                        }
                    }
                    // Re-resolved from the root: whatever is there now is still inside it. A
                    // symlink dangling inside the rootfs ends here (EEXIST, then ENOENT).
                    self.resolve(&prefix, libc::O_PATH | libc::O_DIRECTORY)
                        .map_err(|cause| self.resolve_error(&shown, cause))?
                }
                Err(cause) => return Err(self.resolve_error(&shown, cause)),
            };
        }
        Ok(current)
    }

    fn resolve_error(&self, path: &Path, cause: io::Error) -> RootError {
        RootError::Resolve {
            path: path.to_owned(),
            root: self.path.clone(),
            cause,
        }
    }

    fn create_error(&self, path: &Path, cause: io::Error) -> RootError {
        RootError::Create {
            path: path.to_owned(),
            root: self.path.clone(),
            cause,
        }
    }

    /// Creates the symlink `link` -> `target` (target kept as given: an absolute target means a
    /// path inside the container). Parents are created. An existing identical link is fine
    /// (returns `false`); anything else already at `link` is an error.
    pub fn symlink(&self, target: &str, link: &str) -> Result<bool, RootError> {
        let parts = components(link)?;
        let Some((name, parents)) = parts.split_last() else {
            return Err(RootError::Path {
                path: link.to_owned(),
                reason: "names the root itself",
            });
        };
        let shown = PathBuf::from(link);
        let parent = self.mkdir_all(parents)?;
        let c_target =
            cstring(target.as_bytes()).map_err(|cause| self.create_error(&shown, cause))?;
        let c_name = cstring(name.as_bytes()).map_err(|cause| self.create_error(&shown, cause))?;
        // SAFETY: both strings are NUL-terminated and `parent` is an open directory fd.
        let rc = unsafe { libc::symlinkat(c_target.as_ptr(), parent.as_raw_fd(), c_name.as_ptr()) };
        if rc == 0 {
            return Ok(true);
        }
        let cause = io::Error::last_os_error();
        if cause.raw_os_error() != Some(libc::EEXIST) {
            return Err(self.create_error(&shown, cause));
        }
        let mut buf = vec![0u8; libc::PATH_MAX as usize];
        // SAFETY: `buf` is writable for its full length, which is what we pass.
        let n = unsafe {
            libc::readlinkat(
                parent.as_raw_fd(),
                c_name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if n < 0 {
            return Err(RootError::NotALink {
                path: shown,
                root: self.path.clone(),
            });
        }
        buf.truncate(n as usize);
        if buf == target.as_bytes() {
            Ok(false)
        } else {
            Err(RootError::OtherLink {
                path: shown,
                root: self.path.clone(),
                current: PathBuf::from(OsStr::from_bytes(&buf)),
            })
        }
    }

    /// Writes `contents` to the container file `path` (created with `mode`, truncated if it
    /// exists), creating parents. A symlink at `path` is refused rather than followed.
    pub fn write_file(&self, path: &str, contents: &[u8], mode: u32) -> Result<(), RootError> {
        use std::io::Write;
        let parts = components(path)?;
        let Some((name, parents)) = parts.split_last() else {
            return Err(RootError::Path {
                path: path.to_owned(),
                reason: "names the root itself",
            });
        };
        let shown = PathBuf::from(path);
        let parent = self.mkdir_all(parents)?;
        let fd = openat2(
            parent.as_raw_fd(),
            Path::new(name),
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_NOFOLLOW,
            mode,
            libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS,
        )
        .map_err(|cause| self.create_error(&shown, cause))?;
        std::fs::File::from(fd)
            .write_all(contents)
            .map_err(|cause| self.create_error(&shown, cause))
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn container_paths_must_be_absolute_without_dotdot() {
        assert_eq!(components("/a/./b//c").unwrap(), ["a", "b", "c"]);
        assert!(components("a/b").is_err());
        let err = components("/a/../../etc").unwrap_err().to_string();
        assert!(err.contains("..") && err.contains("/a/../../etc"), "{err}");
    }

    #[test]
    fn symlinks_are_created_with_parents_and_are_idempotent() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Root::open(tmp.path()).unwrap();
        assert!(root.symlink("libfoo.so.1", "/usr/lib/x/libfoo.so").unwrap());
        assert!(!root.symlink("libfoo.so.1", "/usr/lib/x/libfoo.so").unwrap());
        assert_eq!(
            fs::read_link(tmp.path().join("usr/lib/x/libfoo.so")).unwrap(),
            Path::new("libfoo.so.1")
        );
        let err = root
            .symlink("other", "/usr/lib/x/libfoo.so")
            .unwrap_err()
            .to_string();
        assert!(err.contains("libfoo.so.1"), "{err}");
        fs::write(tmp.path().join("file"), "x").unwrap();
        let err = root.symlink("t", "/file").unwrap_err().to_string();
        assert!(err.contains("not a symlink"), "{err}");
    }

    #[test]
    fn absolute_and_relative_symlinks_in_the_rootfs_cannot_escape_it() {
        let tmp = tempfile::tempdir().unwrap();
        let host = tmp.path().join("host");
        let rootfs = tmp.path().join("rootfs");
        fs::create_dir_all(&host).unwrap();
        fs::create_dir_all(rootfs.join("inside")).unwrap();
        // Absolute: would be the host dir outside a chroot.
        symlink(&host, rootfs.join("abs")).unwrap();
        let abs_inside = rootfs.join(host.strip_prefix("/").unwrap());
        fs::create_dir_all(&abs_inside).unwrap();
        // Relative with enough `..` to climb out of the rootfs.
        symlink("../../../../../../..", rootfs.join("up")).unwrap();
        let root = Root::open(&rootfs).unwrap();
        root.symlink("t", "/abs/link").unwrap();
        root.write_file("/up/file", b"data", 0o644).unwrap();
        assert!(
            fs::read_dir(&host).unwrap().next().is_none(),
            "wrote on the host"
        );
        // Both resolved inside the rootfs instead.
        assert!(
            fs::symlink_metadata(abs_inside.join("link"))
                .unwrap()
                .is_symlink()
        );
        assert_eq!(fs::read(rootfs.join("file")).unwrap(), b"data");
        // A symlink dangling inside the rootfs is an error, never a way out.
        symlink("/nowhere", rootfs.join("dangling")).unwrap();
        let err = root.symlink("t", "/dangling/link").unwrap_err().to_string();
        assert!(err.contains("/dangling"), "{err}");
    }

    #[test]
    fn writing_through_a_final_symlink_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        fs::write(&outside, "keep").unwrap();
        let rootfs = tmp.path().join("rootfs");
        fs::create_dir_all(rootfs.join("etc")).unwrap();
        symlink(&outside, rootfs.join("etc/conf")).unwrap();
        let root = Root::open(&rootfs).unwrap();
        let err = root
            .write_file("/etc/conf", b"x", 0o644)
            .unwrap_err()
            .to_string();
        assert!(err.contains("/etc/conf"), "{err}");
        assert_eq!(fs::read_to_string(&outside).unwrap(), "keep");
        root.write_file("/etc/new.conf", b"x", 0o644).unwrap();
        assert!(root.is_file("/etc/new.conf"));
        assert!(!root.is_file("/etc"));
    }
}

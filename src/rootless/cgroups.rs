//! Whether the cgroups cdirun would use are delegated to it, and, where libcontainer's cgroup
//! v1 manager would write the host's cgroups anyway, a private tmpfs over them.

use std::ffi::CString;
use std::path::Path;

use crate::cgroup::{CgroupPath, Hierarchies};

/// Whether this process may write `path` (access(2) with the real ids, as a delegation
/// check: the directory exists and is the caller's to make cgroups in).
fn writable(path: &Path) -> bool {
    let Ok(text) = CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: access only reads the NUL-terminated path it is given.
    unsafe { nix::libc::access(text.as_ptr(), nix::libc::W_OK) == 0 }
}

/// Whether `slice` is delegated to this process: it exists, with a writable `cgroup.procs`,
/// in every hierarchy of the host.
pub fn delegated(hierarchies: &Hierarchies, slice: &CgroupPath) -> bool {
    let mut any = false;
    for hierarchy in hierarchies.iter() {
        let dir = hierarchy.dir(slice);
        if !writable(&dir) || !writable(&dir.join("cgroup.procs")) {
            return false;
        }
        any = true;
    }
    any
}

static CGROUPS_HIDDEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Puts this process in a mount namespace of its own with an empty tmpfs over
/// `/sys/fs/cgroup`, so that libcontainer's cgroup v1 manager (which, unlike its v2 manager,
/// knows no rootless mode) makes its directories there and not in the host's cgroups, which
/// this process cannot write. Needs CAP_SYS_ADMIN in its user namespace, as root in podman's
/// rootless namespace has; false when that is missing. The container gets its own mount
/// namespace from this one; nothing changes for the caller's.
pub fn hide_cgroups() -> bool {
    use nix::mount::{MsFlags, mount};
    use nix::sched::{CloneFlags, unshare};
    if unshare(CloneFlags::CLONE_NEWNS).is_err() {
        return false;
    }
    // Host mounts still reach this namespace; none of this one's reach the host.
    let _ = mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    );
    let hidden = mount(
        Some("tmpfs"),
        "/sys/fs/cgroup",
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=755"),
    )
    .is_ok();
    CGROUPS_HIDDEN.store(hidden, std::sync::atomic::Ordering::SeqCst);
    hidden
}

/// Under [`hide_cgroups`]' tmpfs: makes `path` in every hierarchy with the files
/// libcontainer's v1 manager writes to when it adds a process (it opens them, never creates
/// them), so its placement lands in this process's private tmpfs and touches no cgroup.
pub fn fake_cgroup(hierarchies: &Hierarchies, path: &CgroupPath) -> std::io::Result<()> {
    for hierarchy in hierarchies.iter() {
        let dir = hierarchy.dir(path);
        std::fs::create_dir_all(&dir)?;
        for file in ["cgroup.procs", "tasks"] {
            std::fs::write(dir.join(file), "")?;
        }
        if hierarchy.has_v1("cpuset") {
            // libcontainer reads every cpuset from the mount down, to copy a parent's CPUs
            // into an empty child: none of these is empty.
            let mut level = hierarchy.mount.clone();
            let parts = path.components().iter();
            for next in std::iter::once(None).chain(parts.map(Some)) {
                if let Some(part) = next {
                    level.push(part);
                }
                for file in ["cpuset.cpus", "cpuset.mems"] {
                    std::fs::write(level.join(file), "0")?;
                }
            }
        }
    }
    Ok(())
}

/// Whether [`hide_cgroups`] covered the host's cgroups for this process.
pub fn cgroups_hidden() -> bool {
    CGROUPS_HIDDEN.load(std::sync::atomic::Ordering::SeqCst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slice_that_is_missing_or_not_writable_is_not_delegated() {
        let tree = tempfile::tempdir().unwrap();
        let memory = tree.path().join("memory");
        std::fs::create_dir_all(memory.join("workload.slice")).unwrap();
        std::fs::write(memory.join("workload.slice/cgroup.procs"), "").unwrap();
        let hierarchies = Hierarchies(vec![crate::cgroup::Hierarchy::v1(&memory, &["memory"])]);
        let slice = CgroupPath::parse("/workload.slice").unwrap();
        assert!(delegated(&hierarchies, &slice));
        let missing = CgroupPath::parse("/other.slice").unwrap();
        assert!(!delegated(&hierarchies, &missing));
        assert!(!delegated(&Hierarchies(Vec::new()), &slice));
    }
}

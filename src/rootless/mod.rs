//! Rootless operation: whether cdirun runs without the host's root, where its state goes then,
//! and whether the cgroups it would use are delegated to it.
//!
//! Rootless means an effective uid other than 0, or a user namespace whose uid 0 is not the
//! host's (podman rootless runs the runtime as root of the user's namespace). `--rootless true`
//! forces it and `--rootless false` denies it, as with runc; `auto` (or no flag) detects.
//! Rootless, `--root` defaults to `$XDG_RUNTIME_DIR/cdirun` (runc uses `$XDG_RUNTIME_DIR/runc`)
//! and the default `state-dir` to `$XDG_RUNTIME_DIR/cdirun-state`. cdirun never touches a
//! cgroup the caller cannot write: without a delegated slice, cgroup setup is skipped as runc
//! and crun skip it.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use crate::cgroup::{CgroupPath, Hierarchies};

/// What the process env and `--rootless` say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Rootful,
    Rootless,
}

#[derive(Debug, thiserror::Error)]
#[error("--rootless {value:?}: use true, false or auto")]
pub struct BadFlag {
    value: String,
}

/// The mode for this process: `--rootless` if given (`true`, `false`, `auto`), else detected.
pub fn mode(flag: Option<&str>) -> Result<Mode, BadFlag> {
    match flag {
        Some("true") => Ok(Mode::Rootless),
        Some("false") => Ok(Mode::Rootful),
        None | Some("auto") => Ok(detect()),
        Some(other) => Err(BadFlag {
            value: other.to_owned(),
        }),
    }
}

/// Rootless when the effective uid is not 0, or when uid 0 here is not the host's root (a user
/// namespace that does not map the whole uid range onto itself).
pub fn detect() -> Mode {
    if !nix::unistd::geteuid().is_root() {
        return Mode::Rootless;
    }
    match std::fs::read_to_string("/proc/self/uid_map") {
        Ok(map) if !is_initial_uid_map(&map) => Mode::Rootless,
        _ => Mode::Rootful,
    }
}

/// The initial user namespace maps every uid onto itself: `0 0 4294967295`.
fn is_initial_uid_map(map: &str) -> bool {
    let lines: Vec<Vec<&str>> = map
        .lines()
        .map(|line| line.split_whitespace().collect())
        .filter(|fields: &Vec<&str>| !fields.is_empty())
        .collect();
    matches!(lines.as_slice(), [fields] if fields[..] == ["0", "0", "4294967295"])
}

/// `$XDG_RUNTIME_DIR`, when it is set to an absolute path.
pub fn runtime_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|dir| dir.is_absolute())
}

/// The default `--root` in `mode`.
pub fn default_root(mode: Mode) -> PathBuf {
    match (mode, runtime_dir()) {
        (Mode::Rootless, Some(dir)) => dir.join("cdirun"),
        _ => PathBuf::from(crate::commands::DEFAULT_ROOT),
    }
}

/// The default `state-dir` rootless, next to the default root.
pub fn default_state_dir() -> Option<PathBuf> {
    runtime_dir().map(|dir| dir.join("cdirun-state"))
}

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

/// The names libcontainer looks up in `PATH` to write more than one ID mapping.
const MAP_HELPERS: [(&str, &str); 2] = [("newuidmap", "uid_map"), ("newgidmap", "gid_map")];

/// Root of a user namespace (podman rootless runs the runtime so) may write any mapping of its
/// own ids into a child namespace's `uid_map`, but libcontainer always runs `newuidmap` for
/// more than one mapping (`--userns=keep-id` has three), and the setuid helper looks up the
/// caller by name in /etc/subuid, where "root" of the namespace has no range: the mapping
/// stayed empty and the container's init failed with EINVAL. For a create by such a process,
/// cdirun puts a directory first in `PATH` whose `newuidmap` and `newgidmap` are cdirun
/// itself, which then writes the map file directly ([`id_map_helper`]). The directory is
/// `<state-dir>/idmap-<pid>` (`PATH` cannot hold a `:`); [`IdMapHelpers::remove`] drops it.
pub struct IdMapHelpers {
    dir: PathBuf,
}

impl IdMapHelpers {
    /// Installs the helpers when this process is root of a user namespace; `None` otherwise.
    pub fn install(state_dir: &Path) -> std::io::Result<Option<Self>> {
        if !nix::unistd::geteuid().is_root() || detect() != Mode::Rootless {
            return Ok(None);
        }
        let dir = state_dir.join(format!("idmap-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let exe = PathBuf::from(format!("/proc/{}/exe", std::process::id()));
        for (name, _) in MAP_HELPERS {
            let link = dir.join(name);
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(&exe, &link)?;
        }
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut paths = vec![dir.clone()];
        paths.extend(std::env::split_paths(&path));
        let joined = std::env::join_paths(paths).map_err(std::io::Error::other)?;
        // SAFETY: create runs on one thread until libcontainer forks; nothing reads the
        // environment concurrently.
        unsafe { std::env::set_var("PATH", joined) };
        Ok(Some(Self { dir }))
    }

    pub fn remove(self) {
        if let Err(err) = std::fs::remove_dir_all(&self.dir) {
            tracing::warn!("cannot remove {}: {err}", self.dir.display());
        }
    }
}

/// When this process was started as `newuidmap` or `newgidmap` (see [`IdMapHelpers`]): writes
/// `PID ID HOST-ID COUNT...` into /proc/PID/{uid,gid}_map and returns the exit status.
pub fn id_map_helper() -> Option<u8> {
    let mut args = std::env::args();
    let argv0 = args.next()?;
    let name = Path::new(&argv0).file_name()?.to_str()?;
    let (_, file) = MAP_HELPERS.iter().find(|(helper, _)| *helper == name)?;
    let rest: Vec<String> = args.collect();
    let Some((pid, triples)) = rest.split_first() else {
        crate::commands::print_err(&format!("{name}: usage: {name} PID ID HOST-ID COUNT..."));
        return Some(1);
    };
    if triples.is_empty() || triples.len() % 3 != 0 {
        crate::commands::print_err(&format!("{name}: mappings come in threes: {triples:?}"));
        return Some(1);
    }
    let map: String = triples
        .chunks(3)
        .map(|t| format!("{} {} {}\n", t[0], t[1], t[2]))
        .collect();
    let path = format!("/proc/{pid}/{file}");
    // One write: the kernel takes a map file's whole content at once.
    match std::fs::write(&path, map) {
        Ok(()) => Some(0),
        Err(err) => {
            crate::commands::print_err(&format!("{name}: cannot write {path}: {err}"));
            Some(1)
        }
    }
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
    fn uid_maps_table() {
        let cases = [
            ("         0          0 4294967295\n", true),
            ("0 0 4294967295", true),
            ("         0       1000          1\n", false),
            ("0 1000 1\n1 100000 65536\n", false),
            ("0 0 65536\n", false),
            ("", false),
        ];
        for (map, want) in cases {
            assert_eq!(is_initial_uid_map(map), want, "{map:?}");
        }
    }

    #[test]
    fn flag_values() {
        assert_eq!(mode(Some("true")).unwrap(), Mode::Rootless);
        assert_eq!(mode(Some("false")).unwrap(), Mode::Rootful);
        assert!(
            mode(Some("yes"))
                .unwrap_err()
                .to_string()
                .contains("\"yes\"")
        );
    }

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

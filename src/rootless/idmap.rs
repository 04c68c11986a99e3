//! The `newuidmap` and `newgidmap` that cdirun puts first in `PATH` for a create by root of a
//! user namespace, and the helper mode in which cdirun runs as them.

use std::path::{Path, PathBuf};

use super::{Mode, detect};

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

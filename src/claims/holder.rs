//! Who holds a node-wide claim, and whether that container still exists.
//!
//! A holder is a container (`--root` and id: ids are unique only within one root) plus the
//! cdirun process that created it. While the creating process runs the claim is live even though
//! the container's state dir may not exist yet; afterwards it is live while `<root>/<id>` holds a
//! state whose init process is alive.

use std::path::{Path, PathBuf};

use libcontainer::container::state::State;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Holder {
    /// The `--root` the container was created under.
    pub root: PathBuf,
    pub id: String,
    /// The cdirun process that created it, and that process's start time (clock ticks after
    /// boot, /proc/PID/stat field 22) so a reused pid is not mistaken for it.
    pub creator_pid: i32,
    pub creator_start: u64,
}

impl Holder {
    /// The container `id` under `root`, created by the calling process.
    pub fn current(root: &Path, id: &str) -> Self {
        let pid = std::process::id() as i32;
        Holder {
            root: root.to_owned(),
            id: id.to_owned(),
            creator_pid: pid,
            creator_start: start_time(pid).unwrap_or(0),
        }
    }

    /// Whether the container may still use what it holds: its create is running, or its state
    /// exists and its init process is alive.
    pub fn is_live(&self) -> bool {
        if start_time(self.creator_pid).is_some_and(|start| start == self.creator_start) {
            return true;
        }
        let dir = self.root.join(&self.id);
        // Checked first: libcontainer logs an error for a missing state file.
        if !State::file_path(&dir).exists() {
            return false;
        }
        match State::load(&dir) {
            Ok(state) => state.pid.is_some_and(|pid| start_time(pid).is_some()),
            // No state (deleted, or a create that died before writing one): gone.
            Err(_) => false,
        }
    }
}

impl Holder {
    /// Whether the container still exists: its create is running, or `<root>/<id>` holds a
    /// state, whatever its init does (a stopped container keeps its cgroup until delete).
    pub fn exists(&self) -> bool {
        start_time(self.creator_pid).is_some_and(|start| start == self.creator_start)
            || State::file_path(&self.root.join(&self.id)).exists()
    }
}

/// The start time of a running (not zombie) process, `None` when there is none.
pub fn start_time(pid: i32) -> Option<u64> {
    if pid <= 0 {
        return None;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: fields count from the last `)`.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state); field 22 (starttime) is fields[19].
    if matches!(fields.first(), Some(&"Z") | Some(&"X")) {
        return None;
    }
    fields.get(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness_table() {
        let root = tempfile::tempdir().unwrap();
        let me = Holder::current(root.path(), "c1");
        let gone_creator = Holder {
            creator_start: me.creator_start + 1,
            ..me.clone()
        };
        let cases = [
            ("creating process alive", me.clone(), true),
            ("creator gone, no state dir", gone_creator.clone(), false),
            (
                "creator pid absent",
                Holder {
                    creator_pid: i32::MAX,
                    ..me.clone()
                },
                false,
            ),
        ];
        for (name, holder, want) in cases {
            assert_eq!(holder.is_live(), want, "{name}");
        }
    }

    #[test]
    fn after_create_the_state_and_its_init_decide() {
        use libcontainer::container::ContainerStatus;
        let root = tempfile::tempdir().unwrap();
        let holder = Holder {
            creator_start: 0,
            ..Holder::current(root.path(), "c1")
        };
        let dir = root.path().join("c1");
        std::fs::create_dir(&dir).unwrap();
        let save = |pid: i32| {
            State::new("c1", ContainerStatus::Created, Some(pid), "/b".into())
                .save(&dir)
                .unwrap()
        };
        save(std::process::id() as i32);
        assert!(holder.is_live(), "init alive");
        // A pid above pid_max's ceiling never runs.
        save(i32::MAX);
        assert!(!holder.is_live(), "init dead");
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(!holder.is_live(), "state removed");
    }

    #[test]
    fn own_start_time_is_known_and_pid_zero_has_none() {
        assert!(start_time(std::process::id() as i32).is_some());
        assert_eq!(start_time(0), None);
    }
}

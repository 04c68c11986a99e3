//! The node-wide ledger of container cgroups: which container holds which cgroupfs scope, so
//! that no container's cgroup is the same as, inside or around another live container's, whatever
//! `--root` each was created under. delete kills everything in a container's cgroup and below,
//! so a container nested in another's would die with it (and one around another would kill it).
//!
//! Entries are taken at create before any cgroup directory is made and given back at delete;
//! an entry whose container no longer exists (see [`Holder::exists`]: a stopped container
//! keeps its cgroup until delete) is stale and dropped by the next create. delete also reads a container's entry when the create died before recording where
//! its cgroup is.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Holder;
use super::store::{self, StoreError};
use crate::cgroup::CgroupPath;

const LOCK_FILE: &str = "cgroups.lock";
const DATA_FILE: &str = "cgroups.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Entry {
    /// The scope, absolute (`/workload.slice/c1`).
    path: String,
    holder: Holder,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Ledger {
    entries: Vec<Entry>,
}

#[derive(Debug, thiserror::Error)]
pub enum CgroupLedgerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "cgroup {path} {relation} of container {id:?} (--root {root}); every container needs a cgroup of its own, neither inside nor around another container's"
    )]
    Taken {
        path: String,
        /// How the cgroup stands to the other one: `is already the cgroup`, `is inside
        /// cgroup /x`, `would be around cgroup /x/y`.
        relation: String,
        id: String,
        root: PathBuf,
    },
}

/// How `path` stands to `other`, when the two overlap.
fn relation(path: &CgroupPath, other: &CgroupPath) -> Option<String> {
    if path == other {
        Some("is already the cgroup".into())
    } else if path.starts_with(other) {
        Some(format!("is inside cgroup {other}"))
    } else if other.starts_with(path) {
        Some(format!("would be around cgroup {other}"))
    } else {
        None
    }
}

/// Takes `path` for `holder`, or refuses it, naming the live container whose cgroup it is,
/// lies in, or holds. Stale entries are dropped on the way; the holder's own older entry (a
/// create of the same id and root that died) is replaced.
pub fn hold(state_dir: &Path, path: &CgroupPath, holder: &Holder) -> Result<(), CgroupLedgerError> {
    let mut ledger = store::lock::<Ledger>(state_dir, LOCK_FILE, DATA_FILE)?;
    ledger.data.entries.retain(|entry| {
        !(entry.holder.root == holder.root && entry.holder.id == holder.id) && entry.holder.exists()
    });
    for entry in &ledger.data.entries {
        let Ok(other) = CgroupPath::parse(&entry.path) else {
            continue;
        };
        if let Some(relation) = relation(path, &other) {
            return Err(CgroupLedgerError::Taken {
                path: path.to_string(),
                relation,
                id: entry.holder.id.clone(),
                root: entry.holder.root.clone(),
            });
        }
    }
    ledger.data.entries.push(Entry {
        path: path.to_string(),
        holder: holder.clone(),
    });
    Ok(ledger.save()?)
}

/// Gives back the entries of the container `id` under `root`. Idempotent.
pub fn release(state_dir: &Path, root: &Path, id: &str) -> Result<(), CgroupLedgerError> {
    if !state_dir.join(DATA_FILE).exists() {
        return Ok(());
    }
    let mut ledger = store::lock::<Ledger>(state_dir, LOCK_FILE, DATA_FILE)?;
    let before = ledger.data.entries.len();
    ledger
        .data
        .entries
        .retain(|entry| !(entry.holder.root == root && entry.holder.id == id));
    if ledger.data.entries.len() != before {
        ledger.save()?;
    }
    Ok(())
}

/// The cgroup the container `id` under `root` holds, if its entry is there.
pub fn held_by(state_dir: &Path, root: &Path, id: &str) -> Result<Option<PathBuf>, StoreError> {
    if !state_dir.join(DATA_FILE).exists() {
        return Ok(None);
    }
    let ledger = store::lock::<Ledger>(state_dir, LOCK_FILE, DATA_FILE)?;
    Ok(ledger
        .data
        .entries
        .iter()
        .find(|entry| entry.holder.root == root && entry.holder.id == id)
        .map(|entry| PathBuf::from(&entry.path)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(text: &str) -> CgroupPath {
        CgroupPath::parse(text).unwrap()
    }

    #[test]
    fn overlapping_cgroups_are_refused_in_both_orders_and_siblings_are_not() {
        let state = tempfile::tempdir().unwrap();
        let root = Path::new("/run/cdirun");
        let victim = Holder::current(root, "victim");
        hold(state.path(), &path("/workload.slice/victim"), &victim).unwrap();
        // (name, path, relation word)
        let cases = [
            ("same", "/workload.slice/victim", "is already the cgroup"),
            (
                "nested",
                "/workload.slice/victim/nested",
                "is inside cgroup",
            ),
            ("deeper", "/workload.slice/victim/a/b", "is inside cgroup"),
            ("around", "/workload.slice", "would be around cgroup"),
        ];
        for (name, wanted, word) in cases {
            let other = Holder::current(Path::new("/run/other-root"), name);
            let err = hold(state.path(), &path(wanted), &other)
                .unwrap_err()
                .to_string();
            for want in [word, "/workload.slice/victim", "\"victim\"", "/run/cdirun"] {
                assert!(err.contains(want), "{name}: {err:?} lacks {want:?}");
            }
        }
        let sibling = Holder::current(root, "sibling");
        hold(state.path(), &path("/workload.slice/victim-2"), &sibling).unwrap();
        assert_eq!(
            held_by(state.path(), root, "sibling").unwrap(),
            Some(PathBuf::from("/workload.slice/victim-2"))
        );
        release(state.path(), root, "victim").unwrap();
        release(state.path(), root, "victim").unwrap();
        assert_eq!(held_by(state.path(), root, "victim").unwrap(), None);
        let nested = Holder::current(root, "nested");
        hold(
            state.path(),
            &path("/workload.slice/victim/nested"),
            &nested,
        )
        .unwrap();
    }

    #[test]
    fn stale_entries_do_not_block() {
        let state = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let gone = Holder {
            creator_pid: i32::MAX,
            ..Holder::current(root.path(), "gone")
        };
        hold(state.path(), &path("/workload.slice/gone"), &gone).unwrap();
        let next = Holder::current(root.path(), "next");
        hold(state.path(), &path("/workload.slice/gone/next"), &next).unwrap();
        assert_eq!(held_by(state.path(), root.path(), "gone").unwrap(), None);
    }
}

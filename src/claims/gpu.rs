//! The node-wide GPU ledger: which container holds which GPU, in `<state-dir>/gpu-ledger.json`.
//!
//! Every reader and writer holds an exclusive `flock` on `<state-dir>/gpu-ledger.lock` for the
//! whole read-decide-write, so concurrent creates (from any `--root`) see each other's choices.
//! The JSON file is replaced by rename, so a crash leaves the old or the new ledger.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::holder::Holder;
use super::store::{self, StoreError};
use crate::request::{Count, Sharing};

pub const LEDGER_FILE: &str = "gpu-ledger.json";
pub const LOCK_FILE: &str = "gpu-ledger.lock";

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("cannot {what} {path}: {cause}")]
    Io {
        what: &'static str,
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(
        "GPU ledger {path} is corrupt ({message}); remove it only when no container holds a GPU"
    )]
    Corrupt { path: PathBuf, message: String },
    /// Boxed: the lists would make every ledger `Result` large.
    #[error(transparent)]
    Unmet(Box<Unmet>),
}

impl From<StoreError> for LedgerError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Io { what, path, cause } => LedgerError::Io { what, path, cause },
            StoreError::Corrupt { path, message } => LedgerError::Corrupt { path, message },
        }
    }
}

/// A request the free devices cannot meet: what exists, what is free and who holds the rest.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot allocate {wanted} {sharing} GPU(s) of kind {kind}{model}: {}",
    self.detail()
)]
pub struct Unmet {
    pub wanted: String,
    pub sharing: &'static str,
    pub kind: String,
    pub model: String,
    /// How many GPUs could be asked for at all (aliases counted once).
    pub exist: usize,
    /// Devices that could be taken.
    pub free: Vec<String>,
    /// `device by holder-id (sharing)` for every candidate that cannot.
    pub held: Vec<String>,
    /// The CDI spec dirs the candidates came from, named when there are none.
    pub searched: Vec<PathBuf>,
}

impl Unmet {
    fn detail(&self) -> String {
        if self.exist == 0 {
            let dirs: Vec<String> = self
                .searched
                .iter()
                .map(|d| d.display().to_string())
                .collect();
            let index = if self.sharing == Sharing::Exclusive.as_str() {
                ""
            } else {
                " named by index (as shared modes need)"
            };
            return format!(
                "no such GPU{index} is defined in the CDI specs in {}",
                list_or_none(&dirs)
            );
        }
        let wanted: Option<usize> = self.wanted.parse().ok();
        let only = match wanted {
            Some(n) if n > self.exist => format!("only {} exist; ", self.exist),
            _ => String::new(),
        };
        format!(
            "{only}free: {}; held: {}",
            list_or_none(&self.free),
            list_or_none(&self.held)
        )
    }
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

/// One container's hold on a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Entry {
    pub holder: Holder,
    pub sharing: Sharing,
    /// The host devices behind the name when it was taken ([`Gpu::nodes`]); absent in ledgers
    /// written before GPUs were told apart by their nodes, whose entries match by name only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
}

/// A GPU as the ledger tells GPUs apart: its CDI name and the host devices behind it
/// (`c 195:0`), so two names for the same nodes (an index and a UUID) or a composite covering
/// several GPUs (`all`) can never be held twice. A device without nodes is known by name only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gpu {
    pub name: String,
    pub nodes: BTreeSet<String>,
}

impl Gpu {
    /// Whether an entry recorded under `name` holds (part of) this GPU.
    fn is_held_by(&self, name: &str, entry: &Entry) -> bool {
        name == self.name || entry.nodes.iter().any(|n| self.nodes.contains(n))
    }
}

/// The ledger's content: qualified device name -> its holders.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Ledger {
    pub devices: BTreeMap<String, Vec<Entry>>,
}

impl Ledger {
    /// Removes every entry whose container is gone; returns what was reclaimed.
    pub fn reclaim(&mut self, is_live: impl Fn(&Holder) -> bool) -> Vec<(String, Holder)> {
        let mut reclaimed = Vec::new();
        for (device, entries) in &mut self.devices {
            entries.retain(|entry| {
                let live = is_live(&entry.holder);
                if !live {
                    reclaimed.push((device.clone(), entry.holder.clone()));
                }
                live
            });
        }
        self.devices.retain(|_, entries| !entries.is_empty());
        reclaimed
    }

    /// Every entry that holds `gpu` (under its name or any name sharing a node with it), with
    /// the name it is recorded under.
    pub fn holders<'a>(&'a self, gpu: &'a Gpu) -> impl Iterator<Item = (&'a str, &'a Entry)> {
        self.devices.iter().flat_map(move |(name, entries)| {
            entries
                .iter()
                .filter(move |entry| gpu.is_held_by(name, entry))
                .map(move |entry| (name.as_str(), entry))
        })
    }

    /// Whether `gpu` can be given to a new holder in `sharing` mode: exclusive needs nobody
    /// on it; shared modes co-locate with other shared holders but never with an exclusive one.
    pub fn available(&self, gpu: &Gpu, sharing: Sharing) -> bool {
        let mut holders = self.holders(gpu);
        match sharing {
            Sharing::Exclusive => holders.next().is_none(),
            _ => holders.all(|(_, e)| e.sharing != Sharing::Exclusive),
        }
    }

    /// `device by a (exclusive), b (mps, as other-name)`: who keeps `gpu` from being taken.
    fn describe_holders(&self, gpu: &Gpu) -> String {
        let mut ids: Vec<String> = Vec::new();
        for (name, entry) in self.holders(gpu) {
            let alias = if name == gpu.name {
                String::new()
            } else {
                format!(", as {name}")
            };
            let sharing = match entry.sharing {
                Sharing::Plain => "shared, plain CDI request",
                other => other.as_str(),
            };
            let id = format!("{} ({sharing}{alias})", entry.holder.id);
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        format!("{} by {}", gpu.name, ids.join(" and "))
    }

    /// Picks `count` of `candidates` (in their order; shared modes prefer the least shared) or
    /// says what is free and who holds the rest.
    pub fn pick(
        &self,
        kind: &str,
        model: Option<&str>,
        candidates: &[Gpu],
        count: Count,
        sharing: Sharing,
    ) -> Result<Vec<Gpu>, LedgerError> {
        let mut free: Vec<&Gpu> = candidates
            .iter()
            .filter(|gpu| self.available(gpu, sharing))
            .collect();
        // Stable: equally shared devices keep their natural order.
        free.sort_by_key(|gpu| self.holders(gpu).count());
        let wanted = match count {
            Count::N(n) => n,
            Count::All => candidates.len(),
        };
        if !candidates.is_empty() && free.len() >= wanted {
            return Ok(free.into_iter().take(wanted).cloned().collect());
        }
        let held = candidates
            .iter()
            .filter(|gpu| !self.available(gpu, sharing))
            .map(|gpu| self.describe_holders(gpu))
            .collect();
        Err(LedgerError::Unmet(Box::new(Unmet {
            wanted: match count {
                Count::N(n) => n.to_string(),
                Count::All => format!("all {}", candidates.len()),
            },
            sharing: sharing.as_str(),
            kind: kind.to_owned(),
            model: model.map_or(String::new(), |m| format!(" and model {m:?}")),
            exist: candidates.len(),
            free: free.into_iter().map(|gpu| gpu.name.clone()).collect(),
            held,
            searched: Vec::new(),
        })))
    }

    pub fn take(&mut self, gpus: &[Gpu], holder: &Holder, sharing: Sharing) {
        for gpu in gpus {
            let entries = self.devices.entry(gpu.name.clone()).or_default();
            if !entries.iter().any(|e| &e.holder == holder) {
                entries.push(Entry {
                    holder: holder.clone(),
                    sharing,
                    nodes: gpu.nodes.iter().cloned().collect(),
                });
            }
        }
    }

    /// Drops `holder` from every device; idempotent.
    pub fn release(&mut self, holder: &Holder) {
        for entries in self.devices.values_mut() {
            entries.retain(|e| &e.holder != holder);
        }
        self.devices.retain(|_, entries| !entries.is_empty());
    }
}

/// The ledger, held under its lock until dropped.
pub type Locked = store::Locked<Ledger>;

/// Locks and reads the ledger in `state_dir`, creating the dir and files as needed.
pub fn lock(state_dir: &Path) -> Result<Locked, LedgerError> {
    Ok(store::lock(state_dir, LOCK_FILE, LEDGER_FILE)?)
}

/// The ledger in `state_dir` as it is, read without the lock and without creating anything:
/// for checks that take nothing (`explain`, a plain CDI request). The file is replaced by rename,
/// so an unlocked read sees a whole ledger.
pub fn read(state_dir: &Path) -> Result<Ledger, LedgerError> {
    let path = state_dir.join(LEDGER_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|err| LedgerError::Corrupt {
            path,
            message: err.to_string(),
        }),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Ledger::default()),
        Err(cause) => Err(LedgerError::Io {
            what: "read",
            path,
            cause,
        }),
    }
}

/// Gives back every GPU `holder` holds in the ledger of `state_dir`. Idempotent.
pub fn release(state_dir: &Path, holder: &Holder) -> Result<(), LedgerError> {
    let mut locked = lock(state_dir)?;
    let before = locked.data.clone();
    locked.data.release(holder);
    if locked.data != before {
        locked.save()?;
    }
    Ok(())
}

/// Gives back what the container `id` under `root` holds when no live process or state
/// stands behind it: a create killed before it wrote its record. Idempotent; a state dir
/// without a ledger is left alone.
pub fn release_unrecorded(state_dir: &Path, root: &Path, id: &str) -> Result<(), LedgerError> {
    if !state_dir.join(LEDGER_FILE).exists() {
        return Ok(());
    }
    let mut locked = lock(state_dir)?;
    let reclaimed = locked
        .data
        .reclaim(|holder| holder.root != root || holder.id != id || holder.is_live());
    if !reclaimed.is_empty() {
        locked.save()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::fs::{self, File};

    use nix::fcntl::{Flock, FlockArg};

    use super::*;

    fn holder(id: &str) -> Holder {
        Holder {
            root: "/run/r".into(),
            id: id.into(),
            creator_pid: 1,
            creator_start: 1,
        }
    }

    /// `nvidia.com/gpu=<name>` on the host devices `c 195:<minor>`.
    fn gpu(name: &str, minors: &[u32]) -> Gpu {
        Gpu {
            name: format!("nvidia.com/gpu={name}"),
            nodes: minors.iter().map(|m| format!("c 195:{m}")).collect(),
        }
    }

    fn gpus(n: usize) -> Vec<Gpu> {
        (0..n as u32).map(|i| gpu(&i.to_string(), &[i])).collect()
    }

    fn ledger(held: &[(usize, &str, Sharing)]) -> Ledger {
        let mut ledger = Ledger::default();
        for (i, id, sharing) in held {
            ledger.take(&gpus(4)[*i..=*i], &holder(id), *sharing);
        }
        ledger
    }

    #[test]
    fn release_unrecorded_drops_only_the_dead_holders_of_that_container() {
        let state = tempfile::tempdir().unwrap();
        let root = std::path::Path::new("/run/r");
        // No process has a pid above pid_max, and /run/r holds no state.
        let dead = |root: &str, id: &str| Holder {
            root: root.into(),
            creator_pid: i32::MAX,
            ..holder(id)
        };
        let live = Holder::current(root, "c1");
        let mut locked = lock(state.path()).unwrap();
        locked.data = ledger(&[(2, "c2", Sharing::Exclusive)]);
        locked
            .data
            .take(&gpus(1), &dead("/run/r", "c1"), Sharing::Exclusive);
        locked
            .data
            .take(&gpus(2)[1..], &dead("/run/other", "c1"), Sharing::Mps);
        locked.data.take(&gpus(4)[3..], &live, Sharing::Mps);
        locked.save().unwrap();
        drop(locked);

        release_unrecorded(state.path(), root, "c1").unwrap();
        let left = lock(state.path()).unwrap().data;
        let holders: Vec<(&str, &str, &str)> = left
            .devices
            .iter()
            .flat_map(|(d, es)| {
                es.iter().map(move |e| {
                    (
                        d.as_str(),
                        e.holder.root.to_str().unwrap(),
                        e.holder.id.as_str(),
                    )
                })
            })
            .collect();
        assert_eq!(
            holders,
            [
                ("nvidia.com/gpu=1", "/run/other", "c1"),
                ("nvidia.com/gpu=2", "/run/r", "c2"),
                ("nvidia.com/gpu=3", "/run/r", "c1"),
            ]
        );
        // No ledger: nothing to do, nothing created.
        let empty = tempfile::tempdir().unwrap();
        release_unrecorded(empty.path(), root, "c1").unwrap();
        assert!(!empty.path().join(LEDGER_FILE).exists());
    }

    #[test]
    fn pick_table() {
        use Sharing::*;
        type Held<'a> = &'a [(usize, &'a str, Sharing)];
        type Want<'a> = Result<&'a [usize], &'a str>;
        let cases: [(&str, Held, Count, Sharing, Want); 11] = [
            ("first free", &[], Count::N(1), Exclusive, Ok(&[0])),
            (
                "skips held",
                &[(0, "a", Exclusive)],
                Count::N(2),
                Exclusive,
                Ok(&[1, 2]),
            ),
            (
                "exclusive avoids shared",
                &[(0, "a", Mps), (1, "b", TimeSlice)],
                Count::N(1),
                Exclusive,
                Ok(&[2]),
            ),
            (
                "shared co-locates, least shared first",
                &[
                    (0, "a", Mps),
                    (0, "b", Mps),
                    (1, "c", Mps),
                    (2, "d", Exclusive),
                    (3, "e", Exclusive),
                ],
                Count::N(1),
                Mps,
                Ok(&[1]),
            ),
            ("all free", &[], Count::All, Exclusive, Ok(&[0, 1, 2, 3])),
            (
                "exclusive never on a plain request's GPU",
                &[(0, "a", Plain)],
                Count::N(4),
                Exclusive,
                Err(
                    "free: nvidia.com/gpu=1, nvidia.com/gpu=2, nvidia.com/gpu=3; held: nvidia.com/gpu=0 by a (shared, plain CDI request)",
                ),
            ),
            (
                "shared co-locates with a plain request",
                &[(0, "a", Plain), (1, "b", Mps)],
                Count::N(4),
                TimeSlice,
                Ok(&[2, 3, 0, 1]),
            ),
            (
                "all but one held",
                &[(3, "x", Exclusive)],
                Count::All,
                Exclusive,
                Err(
                    "free: nvidia.com/gpu=0, nvidia.com/gpu=1, nvidia.com/gpu=2; held: nvidia.com/gpu=3 by x (exclusive)",
                ),
            ),
            (
                "too many",
                &[(0, "a", Exclusive), (1, "b", Mps)],
                Count::N(3),
                Exclusive,
                Err(
                    "free: nvidia.com/gpu=2, nvidia.com/gpu=3; held: nvidia.com/gpu=0 by a (exclusive), nvidia.com/gpu=1 by b (mps)",
                ),
            ),
            (
                "none free",
                &[
                    (0, "a", Exclusive),
                    (1, "b", Exclusive),
                    (2, "c", Exclusive),
                    (3, "d", Exclusive),
                ],
                Count::N(1),
                Exclusive,
                Err("free: none; held: nvidia.com/gpu=0 by a (exclusive)"),
            ),
            (
                "shared never on exclusive",
                &[
                    (0, "a", Exclusive),
                    (1, "b", Exclusive),
                    (2, "c", Exclusive),
                    (3, "d", Exclusive),
                ],
                Count::N(1),
                TimeSlice,
                Err("cannot allocate 1 time-slice GPU(s) of kind nvidia.com/gpu: free: none"),
            ),
        ];
        for (name, held, count, sharing, want) in cases {
            let got = ledger(held).pick("nvidia.com/gpu", None, &gpus(4), count, sharing);
            match (got, want) {
                (Ok(got), Ok(want)) => {
                    let want: Vec<Gpu> = want.iter().map(|i| gpus(4)[*i].clone()).collect();
                    assert_eq!(got, want, "{name}");
                }
                (Err(err), Err(want)) => {
                    assert!(err.to_string().contains(want), "{name}: {err}")
                }
                (got, _) => panic!("{name}: {got:?}"),
            }
        }
    }

    #[test]
    fn a_gpu_is_held_through_any_name_for_its_nodes() {
        use Sharing::*;
        // Regression: the ledger told GPUs apart by name, so the UUID name of a held GPU, or a
        // composite over it, was free. (name, minors) taken by `a` in a mode; the candidate
        // asked for in a mode; whether it is free.
        type Named<'a> = (&'a str, &'a [u32]);
        type Case<'a> = (&'a str, Named<'a>, Sharing, Named<'a>, Sharing, bool);
        let cases: [Case; 8] = [
            (
                "alias of a held index",
                ("0", &[0]),
                Exclusive,
                ("GPU-0", &[0]),
                Exclusive,
                false,
            ),
            (
                "index of a held alias",
                ("GPU-1", &[1]),
                Exclusive,
                ("1", &[1]),
                Exclusive,
                false,
            ),
            (
                "member of a held composite",
                ("all", &[0, 1]),
                Exclusive,
                ("1", &[1]),
                Mps,
                false,
            ),
            (
                "composite over a held member",
                ("1", &[1]),
                Exclusive,
                ("all", &[0, 1]),
                Exclusive,
                false,
            ),
            (
                "another GPU",
                ("0", &[0]),
                Exclusive,
                ("GPU-1", &[1]),
                Exclusive,
                true,
            ),
            (
                "shared co-locates across names",
                ("0", &[0]),
                Mps,
                ("GPU-0", &[0]),
                TimeSlice,
                true,
            ),
            (
                "exclusive never on a shared alias",
                ("0", &[0]),
                Mps,
                ("GPU-0", &[0]),
                Exclusive,
                false,
            ),
            (
                "same name without nodes",
                ("x", &[]),
                Exclusive,
                ("x", &[]),
                Exclusive,
                false,
            ),
        ];
        for (name, (taken, taken_minors), held_as, (want, want_minors), sharing, free) in cases {
            let mut l = Ledger::default();
            l.take(&[gpu(taken, taken_minors)], &holder("a"), held_as);
            assert_eq!(
                l.available(&gpu(want, want_minors), sharing),
                free,
                "{name}"
            );
        }
        // The unmet message names the holder and the name it holds the GPU as.
        let mut l = Ledger::default();
        l.take(&[gpu("GPU-0", &[0])], &holder("a"), Exclusive);
        let err = l
            .pick("nvidia.com/gpu", None, &gpus(1), Count::N(1), Exclusive)
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("nvidia.com/gpu=0 by a (exclusive, as nvidia.com/gpu=GPU-0)"),
            "{err}"
        );
    }

    #[test]
    fn an_entry_from_an_older_ledger_without_nodes_still_matches_by_name() {
        let old = r#"{"devices":{"nvidia.com/gpu=0":[{"holder":{"root":"/run/r","id":"a","creator-pid":1,"creator-start":1},"sharing":"exclusive"}]}}"#;
        let l: Ledger = serde_json::from_str(old).unwrap();
        assert!(!l.available(&gpu("0", &[0]), Sharing::Exclusive));
        assert!(l.available(&gpu("1", &[1]), Sharing::Exclusive));
    }

    #[test]
    fn unmet_says_how_many_exist_and_where_none_was_found() {
        let err = |candidates: &[Gpu], count, sharing, searched: &[&str]| match Ledger::default()
            .pick("nvidia.com/gpu", None, candidates, count, sharing)
        {
            Err(LedgerError::Unmet(mut unmet)) => {
                unmet.searched = searched.iter().map(PathBuf::from).collect();
                unmet.to_string()
            }
            other => panic!("{other:?}"),
        };
        let too_many = err(&gpus(4), Count::N(5), Sharing::Exclusive, &[]);
        assert!(too_many.contains(": only 4 exist; free: "), "{too_many}");
        let none = err(
            &[],
            Count::N(1),
            Sharing::Exclusive,
            &["/etc/cdi", "/var/run/cdi"],
        );
        assert!(
            none.contains("no such GPU is defined in the CDI specs in /etc/cdi, /var/run/cdi"),
            "{none}"
        );
        let none = err(&[], Count::N(1), Sharing::Mps, &["/etc/cdi"]);
        assert!(none.contains("named by index"), "{none}");
    }

    #[test]
    fn no_candidates_is_unmet_even_for_all() {
        let err = Ledger::default()
            .pick(
                "amd.com/gpu",
                Some("MI300"),
                &[],
                Count::All,
                Sharing::Exclusive,
            )
            .unwrap_err();
        assert!(
            err.to_string().contains("amd.com/gpu and model \"MI300\""),
            "{err}"
        );
    }

    #[test]
    fn reclaim_drops_only_dead_holders_and_release_is_idempotent() {
        let mut l = ledger(&[(0, "dead", Sharing::Exclusive), (1, "live", Sharing::Mps)]);
        let reclaimed = l.reclaim(|h| h.id == "live");
        assert_eq!(reclaimed, [("nvidia.com/gpu=0".to_owned(), holder("dead"))]);
        assert_eq!(l, ledger(&[(1, "live", Sharing::Mps)]));
        l.release(&holder("live"));
        assert_eq!(l, Ledger::default());
        l.release(&holder("live"));
        assert_eq!(l, Ledger::default());
    }

    #[test]
    fn ledger_persists_under_lock_and_corruption_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut locked = lock(dir.path()).unwrap();
            locked.data.take(&gpus(1), &holder("a"), Sharing::Exclusive);
            locked.save().unwrap();
        }
        assert_eq!(
            lock(dir.path()).unwrap().data,
            ledger(&[(0, "a", Sharing::Exclusive)])
        );
        release(dir.path(), &holder("a")).unwrap();
        release(dir.path(), &holder("a")).unwrap();
        assert_eq!(lock(dir.path()).unwrap().data, Ledger::default());
        fs::write(dir.path().join(LEDGER_FILE), "{").unwrap();
        let err = lock(dir.path()).err().unwrap();
        assert!(err.to_string().contains(LEDGER_FILE), "{err}");
    }

    #[test]
    fn the_lock_excludes_a_second_locker_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock(dir.path()).unwrap();
        let path = dir.path().join(LOCK_FILE);
        let second = File::open(&path).unwrap();
        let busy = Flock::lock(second, FlockArg::LockExclusiveNonblock);
        assert!(busy.is_err(), "second lock taken while the first is held");
        drop(first);
        let third = File::open(&path).unwrap();
        assert!(Flock::lock(third, FlockArg::LockExclusiveNonblock).is_ok());
    }
}

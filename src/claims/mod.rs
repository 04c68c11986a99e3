//! What a container took at create and must give back at delete.
//!
//! The record lives in `<root>/<id>/cdirun.json` and pins the config file and `state-dir` the
//! container was created with, so every later verb uses those, not whatever config is current.
//! Node-wide state (the GPU ledger, MPS references) lives under `state-dir`: see [`gpu`], [`mps`].

pub mod cgroups;
pub mod gpu;
pub mod holder;
pub mod mps;
pub mod store;

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cgroup;
use crate::config::MpsLifetime;
use crate::request::Sharing;
pub use holder::Holder;

/// File name of the record inside the container's state dir.
pub const RECORD_FILE: &str = "cdirun.json";

/// A node-wide resource one container holds. Release must be idempotent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Claim {
    /// The container's cgroupfs scope: delete kills whatever is left in it and removes its
    /// directory in every hierarchy, including those libcontainer does not manage (the cgroup2
    /// mount of a hybrid host, named v1 hierarchies).
    Scope {
        /// The scope, as the cgroupsPath given to libcontainer.
        path: PathBuf,
        /// The owned slice it is nested in; `None` for a path used as the client sent it.
        slice: Option<PathBuf>,
    },
    /// The scope's entry in the node-wide cgroup ledger (see [`cgroups`]): no other container's
    /// cgroup may be it, lie in it or hold it. Taken first, so released last.
    Cgroup { path: PathBuf, holder: Holder },
    /// The systemd scope unit registered for a cgroup laid out at systemd's path.
    Unit { name: String, slice: String },
    /// GPUs held in the node-wide ledger.
    Gpu {
        devices: Vec<String>,
        sharing: Sharing,
        holder: Holder,
    },
    /// A reference on one GPU's MPS control daemon; the daemon's location, control program and
    /// lifetime are recorded so delete drives the daemon create started.
    Mps {
        gpu: u32,
        root: PathBuf,
        control: PathBuf,
        lifetime: MpsLifetime,
        holder: Holder,
    },
}

/// The claims one create took, in the order taken (released in reverse).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Claims(pub Vec<Claim>);

impl Claims {
    pub fn extend(&mut self, other: Claims) {
        self.0.extend(other.0);
    }

    /// Gives every claim back, newest first. Idempotent: releasing twice is harmless.
    ///
    /// Every claim is attempted even when one fails; the first error is returned.
    pub fn release(&self, state_dir: &Path) -> Result<(), ClaimError> {
        let mut first = None;
        for claim in self.0.iter().rev() {
            let result = match claim {
                Claim::Scope { path, .. } => release_scope(path),
                Claim::Cgroup { holder, .. } => {
                    cgroups::release(state_dir, &holder.root, &holder.id).map_err(Into::into)
                }
                Claim::Unit { name, slice } => cgroup::unit::Unit { name, slice }
                    .stop()
                    .map_err(Into::into),
                Claim::Gpu { holder, .. } => gpu::release(state_dir, holder).map_err(Into::into),
                Claim::Mps {
                    gpu,
                    root,
                    control,
                    lifetime,
                    holder,
                } => {
                    let daemon = mps::Daemon {
                        control: control.clone(),
                        root: root.clone(),
                        gpu: *gpu,
                    };
                    mps::release(state_dir, &daemon, *lifetime, holder).map_err(Into::into)
                }
            };
            if let Err(err) = result {
                tracing::warn!("cannot release {claim:?}: {err}");
                first.get_or_insert(err);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// The claims other than cgroup scopes. A failed create removes exactly the cgroup
    /// directories it made instead (a scope's release would also kill what is in it).
    pub fn without_scopes(&self) -> Claims {
        Claims(
            self.0
                .iter()
                .filter(|claim| !matches!(claim, Claim::Scope { .. }))
                .cloned()
                .collect(),
        )
    }

    /// The cgroup scope claim, if any.
    /// The systemd scope unit to register, if the cgroup is laid out as one.
    pub fn unit(&self) -> Option<cgroup::unit::Unit<'_>> {
        self.0.iter().find_map(|claim| match claim {
            Claim::Unit { name, slice } => Some(cgroup::unit::Unit { name, slice }),
            _ => None,
        })
    }

    pub fn scope(&self) -> Option<(&Path, Option<&Path>)> {
        self.0.iter().find_map(|claim| match claim {
            Claim::Scope { path, slice } => Some((path.as_path(), slice.as_deref())),
            _ => None,
        })
    }
}

fn release_scope(path: &Path) -> Result<(), ClaimError> {
    let failed = |message: String| ClaimError::Scope {
        path: path.to_owned(),
        message,
    };
    let text = path.to_str().ok_or_else(|| failed("not UTF-8".into()))?;
    let scope_path = cgroup::CgroupPath::parse(text).map_err(|err| failed(err.to_string()))?;
    let hierarchies = cgroup::Hierarchies::discover().map_err(|err| failed(err.to_string()))?;
    cgroup::Scope::new(&hierarchies, scope_path)
        .remove()
        .map_err(|err| failed(err.to_string()))
}

/// What a create killed before it wrote its record may still hold, found without the record:
/// the GPU ledger entries and MPS references of `id` under `root` (holders name their
/// container) in `config`'s state-dir. (Its cgroup is delete's to remove, as for every
/// container, found in the cgroup ledger, whose entry goes here.) Claims of a live holder (a
/// create of the same id still running) are kept.
pub fn release_unrecorded(
    config: &crate::config::Config,
    root: &Path,
    id: &str,
) -> Result<(), ClaimError> {
    let mut first = None;
    let state_dir = &config.state_dir;
    if let Err(err) = mps::release_unrecorded(state_dir, &config.mps, root, id) {
        tracing::warn!("{err}");
        first.get_or_insert(err.into());
    }
    if let Err(err) = gpu::release_unrecorded(state_dir, root, id) {
        tracing::warn!("{err}");
        first.get_or_insert(err.into());
    }
    // Its cgroup is gone by now (delete removed it first).
    if let Err(err) = cgroups::release(state_dir, root, id) {
        tracing::warn!("{err}");
        first.get_or_insert(err.into());
    }
    first.map_or(Ok(()), Err)
}

#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error("cannot write {path}: {cause}")]
    Write {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("cannot read {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("cannot remove cgroup scope {path}: {message}")]
    Scope { path: PathBuf, message: String },
    #[error(transparent)]
    Cgroup(#[from] cgroups::CgroupLedgerError),
    #[error(transparent)]
    Unit(#[from] cgroup::unit::UnitError),
    #[error(transparent)]
    Gpu(#[from] gpu::LedgerError),
    #[error(transparent)]
    Mps(#[from] mps::MpsError),
}

/// `<root>/<id>/cdirun.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Record {
    /// The config file used at create; `None` means the embedded defaults.
    pub config: Option<PathBuf>,
    pub state_dir: PathBuf,
    pub claims: Claims,
    /// Rootless without a delegated cgroup: the container has no cgroup of its own, so delete
    /// and `kill --all` signal its init (the container's pid namespace goes with it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_cgroups: bool,
}

impl Record {
    pub fn save(&self, container_dir: &Path) -> Result<(), ClaimError> {
        let path = container_dir.join(RECORD_FILE);
        let tmp = container_dir.join(format!(".{RECORD_FILE}.tmp"));
        let write = || -> std::io::Result<()> {
            // Serialized in memory first: serde_json writes a File token by token, one write(2)
            // each (about fifty for a plain container).
            fs::write(&tmp, serde_json::to_vec(self)?)?;
            fs::rename(&tmp, &path)
        };
        write().map_err(|cause| ClaimError::Write { path, cause })
    }

    /// Loads the record; `Ok(None)` when the container has none (created by another runtime, or
    /// a create that died before writing it).
    pub fn load(container_dir: &Path) -> Result<Option<Self>, ClaimError> {
        let path = container_dir.join(RECORD_FILE);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|err| ClaimError::Read {
                    path,
                    message: err.to_string(),
                }),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(ClaimError::Read {
                path,
                message: err.to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let record = Record {
            config: Some("/etc/cdirun/config.toml".into()),
            state_dir: "/run/s".into(),
            claims: Claims::default(),
            no_cgroups: false,
        };
        record.save(dir.path()).unwrap();
        assert_eq!(Record::load(dir.path()).unwrap(), Some(record));
    }

    #[test]
    fn scope_claim_round_trips_and_is_left_out_of_a_failed_create_release() {
        let dir = tempfile::tempdir().unwrap();
        let scope = Claim::Scope {
            path: "/workload.slice/c1".into(),
            slice: Some("/workload.slice".into()),
        };
        let record = Record {
            config: None,
            state_dir: "/run/s".into(),
            claims: Claims(vec![scope]),
            no_cgroups: true,
        };
        record.save(dir.path()).unwrap();
        let loaded = Record::load(dir.path()).unwrap().unwrap();
        assert_eq!(loaded, record);
        assert_eq!(
            loaded.claims.scope(),
            Some((
                Path::new("/workload.slice/c1"),
                Some(Path::new("/workload.slice"))
            ))
        );
        assert_eq!(loaded.claims.without_scopes(), Claims::default());
    }

    #[test]
    fn absent_record_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Record::load(dir.path()).unwrap(), None);
    }
}

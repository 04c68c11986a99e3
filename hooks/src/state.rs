//! The OCI state a hook reads on stdin, and where the container's rootfs is from here.
//!
//! createContainer hooks run in the container's mount namespace before pivot_root, without a
//! pid in the state: the rootfs (config.json `root.path`, relative to the bundle) is reached
//! as it is. prestart and createRuntime hooks run in the runtime's namespaces with the init pid:
//! the rootfs is reached through `/proc/<pid>/root`, which walks the container's mount tree.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read the OCI state from stdin (a hook gets it from the runtime): {0}")]
    Read(String),
    #[error("cannot read the bundle config {path}: {cause}")]
    Config { path: PathBuf, cause: String },
    #[error("the bundle config {path} has no root.path")]
    NoRoot { path: PathBuf },
    #[error("cannot inspect the mount namespace of pid {pid}: {cause}")]
    Namespace { pid: i32, cause: std::io::Error },
}

/// The fields of the OCI state cdirun-hook uses; others are ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct State {
    pub id: String,
    pub status: String,
    #[serde(default)]
    pub pid: Option<i32>,
    pub bundle: PathBuf,
}

impl State {
    /// Reads one JSON value (the runtime may keep stdin open after writing it).
    pub fn read(input: impl Read) -> Result<Self, StateError> {
        serde_json::Deserializer::from_reader(input)
            .into_iter::<State>()
            .next()
            .unwrap_or_else(|| Err(serde::de::Error::custom("stdin is empty")))
            .map_err(|e| StateError::Read(e.to_string()))
    }
}

/// The container as this hook process can reach it.
#[derive(Debug, Clone)]
pub struct Target {
    pub id: String,
    /// The rootfs, as a path this process can open.
    pub rootfs: PathBuf,
    /// The container's mount namespace when it is not this process's (runtime-namespace stages).
    pub mount_ns: Option<PathBuf>,
    /// The rootfs as a path inside the container's mount namespace.
    pub ns_rootfs: PathBuf,
    /// The process env of config.json (programs run in the rootfs get it).
    pub env: Vec<String>,
}

impl Target {
    /// Finds the rootfs from the state: config.json in the bundle names it.
    pub fn discover(state: &State) -> Result<Self, StateError> {
        let config_path = state.bundle.join("config.json");
        let config: serde_json::Value = std::fs::read(&config_path)
            .map_err(|e| e.to_string())
            .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|e| e.to_string()))
            .map_err(|cause| StateError::Config {
                path: config_path.clone(),
                cause,
            })?;
        let root = config["root"]["path"]
            .as_str()
            .ok_or_else(|| StateError::NoRoot {
                path: config_path.clone(),
            })?;
        let root = state.bundle.join(root);
        let env = config["process"]["env"]
            .as_array()
            .map(|env| {
                env.iter()
                    .filter_map(|e| e.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let other_ns = match state.pid {
            Some(pid) if pid > 0 => {
                let ns = |p: &str| {
                    std::fs::metadata(p)
                        .map(|m| (m.dev(), m.ino()))
                        .map_err(|cause| StateError::Namespace { pid, cause })
                };
                (ns("/proc/self/ns/mnt")? != ns(&format!("/proc/{pid}/ns/mnt"))?).then_some(pid)
            }
            _ => None,
        };
        Ok(match other_ns {
            None => Target {
                id: state.id.clone(),
                rootfs: root.clone(),
                mount_ns: None,
                ns_rootfs: root,
                env,
            },
            Some(pid) => {
                let proc_root = PathBuf::from(format!("/proc/{pid}/root"));
                // Before pivot_root ("creating") the rootfs is at its host path inside the
                // container's mount tree; afterwards it is that tree's root.
                let (rootfs, ns_rootfs) = if state.status == "creating" {
                    (proc_root.join(strip_root(&root)), root)
                } else {
                    (proc_root, PathBuf::from("/"))
                };
                Target {
                    id: state.id.clone(),
                    rootfs,
                    mount_ns: Some(PathBuf::from(format!("/proc/{pid}/ns/mnt"))),
                    ns_rootfs,
                    env,
                }
            }
        })
    }

    /// Whether this process runs in the container's namespaces (a createContainer hook).
    pub fn in_container(&self) -> bool {
        self.mount_ns.is_none()
    }
}

fn strip_root(path: &Path) -> &Path {
    path.strip_prefix("/").unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_is_read_without_waiting_for_eof_and_unknown_fields_pass() {
        let text = r#"{"ociVersion":"1.1.0","id":"c1","status":"creating","bundle":"/b","annotations":{"a":"b"},"extra":1}"#;
        let state = State::read(text.as_bytes()).unwrap();
        assert_eq!(state.id, "c1");
        assert_eq!(state.pid, None);
        let err = State::read(&b""[..]).unwrap_err().to_string();
        assert!(err.contains("stdin"), "{err}");
    }

    #[test]
    fn rootfs_is_relative_to_the_bundle_without_a_pid() {
        let bundle = tempfile::tempdir().unwrap();
        std::fs::write(
            bundle.path().join("config.json"),
            r#"{"root": {"path": "rootfs"}, "process": {"env": ["PATH=/bin", "A=1"]}}"#,
        )
        .unwrap();
        let state = State {
            id: "c".into(),
            status: "creating".into(),
            pid: None,
            bundle: bundle.path().into(),
        };
        let target = Target::discover(&state).unwrap();
        assert_eq!(target.rootfs, bundle.path().join("rootfs"));
        assert!(target.in_container());
        assert_eq!(target.env, ["PATH=/bin", "A=1"]);
        // Our own pid shares our mount namespace: still direct access.
        let state = State {
            pid: Some(std::process::id() as i32),
            ..state
        };
        assert!(Target::discover(&state).unwrap().in_container());
    }

    #[test]
    fn missing_config_names_the_file() {
        let state = State {
            id: "c".into(),
            status: "creating".into(),
            pid: None,
            bundle: "/nonexistent-bundle".into(),
        };
        let err = Target::discover(&state).unwrap_err().to_string();
        assert!(err.contains("/nonexistent-bundle/config.json"), "{err}");
    }
}

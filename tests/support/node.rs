//! A fake GPU node for the stress and crash tests: two NVIDIA GPUs (mknod'ed 195:0..1) in a CDI
//! spec in a temp dir, the GPU ledger and MPS references in a temp `state-dir`, and a stand-in
//! `nvidia-cuda-mps-control` that logs every call and creates/removes the daemon's control
//! socket as the real one does. Included with `#[path]` by the tests that use it.

#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::sys::stat::{Mode, SFlag, makedev, mknod};
use serde_json::{Value, json};

use crate::common::{self, Runtime};

/// Annotations asking for one GPU of its own: a GPU ledger entry.
pub const EXCLUSIVE_ONE: &[(&str, &str)] = &[("io.cdirun.gpu.count", "1")];

/// Annotations asking for one GPU shared through MPS: a GPU ledger entry and an MPS reference.
pub const MPS_ONE: &[(&str, &str)] = &[
    ("io.cdirun.gpu.count", "1"),
    ("io.cdirun.gpu.sharing", "mps"),
];

pub struct Node {
    dir: tempfile::TempDir,
}

impl Node {
    pub fn new() -> Self {
        common::require_root_and_busybox();
        let dir = tempfile::Builder::new()
            .prefix("cdirun-node-")
            .tempdir()
            .unwrap();
        let node = Node { dir };
        for sub in ["cdi", "dev", "state", "mps", "bin", "hooks.d"] {
            fs::create_dir_all(node.path(sub)).unwrap();
        }
        let devices: Vec<Value> = (0..2)
            .map(|i| {
                let host = node.path(&format!("dev/nvidia{i}"));
                mknod(
                    &host,
                    SFlag::S_IFCHR,
                    Mode::from_bits_truncate(0o666),
                    makedev(195, i),
                )
                .unwrap();
                json!({"name": i.to_string(), "containerEdits": {"deviceNodes": [
                    {"path": format!("/dev/nvidia{i}"), "hostPath": host}]}})
            })
            .collect();
        fs::write(
            node.path("cdi/nvidia.json"),
            serde_json::to_vec(&json!({"cdiVersion": "0.6.0", "kind": "nvidia.com/gpu",
                                       "devices": devices}))
            .unwrap(),
        )
        .unwrap();
        let log = node.path("calls.log");
        let control = node.path("bin/mps-control");
        fs::write(
            &control,
            format!(
                "#!/bin/sh\nif [ \"$1\" = -d ]; then\n\
                 echo \"mps -d gpu=$CUDA_VISIBLE_DEVICES\" >> {log:?}\n\
                 touch \"$CUDA_MPS_PIPE_DIRECTORY/control\"; exit 0\nfi\n\
                 read cmd\necho \"mps $cmd gpu=$CUDA_VISIBLE_DEVICES\" >> {log:?}\n\
                 [ \"$cmd\" = quit ] && rm -f \"$CUDA_MPS_PIPE_DIRECTORY/control\"\nexit 0\n"
            ),
        )
        .unwrap();
        fs::set_permissions(&control, fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(
            node.path("config.toml"),
            format!(
                "state-dir = {:?}\n[cdi]\nspec-dirs = [{:?}]\n\
                 [mps]\nlifetime = \"per_run\"\nroot = {:?}\ncontrol = {:?}\n\
                 [hooks]\ndirs = [{:?}]\n",
                node.path("state"),
                node.path("cdi"),
                node.path("mps"),
                control,
                node.path("hooks.d"),
            ),
        )
        .unwrap();
        node
    }

    pub fn path(&self, sub: &str) -> PathBuf {
        self.dir.path().join(sub)
    }

    /// A private `--root` using this node's config.
    pub fn runtime(&self) -> Runtime {
        let mut rt = Runtime::new();
        rt.env.push((
            "CDIRUN_CONFIG".into(),
            self.path("config.toml").display().to_string(),
        ));
        rt
    }

    /// The stand-in's calls, one per line.
    pub fn calls(&self) -> Vec<String> {
        fs::read_to_string(self.path("calls.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Ids holding a GPU in the ledger, one per (device, holder).
    pub fn ledger_holders(&self) -> Vec<String> {
        let Ok(bytes) = fs::read(self.path("state/gpu-ledger.json")) else {
            return Vec::new();
        };
        let ledger: Value = serde_json::from_slice(&bytes).unwrap();
        ledger["devices"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|entries| entries.as_array().unwrap().clone())
            .map(|entry| entry["holder"]["id"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Ids holding an MPS reference, one per (GPU, holder).
    pub fn mps_holders(&self) -> Vec<String> {
        let Ok(bytes) = fs::read(self.path("state/mps-refs.json")) else {
            return Vec::new();
        };
        let refs: Value = serde_json::from_slice(&bytes).unwrap();
        refs["gpus"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|holders| holders.as_array().unwrap().clone())
            .map(|holder| holder["id"].as_str().unwrap().to_owned())
            .collect()
    }

    /// GPUs whose stand-in MPS daemon is "running" (its control socket exists).
    pub fn running_daemons(&self) -> Vec<u32> {
        (0..2)
            .filter(|gpu| self.path(&format!("mps/gpu{gpu}/pipe/control")).exists())
            .collect()
    }
}

/// Lines of /proc/self/mountinfo that mention `needle` (a bundle dir, a container id).
pub fn mounts_mentioning(needle: &str) -> Vec<String> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|line| line.contains(needle))
        .map(str::to_owned)
        .collect()
}

/// Cgroup directories, in every hierarchy, whose name starts with `prefix`.
pub fn cgroup_dirs_starting_with(prefix: &str) -> Vec<PathBuf> {
    common::cgroup_dirs_where(|name| name.to_string_lossy().starts_with(prefix))
}

/// Whether a process `pid` exists (and is not a zombie).
pub fn alive(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
            !matches!(state.and_then(|s| s.chars().next()), Some('Z') | Some('X'))
        })
        .unwrap_or(false)
}

/// Everything the checks after a stress or crash test look at, for one container id.
pub fn assert_no_trace(node: &Node, rt: &Runtime, id: &str, bundle: &Path) {
    rt.assert_gone(id);
    assert!(
        !node.ledger_holders().iter().any(|h| h == id),
        "GPU ledger still holds {id}: {:?}",
        node.ledger_holders()
    );
    assert!(
        !node.mps_holders().iter().any(|h| h == id),
        "MPS references still hold {id}: {:?}",
        node.mps_holders()
    );
    let mounts = mounts_mentioning(bundle.to_str().unwrap());
    assert!(mounts.is_empty(), "mounts of {id} left: {mounts:?}");
}

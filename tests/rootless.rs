//! `--rootless true` with real containers, run by root (the unprivileged user and podman
//! rootless are conformance/clients/rootless.sh's): the default root and state-dir under
//! `$XDG_RUNTIME_DIR`, and the one-line refusals of what cannot work rootless, leaving
//! nothing behind.

mod common;
#[path = "support/node.rs"]
mod node;

use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{Bundle, cdirun_bin, text, unique_id};
use node::{EXCLUSIVE_ONE, MPS_ONE, Node};

/// cdirun with `--rootless true`, no `--root`, `$XDG_RUNTIME_DIR` set to `runtime_dir` and the
/// node's config.
fn rootless(node: &Node, runtime_dir: &Path, args: &[&str]) -> Output {
    Command::new(cdirun_bin())
        .args(["--rootless", "true"])
        .args(args)
        .env("XDG_RUNTIME_DIR", runtime_dir)
        .env("CDIRUN_CONFIG", node.path("rootless.toml"))
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The node's config without its state-dir: rootless, the embedded one becomes the runtime
/// dir's.
fn rootless_config(node: &Node) {
    let config = fs::read_to_string(node.path("config.toml")).unwrap();
    let kept: Vec<&str> = config
        .lines()
        .filter(|line| !line.starts_with("state-dir"))
        .collect();
    fs::write(node.path("rootless.toml"), kept.join("\n") + "\n").unwrap();
}

#[test]
fn rootless_state_and_claims_live_under_the_runtime_dir_and_go_at_delete() {
    let node = Node::new();
    rootless_config(&node);
    let runtime_dir = tempfile::tempdir().unwrap();
    let b = Bundle::new(&["sh", "-c", "echo rootless-ok"]);
    let id = unique_id("rl-xdg");
    let out = rootless(
        &node,
        runtime_dir.path(),
        &["run", "--bundle", b.path().to_str().unwrap(), &id],
    );
    assert!(out.status.success(), "run: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "rootless-ok\n");
    let root = runtime_dir.path().join("cdirun");
    let state = runtime_dir.path().join("cdirun-state");
    assert!(root.is_dir(), "no --root under $XDG_RUNTIME_DIR");
    assert_eq!(
        fs::read_dir(&root).unwrap().count(),
        0,
        "state left in {root:?}"
    );
    // The cgroup ledger was taken there (root may write every slice: it is delegated) and
    // given back.
    let ledger: serde_json::Value =
        serde_json::from_slice(&fs::read(state.join("cgroups.json")).unwrap()).unwrap();
    assert_eq!(ledger["entries"], serde_json::json!([]));
    assert!(!Path::new("/run/cdirun").join(&id).exists());
    assert!(common::cgroup_dirs_named(&id).is_empty());
}

#[test]
fn exclusive_gpus_and_mps_are_refused_rootless_in_one_line() {
    let node = Node::new();
    rootless_config(&node);
    let runtime_dir = tempfile::tempdir().unwrap();
    for (annotations, word) in [
        (EXCLUSIVE_ONE, "sharing=exclusive"),
        (MPS_ONE, "sharing=mps"),
    ] {
        let b = Bundle::with_annotations(&["true"], annotations);
        let id = unique_id("rl-gpu");
        let out = rootless(
            &node,
            runtime_dir.path(),
            &["create", "--bundle", b.path().to_str().unwrap(), &id],
        );
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{word}: create succeeded");
        assert_eq!(
            err.trim().lines().count(),
            1,
            "{word}: not one line: {err:?}"
        );
        for want in [word, "cannot work rootless", &id] {
            assert!(err.contains(want), "{err:?} lacks {want:?}");
        }
        assert!(!runtime_dir.path().join("cdirun").join(&id).exists());
        assert!(common::cgroup_dirs_named(&id).is_empty());
        let ledger = fs::read_to_string(runtime_dir.path().join("cdirun-state/gpu-ledger.json"))
            .unwrap_or_default();
        assert!(!ledger.contains(&id), "GPU ledger holds {id}: {ledger}");
        assert_eq!(
            node.running_daemons(),
            [] as [u32; 0],
            "an MPS daemon started"
        );
    }
}

//! `doctor` end to end: the real binary checks a fake node (a host tree with mknod'ed nodes, a
//! spec `cdi generate` wrote for it, a config naming temp dirs) that is healthy, then one broken
//! in every way doctor knows, and must name each problem and fail.
//!
//! Needs root (mknod).

mod common;
#[path = "support/host_tree.rs"]
mod host_tree;

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use cdirun::claims::Holder;
use host_tree::{Tree, UUID1};

/// A node: its host tree, spec dir, state dir, hooks.d dir and config file.
struct Node {
    tree: Tree,
    dir: tempfile::TempDir,
}

const MOUNTINFO_V2: &str = "30 1 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";

impl Node {
    fn healthy() -> Self {
        let tree = Tree::new();
        tree.nvidia();
        tree.write("proc/self/mountinfo", MOUNTINFO_V2);
        tree.write(
            "etc/containerd/config.toml",
            "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.cdirun]\n  runtime_type = \"io.containerd.runc.v2\"\n",
        );
        let dir = tempfile::Builder::new()
            .prefix("cdirun-doctor-")
            .tempdir()
            .unwrap();
        let node = Node { tree, dir };
        for sub in ["cdi", "state", "hooks.d"] {
            fs::create_dir_all(node.path(sub)).unwrap();
        }
        fs::write(
            node.path("config.toml"),
            format!(
                "state-dir = {:?}\n[cdi]\nspec-dirs = [{:?}]\n[mps]\nroot = {:?}\n[hooks]\ndirs = [{:?}]\n",
                node.path("state"),
                node.path("cdi"),
                node.path("state/mps"),
                node.path("hooks.d")
            ),
        )
        .unwrap();
        fs::write(
            node.path("hooks.d/10-true.json"),
            r#"{"version": "1.0.0", "hook": {"path": "/bin/true"}, "when": {"always": true}, "stages": ["prestart"]}"#,
        )
        .unwrap();
        let spec = node.path("cdi/cdirun-nvidia.yaml");
        let out = node.cdirun(&[
            "cdi",
            "generate",
            "--vendor",
            "nvidia",
            "--hook-path",
            "/bin/true",
            "--host-root",
            node.root(),
            "-o",
            spec.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", common::text(&out.stderr));
        node
    }

    fn path(&self, sub: &str) -> PathBuf {
        self.dir.path().join(sub)
    }

    fn root(&self) -> &str {
        self.tree.root().to_str().unwrap()
    }

    fn cdirun(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(common::cdirun_bin());
        cmd.args(args)
            .env("CDIRUN_CONFIG", self.path("config.toml"))
            .stdin(Stdio::null());
        common::output_within(cmd, Duration::from_secs(60))
    }

    fn doctor(&self, global: &[&str], extra: &[&str]) -> Output {
        let mut args = global.to_vec();
        args.extend(["doctor", "--host-root", self.root()]);
        args.extend_from_slice(extra);
        self.cdirun(&args)
    }

    /// `doctor --format json`: its status code and (area, status, message + fix) per check.
    fn checks(&self, global: &[&str]) -> (Option<i32>, Vec<(String, String, String)>) {
        let out = self.doctor(global, &["--format", "json"]);
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{e}: {}{}",
                common::text(&out.stdout),
                common::text(&out.stderr)
            )
        });
        let checks = report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["area"].as_str().unwrap().to_owned(),
                    c["status"].as_str().unwrap().to_owned(),
                    format!(
                        "{} -- {}",
                        c["message"].as_str().unwrap(),
                        c["fix"].as_str().unwrap_or("")
                    ),
                )
            })
            .collect();
        let worst = report["status"].as_str().unwrap();
        let code = out.status.code();
        assert_eq!(
            worst == "fail",
            code == Some(1),
            "status {worst} but exit {code:?}"
        );
        (code, checks)
    }
}

#[test]
fn a_healthy_node_passes_every_check() {
    let node = Node::healthy();
    let out = node.doctor(&[], &[]);
    let text = common::text(&out.stdout);
    assert!(out.status.success(), "{text}{}", common::text(&out.stderr));
    let lines: Vec<&str> = text.lines().collect();
    for line in &lines[..lines.len() - 1] {
        assert!(line.starts_with("ok  "), "not ok: {line}\n{text}");
    }
    assert!(lines.last().unwrap().starts_with("ok: "), "{text}");
    for want in [
        "layout v2 at /sys/fs/cgroup, cgroupfs driver",
        "cdirun-nvidia.yaml: 6 devices of kind nvidia.com/gpu",
        "libraries match driver 550.54.14",
        "no GPU is held",
        "1 hooks.d definitions in effect",
        "containerd: ",
    ] {
        assert!(text.contains(want), "{want:?} not in\n{text}");
    }
}

#[test]
fn a_broken_node_names_every_problem_and_fails() {
    let node = Node::healthy();
    let spec = node.path("cdi/cdirun-nvidia.yaml");
    // A GPU's node gone, a spec whose numbers differ from the host's node, a broken spec, two
    // files defining the same devices, a driver update since the spec was written.
    fs::remove_file(node.tree.path("dev/nvidia1")).unwrap();
    fs::write(
        node.path("cdi/other.json"),
        serde_json::to_vec(&json!({"cdiVersion": "0.5.0", "kind": "example.com/dev", "devices": [
            {"name": "x", "containerEdits": {"deviceNodes": [{"path": "/dev/x",
             "hostPath": node.tree.path("dev/nvidia0"), "type": "c", "major": 195, "minor": 7}]}}]}))
        .unwrap(),
    )
    .unwrap();
    fs::write(node.path("cdi/broken.yaml"), "cdiVersion: 0.5.0\nkind: [\n").unwrap();
    fs::copy(&spec, node.path("cdi/nvidia.yaml")).unwrap();
    node.tree.write(
        "proc/driver/nvidia/version",
        "NVRM version: NVIDIA UNIX x86_64 Kernel Module  555.42.02  Tue\n",
    );
    // A stale GPU claim; an MPS daemon a live container uses that is not running.
    let root = tempfile::tempdir().unwrap();
    let mut ledger = cdirun::claims::gpu::Ledger::default();
    let gone = Holder {
        root: root.path().to_owned(),
        id: "gone".into(),
        creator_pid: i32::MAX,
        creator_start: 1,
    };
    ledger.devices.insert(
        "nvidia.com/gpu=0".into(),
        vec![cdirun::claims::gpu::Entry {
            holder: gone.clone(),
            sharing: cdirun::request::Sharing::Exclusive,
            nodes: Vec::new(),
        }],
    );
    fs::write(
        node.path("state/gpu-ledger.json"),
        serde_json::to_vec(&ledger).unwrap(),
    )
    .unwrap();
    let mut refs = cdirun::claims::mps::Refs::default();
    // Created by this (live) process: is_live holds while the test runs.
    refs.gpus
        .insert(0, vec![Holder::current(root.path(), "mps-user")]);
    fs::write(
        node.path("state/mps-refs.json"),
        serde_json::to_vec(&refs).unwrap(),
    )
    .unwrap();
    // A broken hooks.d file; a client config that does not name cdirun.
    fs::write(
        node.path("hooks.d/20-broken.json"),
        "{\"version\": \"1.0.0\", \"hook\": ",
    )
    .unwrap();
    node.tree
        .write("etc/docker/daemon.json", "{\"runtimes\": {}}\n");

    let (code, checks) = node.checks(&["--systemd-cgroup"]);
    assert_eq!(code, Some(1));
    let has = |area: &str, status: &str, words: &[&str]| {
        checks
            .iter()
            .any(|(a, s, m)| a == area && s == status && words.iter().all(|w| m.contains(w)))
    };
    let nvidia1 = node.tree.path("dev/nvidia1");
    let wanted: Vec<(&str, &str, Vec<String>)> = vec![
        (
            "cgroup",
            "fail",
            vec!["systemd driver".into(), "systemd is not running".into()],
        ),
        (
            "cdi",
            "fail",
            vec!["broken.yaml".into(), "cdirun cdi validate".into()],
        ),
        (
            "cdi",
            "fail",
            vec![
                format!(
                    "cdirun-nvidia.yaml and {} both define nvidia.com/gpu=0, nvidia.com/gpu=1, ",
                    node.path("cdi/nvidia.yaml").display()
                ),
                "nvidia.com/gpu=all: at the same priority neither".into(),
                "remove one".into(),
            ],
        ),
        (
            "devices",
            "fail",
            vec![
                format!("{} is missing on the host", nvidia1.display()),
                "nvidia.com/gpu=1".into(),
                format!("nvidia.com/gpu={UUID1}"),
                "nvidia.com/gpu=all".into(),
                "regenerate".into(),
            ],
        ),
        (
            "devices",
            "fail",
            vec![
                "other.json".into(),
                "minor 7 in the spec, 0 on the host".into(),
            ],
        ),
        (
            "driver",
            "fail",
            vec![
                "driver 555.42.02 is loaded".into(),
                "libcuda.so.550.54.14".into(),
                "cdirun cdi generate --vendor nvidia -o".into(),
            ],
        ),
        (
            "ledger",
            "warn",
            vec![
                "nvidia.com/gpu=0 held (exclusive) by \"gone\"".into(),
                "stale claim".into(),
            ],
        ),
        (
            "mps",
            "fail",
            vec![
                "GPU 0: 1 containers use the MPS daemon, but it is not running".into(),
                "-d".into(),
            ],
        ),
        (
            "hooks",
            "fail",
            vec!["20-broken.json".into(), "every create fails".into()],
        ),
        (
            "clients",
            "warn",
            vec!["docker".into(), "does not name cdirun".into()],
        ),
        (
            "clients",
            "ok",
            vec!["containerd".into(), "names cdirun".into()],
        ),
    ];
    for (area, status, words) in &wanted {
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        assert!(
            has(area, status, &words),
            "no {status} {area} check with {words:?} in {checks:#?}"
        );
    }
    // The text form: one line per check, the same verdicts, and the summary.
    let out = node.doctor(&["--systemd-cgroup"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let text = common::text(&out.stdout);
    assert_eq!(text.lines().count(), checks.len() + 1, "{text}");
    assert!(text.lines().last().unwrap().starts_with("fail: "), "{text}");
    assert!(text.contains("\nfail  devices  "), "{text}");
}

#[test]
fn a_broken_config_fails_and_the_other_checks_still_run() {
    let node = Node::healthy();
    fs::write(node.path("config.toml"), "no-such-key = 1\n").unwrap();
    let (code, checks) = node.checks(&[]);
    assert_eq!(code, Some(1));
    assert_eq!(checks[0].0, "config");
    assert_eq!(checks[0].1, "fail");
    assert!(checks[0].2.contains("config.toml"), "{:?}", checks[0]);
    assert!(checks.iter().any(|(a, _, _)| a == "hooks"), "{checks:?}");
}

#[test]
fn a_default_slice_of_another_owner_fails() {
    let node = Node::healthy();
    let mut config = fs::read_to_string(node.path("config.toml")).unwrap();
    config = config.replacen("[cdi]", "[slices]\ndefault = \"pact.slice\"\n[cdi]", 1);
    fs::write(node.path("config.toml"), config).unwrap();
    let (code, checks) = node.checks(&[]);
    assert_eq!(code, Some(1));
    assert!(
        checks.iter().any(|(a, s, m)| a == "slice"
            && s == "fail"
            && m.contains("[slices] default /pact.slice is not owned by \"workload\"")),
        "{checks:#?}"
    );
}

//! GPU requests end to end: the real binary runs real busybox containers on a fixture node of
//! four fake NVIDIA GPUs (mknod'ed 195:0..3), two AMD and one Intel GPU described by a CDI spec
//! in a temp dir, with the GPU ledger and MPS references in a temp `state-dir` and stand-in
//! `nvidia-cuda-mps-control` / `nvidia-smi` scripts that log every call.
//!
//! Needs root and busybox-static; without them every test fails saying what to install.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::sys::stat::{Mode, SFlag, makedev, mknod};
use serde_json::{Value, json};

use common::{Bundle, Runtime, cgroup_dirs_named, text, unique_id};

/// One fake node: its CDI specs, device nodes, state dir, MPS root, stand-ins and config file.
struct Node {
    dir: tempfile::TempDir,
}

impl Node {
    fn new(mps_lifetime: &str) -> Self {
        common::require_root_and_busybox();
        let dir = tempfile::Builder::new()
            .prefix("cdirun-gpu-")
            .tempdir()
            .unwrap();
        let node = Node { dir };
        for sub in ["cdi", "dev", "state", "mps", "bin"] {
            fs::create_dir_all(node.path(sub)).unwrap();
        }
        let nvidia: Vec<Value> = (0..4)
            .map(|i| {
                json!({
                    "name": i.to_string(),
                    "annotations": {"gpu.model": if i < 2 { "A100" } else { "H100" }},
                    "containerEdits": {"deviceNodes": [{
                        "path": format!("/dev/nvidia{i}"),
                        "hostPath": node.mknod(&format!("nvidia{i}"), 195, i),
                    }]}
                })
            })
            .collect();
        node.spec(
            "nvidia.json",
            json!({"cdiVersion": "0.6.0", "kind": "nvidia.com/gpu",
                   "containerEdits": {"env": ["NVIDIA_VISIBLE_DEVICES=void"]},
                   "devices": nvidia}),
        );
        let amd: Vec<Value> = (0..2)
            .map(|i| {
                json!({"name": i.to_string(), "containerEdits": {"deviceNodes": [{
                    "path": format!("/dev/dri/renderD{}", 128 + i),
                    "hostPath": node.mknod(&format!("renderD{}", 128 + i), 226, 128 + i),
                }]}})
            })
            .collect();
        node.spec(
            "amd.json",
            json!({"cdiVersion": "0.6.0", "kind": "amd.com/gpu", "devices": amd}),
        );
        node.spec(
            "intel.json",
            json!({"cdiVersion": "0.6.0", "kind": "intel.cdi.k8s.io/gpu", "devices": [
                {"name": "0", "containerEdits": {"deviceNodes": [{
                    "path": "/dev/dri/card0", "hostPath": node.mknod("card0", 226, 0)}]}}]}),
        );
        let log = node.path("calls.log");
        node.script(
            "mps-control",
            &format!(
                "if [ \"$1\" = -d ]; then\n\
                 echo \"mps -d gpu=$CUDA_VISIBLE_DEVICES pipe=$CUDA_MPS_PIPE_DIRECTORY log=$CUDA_MPS_LOG_DIRECTORY\" >> {log:?}\n\
                 touch \"$CUDA_MPS_PIPE_DIRECTORY/control\"; exit 0\nfi\n\
                 read cmd\necho \"mps $cmd gpu=$CUDA_VISIBLE_DEVICES\" >> {log:?}\n\
                 [ \"$cmd\" = quit ] && rm -f \"$CUDA_MPS_PIPE_DIRECTORY/control\"\nexit 0\n"
            ),
        );
        node.script(
            "nvidia-smi",
            &format!(
                "echo \"smi $*\" >> {log:?}\n[ -e {:?} ] && {{ echo 'GPU is lost' >&2; exit 4; }}\nexit 0\n",
                node.path("smi-fails")
            ),
        );
        fs::write(
            node.path("config.toml"),
            format!(
                "state-dir = {:?}\n[cdi]\nspec-dirs = [{:?}]\n[gpu]\nnccl-socket-ifname = \"ib0\"\n\
                 [mps]\nlifetime = {mps_lifetime:?}\nroot = {:?}\ncontrol = {:?}\n\
                 [time-slice]\nsmi = {:?}\n",
                node.path("state"),
                node.path("cdi"),
                node.path("mps"),
                node.path("bin/mps-control"),
                node.path("bin/nvidia-smi"),
            ),
        )
        .unwrap();
        node
    }

    fn path(&self, sub: &str) -> PathBuf {
        self.dir.path().join(sub)
    }

    /// Rewrites the config with `lines` (TOML, may be empty) at the top of its `[cdi]` table.
    fn set_cdi(&self, lines: &str) {
        let path = self.path("config.toml");
        let text = fs::read_to_string(&path).unwrap();
        let (head, rest) = text.split_once("[cdi]\n").unwrap();
        let (_, kept) = rest.split_once("spec-dirs").unwrap();
        fs::write(&path, format!("{head}[cdi]\n{lines}spec-dirs{kept}")).unwrap();
    }

    fn mknod(&self, name: &str, major: u64, minor: u64) -> PathBuf {
        let path = self.path(&format!("dev/{name}"));
        mknod(
            &path,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            makedev(major, minor),
        )
        .unwrap();
        path
    }

    fn spec(&self, file: &str, spec: Value) {
        fs::write(
            self.path(&format!("cdi/{file}")),
            serde_json::to_vec_pretty(&spec).unwrap(),
        )
        .unwrap();
    }

    fn script(&self, name: &str, body: &str) {
        let path = self.path(&format!("bin/{name}"));
        fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// A private `--root` using this node's config.
    fn runtime(&self) -> Runtime {
        let mut rt = Runtime::new();
        rt.env.push((
            "CDIRUN_CONFIG".into(),
            self.path("config.toml").display().to_string(),
        ));
        rt
    }

    /// The stand-ins' calls, one per line.
    fn calls(&self) -> Vec<String> {
        fs::read_to_string(self.path("calls.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Device -> holder ids, from the ledger file.
    fn ledger(&self) -> Vec<(String, String)> {
        let Ok(bytes) = fs::read(self.path("state/gpu-ledger.json")) else {
            return Vec::new();
        };
        let ledger: Value = serde_json::from_slice(&bytes).unwrap();
        let mut held = Vec::new();
        for (device, entries) in ledger["devices"].as_object().unwrap() {
            for entry in entries.as_array().unwrap() {
                held.push((
                    device.clone(),
                    entry["holder"]["id"].as_str().unwrap().to_owned(),
                ));
            }
        }
        held
    }

    fn mps_refs(&self) -> Value {
        fs::read(self.path("state/mps-refs.json"))
            .map(|b| serde_json::from_slice(&b).unwrap())
            .unwrap_or(Value::Null)
    }
}

fn env_of(bundle: &Bundle) -> Vec<String> {
    bundle.config()["process"]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_owned())
        .collect()
}

fn allocated(bundle: &Bundle) -> String {
    bundle.config()["annotations"]["io.cdirun.gpu.allocated"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// `run` in the foreground; returns the container's stdout.
fn run(rt: &Runtime, bundle: &Bundle, id: &str) -> String {
    let out = rt.run(&["run", "--bundle", bundle.path().to_str().unwrap(), id]);
    assert!(
        out.status.success(),
        "run {id} failed: {}\nstdout: {}",
        text(&out.stderr),
        text(&out.stdout)
    );
    rt.assert_gone(id);
    text(&out.stdout)
}

/// SIGKILL to a container's init. A pid of 0 or below would signal the test's own process
/// group, so it fails the test instead.
fn kill_init(pid: i32) {
    assert!(pid > 0, "container has no init pid ({pid})");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
}

const EXCLUSIVE_ONE: &[(&str, &str)] = &[("io.cdirun.gpu.count", "1")];

#[test]
fn sixteen_concurrent_exclusive_creates_from_two_roots_get_four_distinct_gpus() {
    let node = Node::new("per_run");
    let roots = [node.runtime(), node.runtime()];
    let jobs: Vec<(usize, String, Bundle)> = (0..16)
        .map(|i| {
            (
                i % 2,
                unique_id("gpu"),
                Bundle::with_annotations(&["sleep", "60"], EXCLUSIVE_ONE),
            )
        })
        .collect();
    let results: Vec<(bool, String)> = std::thread::scope(|scope| {
        let handles: Vec<_> = jobs
            .iter()
            .map(|(root, id, bundle)| {
                let rt = &roots[*root];
                scope.spawn(move || rt.create(bundle, id, &[]))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut won = Vec::new();
    for ((root, id, bundle), (ok, stderr)) in jobs.iter().zip(&results) {
        if *ok {
            won.push((*root, id.clone(), allocated(bundle)));
        } else {
            assert!(
                stderr.contains("cannot allocate 1 exclusive GPU(s) of kind nvidia.com/gpu: free: none; held: nvidia.com/gpu=0 by "),
                "{id}: {stderr}"
            );
            roots[*root].assert_gone(id);
        }
    }
    assert_eq!(won.len(), 4, "winners: {won:?}");
    let gpus: BTreeSet<&str> = won.iter().map(|(_, _, g)| g.as_str()).collect();
    assert_eq!(
        gpus,
        BTreeSet::from([
            "nvidia.com/gpu=0",
            "nvidia.com/gpu=1",
            "nvidia.com/gpu=2",
            "nvidia.com/gpu=3"
        ])
    );
    let mut ledger = node.ledger();
    ledger.sort();
    let mut want: Vec<(String, String)> = won
        .iter()
        .map(|(_, id, gpu)| (gpu.clone(), id.clone()))
        .collect();
    want.sort();
    assert_eq!(ledger, want, "the ledger holds exactly the winners");
    // Each failure named every holder.
    for (_, stderr) in results.iter().filter(|(ok, _)| !ok) {
        for (_, id, _) in &won {
            assert!(stderr.contains(id.as_str()), "{id} not named: {stderr}");
        }
    }

    // Delete releases; a new create gets the freed GPU.
    let (root, id, gpu) = &won[0];
    roots[*root].ok(&["delete", "--force", id]);
    roots[*root].assert_gone(id);
    assert!(!node.ledger().iter().any(|(_, h)| h == id));
    let next = Bundle::with_annotations(&["sleep", "60"], EXCLUSIVE_ONE);
    let next_id = unique_id("gpu");
    roots[1].created(&next, &next_id);
    assert_eq!(&allocated(&next), gpu);
    for (root, id, _) in won.iter().skip(1) {
        roots[*root].ok(&["delete", "--force", id]);
    }
    roots[1].ok(&["delete", "--force", &next_id]);
    assert_eq!(node.ledger(), []);
}

#[test]
fn a_gpu_whose_holder_was_killed_and_removed_is_reclaimed() {
    let node = Node::new("per_run");
    let rt = node.runtime();
    let all = Bundle::with_annotations(&["sleep", "60"], &[("io.cdirun.gpu.count", "all")]);
    let holder = unique_id("gpu");
    rt.created(&all, &holder);
    assert_eq!(node.ledger().len(), 4);
    let one = Bundle::with_annotations(&["sleep", "60"], EXCLUSIVE_ONE);
    let id = unique_id("gpu");
    let (ok, err) = rt.create(&one, &id, &[]);
    assert!(!ok && err.contains(&holder), "{err}");

    // The holder crashes and its state goes (a lost tmpfs, a cleanup by hand).
    let pid = rt.state(&holder)["pid"].as_i64().unwrap() as i32;
    kill_init(pid);
    fs::remove_dir_all(rt.root().join(&holder)).unwrap();
    let one = Bundle::with_annotations(&["sleep", "60"], EXCLUSIVE_ONE);
    rt.created(&one, &id);
    assert_eq!(allocated(&one), "nvidia.com/gpu=0");
    assert_eq!(node.ledger(), [("nvidia.com/gpu=0".to_owned(), id.clone())]);
    rt.ok(&["delete", "--force", &id]);
    assert_eq!(node.ledger(), []);
    // Its cgroup dirs are what a crashed holder leaves; remove them, deepest first.
    let mut left = cgroup_dirs_named(&holder);
    left.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for dir in left {
        fs::remove_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    }
}

#[test]
fn mps_per_run_starts_once_for_two_containers_and_quits_after_the_last_delete() {
    let node = Node::new("per_run");
    let rt = node.runtime();
    let annotations = &[
        ("io.cdirun.gpu.sharing", "mps"),
        ("io.cdirun.mps.active-thread-percentage", "40"),
    ];
    let pipe = node.path("mps/gpu0/pipe");
    let (a, b) = (unique_id("gpu"), unique_id("gpu"));
    let mut bundles = Vec::new();
    for id in [&a, &b] {
        // Both name GPU 0, so they share its daemon.
        let bundle = Bundle::with_annotations(
            &["sh", "-c", "env; ls -a \"$CUDA_MPS_PIPE_DIRECTORY\""],
            annotations,
        );
        bundle.edit(|spec| {
            spec["annotations"]["cdi.k8s.io/gpu"] = json!("nvidia.com/gpu=0");
        });
        rt.created(&bundle, id);
        bundles.push(bundle);
    }
    let starts = format!(
        "mps -d gpu=0 pipe={} log={}",
        pipe.display(),
        node.path("mps/gpu0/log").display()
    );
    assert_eq!(node.calls(), std::slice::from_ref(&starts));
    assert_eq!(node.mps_refs()["gpus"]["0"].as_array().unwrap().len(), 2);
    let env = env_of(&bundles[0]);
    for want in [
        format!("CUDA_MPS_PIPE_DIRECTORY={}", pipe.display()),
        "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=40".into(),
        "NVIDIA_VISIBLE_DEVICES=0".into(),
        "CUDA_VISIBLE_DEVICES=0".into(),
    ] {
        assert!(env.contains(&want), "{want} not in {env:?}");
    }
    // Inside, the host pipe dir is mounted at the same path: the daemon's socket is there.
    rt.ok(&["start", &a]);
    rt.wait_status(&a, "stopped");
    let out = fs::read_to_string(bundles[0].path().join("stdout")).unwrap();
    assert!(
        out.contains("control"),
        "pipe dir not visible inside: {out}"
    );

    rt.ok(&["delete", &a]);
    assert_eq!(
        node.calls(),
        std::slice::from_ref(&starts),
        "quit with a reference left"
    );
    rt.ok(&["delete", "--force", &b]);
    assert_eq!(node.calls(), [starts, "mps quit gpu=0".to_owned()]);
    assert!(!pipe.join("control").exists());
    assert_eq!(node.mps_refs()["gpus"], json!({}));
    assert_eq!(node.ledger(), []);
}

#[test]
fn mps_persistent_never_quits_and_no_launch_needs_a_running_daemon() {
    let node = Node::new("persistent");
    let rt = node.runtime();
    let id = unique_id("gpu");
    let b = Bundle::with_annotations(&["true"], &[("io.cdirun.gpu.sharing", "mps")]);
    rt.created(&b, &id);
    rt.ok(&["delete", "--force", &id]);
    assert_eq!(node.calls().len(), 1, "{:?}", node.calls());
    assert!(node.calls()[0].starts_with("mps -d gpu=0"));
    let socket = node.path("mps/gpu0/pipe/control");
    assert!(socket.exists(), "persistent daemon stopped");

    let node = Node::new("no_launch");
    let rt = node.runtime();
    let id = unique_id("gpu");
    let b = Bundle::with_annotations(&["true"], &[("io.cdirun.gpu.sharing", "mps")]);
    let (ok, err) = rt.create(&b, &id, &[]);
    assert!(!ok, "created without a daemon");
    assert!(
        err.contains("no MPS control daemon runs for GPU 0")
            && err.contains(node.path("mps/gpu0/pipe/control").to_str().unwrap()),
        "{err}"
    );
    rt.assert_gone(&id);
    assert_eq!(node.ledger(), [], "a failed create holds a GPU");
    assert_eq!(node.calls(), Vec::<String>::new());
    // With an external daemon's socket in place, the same request works and is never stopped.
    fs::create_dir_all(node.path("mps/gpu0/pipe")).unwrap();
    fs::write(node.path("mps/gpu0/pipe/control"), "").unwrap();
    rt.created(&b, &id);
    rt.ok(&["delete", "--force", &id]);
    assert_eq!(node.calls(), Vec::<String>::new());
}

#[test]
fn time_slicing_sets_compute_mode_default_and_a_failure_holds_nothing() {
    let node = Node::new("per_run");
    let rt = node.runtime();
    let annotations = &[
        ("io.cdirun.gpu.sharing", "time-slice"),
        ("io.cdirun.gpu.count", "2"),
    ];
    let (a, b) = (unique_id("gpu"), unique_id("gpu"));
    rt.created(&Bundle::with_annotations(&["true"], annotations), &a);
    rt.created(&Bundle::with_annotations(&["true"], annotations), &b);
    // Shared GPUs co-locate (least shared first), and every create sets the mode again.
    assert_eq!(
        node.calls(),
        [
            "smi -i 0 -c DEFAULT",
            "smi -i 1 -c DEFAULT",
            "smi -i 2 -c DEFAULT",
            "smi -i 3 -c DEFAULT"
        ]
    );
    let c = unique_id("gpu");
    rt.created(
        &Bundle::with_annotations(&["true"], &[("io.cdirun.gpu.sharing", "time-slice")]),
        &c,
    );
    assert_eq!(node.ledger().len(), 5);

    fs::write(node.path("smi-fails"), "").unwrap();
    let d = unique_id("gpu");
    let (ok, err) = rt.create(&Bundle::with_annotations(&["true"], annotations), &d, &[]);
    assert!(!ok);
    assert!(
        err.contains("-c DEFAULT") && err.contains("GPU is lost"),
        "{err}"
    );
    rt.assert_gone(&d);
    assert!(!node.ledger().iter().any(|(_, h)| *h == d));
    for id in [&a, &b, &c] {
        rt.ok(&["delete", "--force", id]);
    }
    assert_eq!(node.ledger(), []);
}

#[test]
fn each_vendor_gets_its_env_and_only_its_devices_inside() {
    let node = Node::new("per_run");
    let rt = node.runtime();
    let script = "env | grep -E 'VISIBLE|ZE_' | sort; ls /dev /dev/dri 2>/dev/null | grep -E 'nvidia|render|card' | sort";
    let cases: [(&str, &str, &[&str]); 3] = [
        (
            "nvidia",
            "2",
            &[
                "CUDA_VISIBLE_DEVICES=0,1",
                "NVIDIA_VISIBLE_DEVICES=0,1",
                "nvidia0",
                "nvidia1",
            ],
        ),
        (
            "amd",
            "all",
            &[
                "HIP_VISIBLE_DEVICES=0,1",
                "ROCR_VISIBLE_DEVICES=0,1",
                "renderD128",
                "renderD129",
            ],
        ),
        ("intel", "1", &["ZE_AFFINITY_MASK=0", "card0"]),
    ];
    for (vendor, count, want) in cases {
        let b = Bundle::with_annotations(
            &["sh", "-c", script],
            &[
                ("io.cdirun.gpu.vendor", vendor),
                ("io.cdirun.gpu.count", count),
            ],
        );
        let out = run(&rt, &b, &unique_id("gpu"));
        let got: Vec<&str> = out.lines().collect();
        assert_eq!(got, want, "{vendor}");
    }
    assert_eq!(node.ledger(), [], "run released its GPUs");

    let id = unique_id("gpu");
    let b = Bundle::with_annotations(&["true"], &[("io.cdirun.gpu.vendor", "apple")]);
    let (ok, err) = rt.create(&b, &id, &[]);
    assert!(
        !ok && err.contains("\"apple\"") && err.contains("not supported on Linux"),
        "{err}"
    );
    rt.assert_gone(&id);
}

#[test]
fn distributed_env_uses_the_pinned_defaults() {
    let node = Node::new("per_run");
    let rt = node.runtime();
    let script = "env | grep -E '^(MASTER|WORLD|RANK|LOCAL_RANK|NCCL)' | sort";
    let b = Bundle::with_annotations(
        &["sh", "-c", script],
        &[("io.cdirun.distributed.rank", "0")],
    );
    b.edit(|spec| spec["hostname"] = json!("trainer-0"));
    let out = run(&rt, &b, &unique_id("gpu"));
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "LOCAL_RANK=0",
            "MASTER_ADDR=trainer-0",
            "MASTER_PORT=29500",
            "NCCL_SOCKET_IFNAME=ib0",
            "RANK=0",
            "WORLD_SIZE=1"
        ]
    );
    let b = Bundle::with_annotations(
        &["sh", "-c", script],
        &[
            ("io.cdirun.distributed.backend", "gloo"),
            ("io.cdirun.distributed.master-addr", "10.1.2.3"),
            ("io.cdirun.distributed.master-port", "12345"),
            ("io.cdirun.distributed.world-size", "16"),
            ("io.cdirun.distributed.rank", "9"),
            ("io.cdirun.distributed.local-rank", "1"),
        ],
    );
    let out = run(&rt, &b, &unique_id("gpu"));
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "LOCAL_RANK=1",
            "MASTER_ADDR=10.1.2.3",
            "MASTER_PORT=12345",
            "RANK=9",
            "WORLD_SIZE=16"
        ]
    );
    assert_eq!(node.ledger(), [], "distributed env alone takes no GPU");
}

#[test]
fn explain_computes_the_allocation_but_leaves_the_ledger_and_daemons_alone() {
    let node = Node::new("per_run");
    let rt = node.runtime();
    let held = unique_id("gpu");
    rt.created(&Bundle::with_annotations(&["true"], EXCLUSIVE_ONE), &held);
    let ledger_before = fs::read(node.path("state/gpu-ledger.json")).unwrap();

    let b = Bundle::with_annotations(
        &["true"],
        &[
            ("io.cdirun.gpu.sharing", "mps"),
            ("io.cdirun.gpu.count", "1"),
        ],
    );
    let config_before = fs::read(b.path().join("config.json")).unwrap();
    let out = rt.ok(&["explain", "--bundle", b.path().to_str().unwrap()]);
    assert!(
        out.contains("\"kind\":\"gpu\",\"devices\":[\"nvidia.com/gpu=1\"]"),
        "{out}"
    );
    assert!(out.contains("\"kind\":\"mps\",\"gpu\":1"), "{out}");
    assert_eq!(
        fs::read(node.path("state/gpu-ledger.json")).unwrap(),
        ledger_before
    );
    assert!(!node.path("state/mps-refs.json").exists());
    assert_eq!(node.calls(), Vec::<String>::new(), "explain ran a program");
    assert_eq!(
        fs::read(b.path().join("config.json")).unwrap(),
        config_before
    );
    rt.ok(&["delete", "--force", &held]);
}

/// A plain request (a CDI annotation, or NVIDIA_VISIBLE_DEVICES without anything explicit) holds
/// its GPU shared in the ledger: an exclusive request for every GPU is refused naming the
/// container while it runs, and granted once it is deleted; a failed create holds nothing.
#[test]
fn plain_requests_hold_their_gpus_against_exclusive_ones() {
    let node = Node::new("per_run");
    let rt = node.runtime();
    let by_annotation =
        Bundle::with_annotations(&["sleep", "60"], &[("cdi.k8s.io/gpu", "nvidia.com/gpu=0")]);
    let annotated = unique_id("plain");
    rt.started(&by_annotation, &annotated);
    let by_env = Bundle::new(&["sleep", "60"]);
    by_env.edit(|spec| {
        spec["process"]["env"]
            .as_array_mut()
            .unwrap()
            .push(Value::from("NVIDIA_VISIBLE_DEVICES=1"))
    });
    let from_env = unique_id("plain");
    rt.started(&by_env, &from_env);
    assert_eq!(
        node.ledger(),
        [
            ("nvidia.com/gpu=0".to_owned(), annotated.clone()),
            ("nvidia.com/gpu=1".to_owned(), from_env.clone()),
        ]
    );

    // explain shows the hold a plain request would take, and takes none.
    let out = rt.ok(&[
        "explain",
        "--bundle",
        by_annotation.path().to_str().unwrap(),
    ]);
    assert!(
        out.contains("\"kind\":\"gpu\",\"devices\":[\"nvidia.com/gpu=0\"],\"sharing\":\"plain\""),
        "{out}"
    );

    let all = Bundle::with_annotations(&["true"], &[("io.cdirun.gpu.count", "4")]);
    let exclusive = unique_id("excl");
    let (ok, err) = rt.create(&all, &exclusive, &[]);
    assert!(
        !ok,
        "an exclusive request got GPUs that running containers use"
    );
    for want in [
        format!("nvidia.com/gpu=0 by {annotated} (shared, plain CDI request)"),
        format!("nvidia.com/gpu=1 by {from_env} (shared, plain CDI request)"),
    ] {
        assert!(err.contains(&want), "{want:?} not in: {err}");
    }
    rt.assert_gone(&exclusive);

    // A plain request whose create fails holds nothing afterwards.
    let broken = Bundle::with_annotations(
        &["/no/such/program"],
        &[("cdi.k8s.io/gpu", "nvidia.com/gpu=2")],
    );
    let failed = unique_id("plain");
    let (ok, _) = rt.create(&broken, &failed, &[]);
    assert!(!ok);
    assert!(!node.ledger().iter().any(|(_, id)| *id == failed));

    rt.ok(&["delete", "--force", &annotated]);
    rt.ok(&["delete", "--force", &from_env]);
    assert_eq!(node.ledger(), []);
    rt.created(&all, &exclusive);
    assert_eq!(node.ledger().len(), 4);
    rt.ok(&["delete", "--force", &exclusive]);
    assert_eq!(node.ledger(), []);
}

#[test]
fn delete_after_the_container_crashed_releases_its_gpu_and_mps_reference() {
    let node = Node::new("per_run");
    let rt = node.runtime();
    let id = unique_id("gpu");
    // Kept until the end: the running container's rootfs is in it.
    let b = Bundle::with_annotations(&["sleep", "60"], &[("io.cdirun.gpu.sharing", "mps")]);
    rt.created(&b, &id);
    rt.ok(&["start", &id]);
    rt.wait_status(&id, "running");
    kill_init(rt.state(&id)["pid"].as_i64().unwrap() as i32);
    rt.wait_status(&id, "stopped");
    rt.ok(&["delete", &id]);
    rt.assert_gone(&id);
    assert_eq!(node.ledger(), []);
    assert_eq!(node.mps_refs()["gpus"], json!({}));
    assert_eq!(
        node.calls().last().map(String::as_str),
        Some("mps quit gpu=0")
    );
    assert!(!Path::new(&node.path("mps/gpu0/pipe/control")).exists());
}

/// Rewrites the node's NVIDIA spec as `nvidia-ctk cdi generate` lays it out: each GPU by index
/// and by UUID, an `all` device over the four, and `/dev/nvidiactl` in the spec-level edits.
fn nvidia_ctk_layout(node: &Node) {
    let ctl = node.mknod("nvidiactl", 195, 255);
    let node_of = |i: u32| json!({"path": format!("/dev/nvidia{i}"), "hostPath": node.path(&format!("dev/nvidia{i}"))});
    let mut devices: Vec<Value> = Vec::new();
    for i in 0..4 {
        devices
            .push(json!({"name": i.to_string(), "containerEdits": {"deviceNodes": [node_of(i)]}}));
    }
    for i in 0..4 {
        devices.push(json!({"name": format!("GPU-{i}{i}{i}{i}-uuid{i}"),
                            "containerEdits": {"deviceNodes": [node_of(i)]}}));
    }
    devices.push(json!({"name": "all",
                        "containerEdits": {"deviceNodes": (0..4).map(node_of).collect::<Vec<_>>()}}));
    node.spec(
        "nvidia.json",
        json!({"cdiVersion": "0.6.0", "kind": "nvidia.com/gpu",
               "containerEdits": {"env": ["NVIDIA_VISIBLE_DEVICES=void"],
                                  "deviceNodes": [{"path": "/dev/nvidiactl", "hostPath": ctl}]},
               "devices": devices}),
    );
}

fn device_paths(bundle: &Bundle) -> Vec<String> {
    bundle.config()["linux"]["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_gpu_is_held_by_its_device_nodes_whatever_it_is_called() {
    // Regression: the ledger knew GPUs by CDI name, so `all` held exclusively left its GPUs
    // free for others, and UUID names were handed out as further GPUs.
    let node = Node::new("per_run");
    nvidia_ctk_layout(&node);
    let rt = node.runtime();
    let all = Bundle::with_annotations(
        &["sleep", "60"],
        &[
            ("io.cdirun.gpu.sharing", "exclusive"),
            ("cdi.k8s.io/gpus", "nvidia.com/gpu=all"),
        ],
    );
    let holder = unique_id("gpu");
    rt.created(&all, &holder);
    assert_eq!(
        allocated(&all),
        "nvidia.com/gpu=0,nvidia.com/gpu=1,nvidia.com/gpu=2,nvidia.com/gpu=3"
    );
    let (ok, err) = rt.create(
        &Bundle::with_annotations(&["true"], EXCLUSIVE_ONE),
        &unique_id("gpu"),
        &[],
    );
    assert!(
        !ok && err.contains("free: none") && err.contains(&holder),
        "{err}"
    );
    // A plain request for one of them, by UUID, is refused too.
    let plain = Bundle::with_annotations(&["sh", "-c", "ls /dev | grep nvidia"], &[]);
    plain.edit(|spec| {
        spec["process"]["env"]
            .as_array_mut()
            .unwrap()
            .push(json!("NVIDIA_VISIBLE_DEVICES=GPU-1111-uuid1"))
    });
    let plain_id = unique_id("gpu");
    let (ok, err) = rt.create(&plain, &plain_id, &[]);
    assert!(!ok, "a held GPU was injected");
    assert!(
        err.contains(&format!(
            "nvidia.com/gpu=GPU-1111-uuid1 shares host devices with nvidia.com/gpu=1, held exclusively by container {holder}"
        )),
        "{err}"
    );
    rt.assert_gone(&plain_id);
    rt.ok(&["delete", "--force", &holder]);
    assert_eq!(node.ledger(), []);

    // Freed, the plain request runs, with the spec-level node beside its GPU.
    assert_eq!(run(&rt, &plain, &plain_id), "nvidia1\nnvidiactl\n");
    // Two requests for two GPUs get the four GPUs, never a UUID name for a taken one.
    let mut ids = Vec::new();
    for want in [
        ["/dev/nvidia0", "/dev/nvidia1"],
        ["/dev/nvidia2", "/dev/nvidia3"],
    ] {
        let b = Bundle::with_annotations(&["sleep", "60"], &[("io.cdirun.gpu.count", "2")]);
        let id = unique_id("gpu");
        rt.created(&b, &id);
        let paths = device_paths(&b);
        assert!(
            want.iter().all(|w| paths.contains(&w.to_string())) && paths.len() == 3,
            "{paths:?}"
        );
        ids.push(id);
    }
    let (ok, err) = rt.create(
        &Bundle::with_annotations(&["true"], &[("io.cdirun.gpu.count", "2")]),
        &unique_id("gpu"),
        &[],
    );
    assert!(!ok && err.contains("free: none"), "{err}");
    for id in &ids {
        rt.ok(&["delete", "--force", id]);
    }
    assert_eq!(node.ledger(), []);
}

/// One row of [`device_request_precedence_in_real_containers`].
struct PrecedenceRow<'a> {
    name: &'a str,
    annotations: &'a [(&'a str, &'a str)],
    env: &'a [&'a str],
    /// CAP_SYS_ADMIN in the bounding set (a `cdirun spec` bundle, like podman's and docker's
    /// default containers, lacks it).
    privileged: bool,
    /// `[cdi]` lines of the node's config.
    cdi: &'a str,
    /// Ok: the device nodes and vendor variables seen inside (sorted), and the GPUs the ledger
    /// holds for the container while it exists (a plain request's shared). Err: what the
    /// refused create says.
    want: Result<(&'a [&'a str], &'a [&'a str]), &'a str>,
    /// A line `explain` prints for the bundle.
    explain: Option<&'a str>,
}

#[test]
fn device_request_precedence_in_real_containers() {
    let node = Node::new("per_run");
    let rt = node.runtime();
    let script = "ls /dev /dev/dri 2>/dev/null | grep -E '^(nvidia|renderD|card)' | sort; \
                  env | grep -E '^(NVIDIA|AMD)_VISIBLE_DEVICES=' | sort";
    let annotated: &[(&str, &str)] = &[("cdi.k8s.io/gpu", "nvidia.com/gpu=1")];
    let rows = [
        PrecedenceRow {
            name: "annotation only: the spec's env edit stands",
            annotations: annotated,
            env: &[],
            privileged: false,
            cdi: "",
            want: Ok((
                &["nvidia1", "NVIDIA_VISIBLE_DEVICES=void"],
                &["nvidia.com/gpu=1"],
            )),
            explain: None,
        },
        PrecedenceRow {
            name: "env only, unprivileged, default: docker/podman -e works",
            annotations: &[],
            env: &["NVIDIA_VISIBLE_DEVICES=0"],
            privileged: false,
            cdi: "",
            // The CDI spec's own NVIDIA_VISIBLE_DEVICES=void wins, as with the reference library.
            want: Ok((
                &["nvidia0", "NVIDIA_VISIBLE_DEVICES=void"],
                &["nvidia.com/gpu=0"],
            )),
            explain: None,
        },
        PrecedenceRow {
            name: "annotation and the CUDA image's env all: the annotation alone",
            annotations: annotated,
            env: &["NVIDIA_VISIBLE_DEVICES=all"],
            privileged: false,
            cdi: "",
            want: Ok((
                &["nvidia1", "NVIDIA_VISIBLE_DEVICES=1"],
                &["nvidia.com/gpu=1"],
            )),
            explain: Some(
                "NVIDIA_VISIBLE_DEVICES=\"all\" is not a device request: CDI annotation cdi.k8s.io/gpu is an explicit allocation, which wins",
            ),
        },
        PrecedenceRow {
            name: "annotation and env naming another GPU: the annotation alone",
            annotations: annotated,
            env: &["NVIDIA_VISIBLE_DEVICES=0"],
            privileged: true,
            cdi: "",
            want: Ok((
                &["nvidia1", "NVIDIA_VISIBLE_DEVICES=1"],
                &["nvidia.com/gpu=1"],
            )),
            explain: None,
        },
        PrecedenceRow {
            name: "count and the CUDA image's env all: one GPU, env rewritten",
            annotations: &[("io.cdirun.gpu.count", "1")],
            env: &["NVIDIA_VISIBLE_DEVICES=all"],
            privileged: false,
            cdi: "",
            want: Ok((
                &["nvidia0", "NVIDIA_VISIBLE_DEVICES=0"],
                &["nvidia.com/gpu=0"],
            )),
            explain: Some(
                "NVIDIA_VISIBLE_DEVICES=\"all\" is not a device request: annotation io.cdirun.gpu.count is an explicit allocation",
            ),
        },
        PrecedenceRow {
            name: "count and a CDI annotation of another kind: both, each variable its own",
            annotations: &[
                ("io.cdirun.gpu.count", "1"),
                ("cdi.k8s.io/amd", "amd.com/gpu=1"),
            ],
            env: &["NVIDIA_VISIBLE_DEVICES=all", "AMD_VISIBLE_DEVICES=all"],
            privileged: false,
            cdi: "",
            want: Ok((
                &[
                    "nvidia0",
                    "renderD129",
                    "AMD_VISIBLE_DEVICES=1",
                    "NVIDIA_VISIBLE_DEVICES=0",
                ],
                // The AMD device is a plain request beside the count: held shared.
                &["amd.com/gpu=1", "nvidia.com/gpu=0"],
            )),
            explain: None,
        },
        PrecedenceRow {
            name: "unprivileged env, knob ignore: no GPU and no misleading env",
            annotations: &[],
            env: &["NVIDIA_VISIBLE_DEVICES=all"],
            privileged: false,
            cdi: "env-when-unprivileged = \"ignore\"\n",
            want: Ok((&["NVIDIA_VISIBLE_DEVICES=void"], &[])),
            explain: Some(
                "NVIDIA_VISIBLE_DEVICES=\"all\" is ignored (the container has no CAP_SYS_ADMIN in its bounding set and [cdi] env-when-unprivileged = \"ignore\")",
            ),
        },
        PrecedenceRow {
            name: "unprivileged env, knob refuse: refused, naming the knob",
            annotations: &[],
            env: &["NVIDIA_VISIBLE_DEVICES=0"],
            privileged: false,
            cdi: "env-when-unprivileged = \"refuse\"\n",
            want: Err(
                "NVIDIA_VISIBLE_DEVICES=\"0\" asks for devices, but the container has no CAP_SYS_ADMIN in its bounding set (process.capabilities.bounding) and [cdi] env-when-unprivileged = \"refuse\"",
            ),
            explain: None,
        },
        PrecedenceRow {
            name: "privileged env, knob refuse: accepted",
            annotations: &[],
            env: &["NVIDIA_VISIBLE_DEVICES=2"],
            privileged: true,
            cdi: "env-when-unprivileged = \"refuse\"\n",
            want: Ok((
                &["nvidia2", "NVIDIA_VISIBLE_DEVICES=void"],
                &["nvidia.com/gpu=2"],
            )),
            explain: None,
        },
        PrecedenceRow {
            name: "unprivileged env, knob accept",
            annotations: &[],
            env: &["NVIDIA_VISIBLE_DEVICES=3"],
            privileged: false,
            cdi: "env-when-unprivileged = \"accept\"\n",
            want: Ok((
                &["nvidia3", "NVIDIA_VISIBLE_DEVICES=void"],
                &["nvidia.com/gpu=3"],
            )),
            explain: None,
        },
        PrecedenceRow {
            name: "annotation with unprivileged env, knob refuse: the explicit allocation wins",
            annotations: annotated,
            env: &["NVIDIA_VISIBLE_DEVICES=all"],
            privileged: false,
            cdi: "env-when-unprivileged = \"refuse\"\n",
            want: Ok((
                &["nvidia1", "NVIDIA_VISIBLE_DEVICES=1"],
                &["nvidia.com/gpu=1"],
            )),
            explain: None,
        },
    ];
    for row in rows {
        let name = row.name;
        node.set_cdi(row.cdi);
        let bundle = Bundle::with_annotations(&["sh", "-c", script], row.annotations);
        bundle.edit(|spec| {
            let env = spec["process"]["env"].as_array_mut().unwrap();
            env.extend(row.env.iter().map(|e| json!(e)));
            if row.privileged {
                spec["process"]["capabilities"]["bounding"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!("CAP_SYS_ADMIN"));
            }
        });
        if let Some(line) = row.explain {
            let out = rt.ok(&["explain", "--bundle", bundle.path().to_str().unwrap()]);
            assert!(out.contains(&format!("env:\n  {line}")), "{name}: {out}");
        }
        let id = unique_id("prec");
        let (ok, err) = rt.create(&bundle, &id, &[]);
        match row.want {
            Err(message) => {
                assert!(!ok && err.contains(message), "{name}: {err}");
                rt.assert_gone(&id);
            }
            Ok((inside, held)) => {
                assert!(ok, "{name}: {err}");
                let want: Vec<(String, String)> = held
                    .iter()
                    .map(|gpu| (gpu.to_string(), id.clone()))
                    .collect();
                assert_eq!(node.ledger(), want, "{name}: ledger while it exists");
                rt.ok(&["start", &id]);
                rt.wait_status(&id, "stopped");
                let out = fs::read_to_string(bundle.path().join("stdout")).unwrap();
                assert_eq!(out.lines().collect::<Vec<_>>(), inside, "{name}");
                rt.ok(&["delete", &id]);
                rt.assert_gone(&id);
            }
        }
        assert_eq!(node.ledger(), [], "{name}: ledger after delete");
    }
}

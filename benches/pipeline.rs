//! The whole create-time edit pipeline (`edit::apply_all`: cdi → gpu → mps → hooks → slice) on
//! a realistic spec: `cdirun spec`'s config with a podman cgroupsPath, a CDI annotation for two
//! RDMA devices, and a two-GPU exclusive request with distributed env, over a node of 8 fake GPUs
//! and 2 RDMA devices described by two CDI spec files, three hooks.d files (one matching always,
//! one by annotation, one not matching), and the GPU ledger in a temp state-dir on tmpfs
//! (/dev/shm, as the default state-dir /run/cdirun-state is).
//!
//! `dry_run` computes every edit and takes nothing (what `explain` does); `claim_release` also
//! takes the GPUs in the ledger and gives them back (what create and delete add).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use libcontainer::oci_spec::runtime::Spec;
use serde_json::json;

use cdirun::config::Config;
use cdirun::edit;

fn write(path: PathBuf, value: serde_json::Value) {
    std::fs::write(path, serde_json::to_vec_pretty(&value).unwrap()).unwrap();
}

/// The node: CDI specs, hooks.d, state dir; returns the config pointing at them.
fn node(dir: &Path) -> Config {
    for sub in ["cdi", "hooks.d", "state"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let devices: Vec<_> = (0..8)
        .map(|i| {
            json!({"name": i.to_string(),
                   "annotations": {"gpu.model": "H100"},
                   "containerEdits": {"deviceNodes": [
                       {"path": format!("/dev/nvidia{i}"), "type": "c", "major": 195,
                        "minor": i, "fileMode": 0o666}]}})
        })
        .collect();
    write(
        dir.join("cdi/nvidia.json"),
        json!({"cdiVersion": "0.6.0", "kind": "nvidia.com/gpu",
               "containerEdits": {
                   "env": ["NVIDIA_DRIVER_CAPABILITIES=compute,utility"],
                   "deviceNodes": [{"path": "/dev/nvidiactl", "type": "c", "major": 195, "minor": 255}],
                   "mounts": [{"hostPath": "/usr/lib/x86_64-linux-gnu/libcuda.so.1",
                               "containerPath": "/usr/lib/x86_64-linux-gnu/libcuda.so.1",
                               "options": ["ro", "nosuid", "nodev", "bind"]}],
                   "hooks": [{"hookName": "createContainer", "path": "/usr/bin/nvidia-cdi-hook",
                              "args": ["nvidia-cdi-hook", "update-ldcache"]}]},
               "devices": devices}),
    );
    write(
        dir.join("cdi/nic.json"),
        json!({"cdiVersion": "0.6.0", "kind": "example.com/rdma",
               "devices": (0..2).map(|i| json!({"name": format!("mlx{i}"),
                   "containerEdits": {
                       "env": [format!("RDMA_DEVICE_{i}=mlx5_{i}")],
                       "deviceNodes": [{"path": format!("/dev/infiniband/uverbs{i}"),
                                        "type": "c", "major": 231, "minor": 192 + i}]}}))
                   .collect::<Vec<_>>()}),
    );
    let hook = |args: &[&str]| json!({"path": "/bin/true", "args": args});
    write(
        dir.join("hooks.d/10-always.json"),
        json!({"version": "1.0.0", "hook": hook(&["true", "always"]),
               "when": {"always": true}, "stages": ["prestart", "poststop"]}),
    );
    write(
        dir.join("hooks.d/50-ldcache.json"),
        json!({"version": "1.0.0", "hook": hook(&["true", "ldcache"]),
               "when": {"annotations": {"^io\\.cdirun\\.hooks\\.ldcache$": "^true$"}},
               "stages": ["createContainer"]}),
    );
    write(
        dir.join("hooks.d/90-never.json"),
        json!({"version": "1.0.0", "hook": hook(&["true", "never"]),
               "when": {"commands": ["^/opt/never$"]}, "stages": ["poststart"]}),
    );
    let mut config = Config {
        state_dir: dir.join("state"),
        ..Config::default()
    };
    config.cdi.spec_dirs = vec![dir.join("cdi")];
    config.hooks.dirs = vec![dir.join("hooks.d")];
    config
}

/// `cdirun spec`'s config as a client sends it, asking for GPUs.
fn client_spec() -> Spec {
    let mut spec = Spec::default();
    let annotations = [
        (
            "cdi.k8s.io/vendor",
            "example.com/rdma=mlx0,example.com/rdma=mlx1",
        ),
        ("io.cdirun.gpu.count", "2"),
        ("io.cdirun.distributed.world-size", "4"),
        ("io.cdirun.distributed.rank", "1"),
        ("io.cdirun.hooks.ldcache", "true"),
    ];
    spec.set_annotations(Some(
        annotations
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<HashMap<_, _>>(),
    ));
    if let Some(linux) = spec.linux_mut() {
        linux.set_cgroups_path(Some("/libpod_parent/libpod-bench".into()));
    }
    spec
}

fn bench_pipeline(c: &mut Criterion) {
    // The ledger is written with fsync: on a disk-backed temp dir that alone would dominate.
    let dir = tempfile::tempdir_in("/dev/shm").unwrap();
    let config = node(dir.path());
    let root = dir.path().join("root");
    let spec = client_spec();

    // Sanity: the pipeline does all of its work, and gives everything back.
    let ctx = edit::Context::new("bench", &config, &root);
    let mut check = spec.clone();
    let claims = edit::apply_all(&mut check, &ctx)
        .map_err(|(e, _)| e)
        .unwrap();
    let devices = check.linux().as_ref().unwrap().devices().as_ref().unwrap();
    assert_eq!(
        devices.len(),
        5,
        "2 annotated RDMA devices + nvidiactl + 2 allocated GPUs"
    );
    let hooks = check.hooks().as_ref().unwrap();
    assert!(hooks.prestart().is_some() && hooks.create_container().is_some());
    assert!(
        hooks.poststart().is_none(),
        "the non-matching hook stays out"
    );
    assert!(
        check
            .linux()
            .as_ref()
            .unwrap()
            .cgroups_path()
            .as_ref()
            .unwrap()
            .starts_with("/workload.slice/")
    );
    claims.release(&config.state_dir).unwrap();

    let mut group = c.benchmark_group("pipeline");
    let dry = edit::Context {
        dry_run: true,
        ..edit::Context::new("bench", &config, &root)
    };
    group.bench_function("dry_run", |b| {
        b.iter_batched(
            || spec.clone(),
            |mut spec| {
                edit::apply_all(&mut spec, &dry)
                    .map_err(|(e, _)| e)
                    .unwrap()
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("claim_release", |b| {
        b.iter_batched(
            || spec.clone(),
            |mut spec| {
                let claims = edit::apply_all(&mut spec, &ctx)
                    .map_err(|(e, _)| e)
                    .unwrap();
                claims.release(&config.state_dir).unwrap();
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench_pipeline);
criterion_main!(benches);

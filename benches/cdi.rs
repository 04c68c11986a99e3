//! The CDI stage of create (request, spec dir scan, resolution, injection) with 1, 8 and 64
//! requested devices spread across 1, 16 and 64 spec files.

use std::collections::HashMap;
use std::path::Path;

use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use libcontainer::oci_spec::runtime::Spec;
use serde_json::json;

use cdirun::config;
use cdirun::edit::{self, Edit};

/// Writes `files` spec files holding `devices` devices between them (at least one each) and
/// returns the qualified names of the first `devices`, spread round-robin over the files.
fn write_specs(dir: &Path, devices: usize, files: usize) -> Vec<String> {
    let per_file = devices.div_ceil(files).max(1);
    for f in 0..files {
        let spec = json!({
            "cdiVersion": "0.6.0",
            "kind": format!("vendor{f}.example.com/gpu"),
            "containerEdits": {
                "env": [format!("VENDOR{f}_CAPS=compute")],
                "mounts": [{"hostPath": format!("/opt/vendor{f}/lib"),
                            "containerPath": format!("/usr/lib/vendor{f}"),
                            "options": ["ro", "nosuid", "nodev", "bind"]}],
                "hooks": [{"hookName": "createContainer", "path": "/usr/bin/vendor-hook",
                           "args": ["vendor-hook", "update-ldcache"]}]
            },
            "devices": (0..per_file).map(|d| json!({
                "name": d.to_string(),
                "containerEdits": {
                    "env": [format!("VENDOR{f}_DEVICE_{d}=1")],
                    "deviceNodes": [{"path": format!("/dev/vendor{f}-{d}"), "type": "c",
                                     "major": 195, "minor": d + 1, "fileMode": 0o666}]
                }
            })).collect::<Vec<_>>()
        });
        std::fs::write(
            dir.join(format!("vendor{f}.json")),
            serde_json::to_vec_pretty(&spec).unwrap(),
        )
        .unwrap();
    }
    (0..devices)
        .map(|i| format!("vendor{}.example.com/gpu={}", i % files, i / files))
        .collect()
}

fn bench_cdi(c: &mut Criterion) {
    let mut group = c.benchmark_group("cdi_stage");
    for devices in [1usize, 8, 64] {
        for files in [1usize, 16, 64] {
            let dir = tempfile::tempdir().unwrap();
            let names = write_specs(dir.path(), devices, files);
            let mut config = config::Config::default();
            config.cdi.spec_dirs = vec![dir.path().to_path_buf()];
            // A plain request holds its devices in the ledger: never the host's.
            config.state_dir = dir.path().join("state");
            let mut spec = Spec::default();
            spec.set_annotations(Some(HashMap::from([(
                "cdi.k8s.io/bench".to_owned(),
                names.join(","),
            )])));
            let ctx = edit::Context::new("bench", &config, Path::new("/run/cdirun-bench"));
            // Sanity: the stage injects every device.
            let mut check = spec.clone();
            edit::cdi::Cdi.apply(&mut check, &ctx).unwrap();
            let injected = check
                .linux()
                .as_ref()
                .unwrap()
                .devices()
                .as_ref()
                .unwrap()
                .len();
            assert_eq!(injected, devices);

            group.bench_with_input(
                BenchmarkId::new(format!("{devices}dev"), format!("{files}files")),
                &spec,
                |b, spec| {
                    b.iter_batched(
                        || spec.clone(),
                        |mut spec| edit::cdi::Cdi.apply(&mut spec, &ctx).unwrap(),
                        BatchSize::SmallInput,
                    )
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, bench_cdi);
criterion_main!(benches);

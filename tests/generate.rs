//! `cdi generate` end to end: the real binary reads fake host trees (real mknod'ed device
//! nodes, real shared objects in a cache the real ldconfig wrote), and what it writes must pass
//! `cdi validate`, load in the registry and inject the devices into a real container.
//!
//! Needs root (mknod) and, for the container, busybox-static.

mod common;
#[path = "support/host_tree.rs"]
mod host_tree;

use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use host_tree::{BUS0, BUS1, DRIVER, LIB_DIR, Tree, UUID0, UUID1};

fn cdirun(args: &[&str], config: Option<&Path>) -> Output {
    let mut cmd = Command::new(common::cdirun_bin());
    cmd.args(args).stdin(Stdio::null());
    match config {
        Some(path) => cmd.env("CDIRUN_CONFIG", path),
        None => cmd.env_remove("CDIRUN_CONFIG"),
    };
    common::output_within(cmd, Duration::from_secs(60))
}

fn generate(tree: &Tree, extra: &[&str]) -> Output {
    let root = tree.root().to_str().unwrap();
    let mut args = vec!["cdi", "generate", "--host-root", root];
    args.extend_from_slice(extra);
    cdirun(&args, None)
}

/// Runs `generate` that must succeed; its stdout as a YAML value.
fn generated(tree: &Tree, extra: &[&str]) -> Value {
    let out = generate(tree, extra);
    assert!(
        out.status.success(),
        "generate failed: {}",
        common::text(&out.stderr)
    );
    serde_yaml::from_slice(&out.stdout).unwrap()
}

const MOUNT_OPTIONS: [&str; 5] = ["ro", "nosuid", "nodev", "rbind", "rprivate"];

fn mount(tree: &Tree, path: &str) -> Value {
    json!({"hostPath": tree.path(path.trim_start_matches('/')), "containerPath": path,
           "options": MOUNT_OPTIONS})
}

fn node(tree: &Tree, name: &str) -> Value {
    json!({"path": format!("/dev/{name}"), "hostPath": tree.path(&format!("dev/{name}"))})
}

fn hook(args: &[&str]) -> Value {
    let mut argv = vec!["cdirun-hook"];
    argv.extend_from_slice(args);
    json!({"hookName": "createContainer", "path": "/usr/bin/cdirun-hook", "args": argv})
}

/// The spec nvidia-ctk writes for the same layout, in cdirun's words: devices by index, MIG
/// devices as `<gpu>:<n>`, by UUID and `all`; control nodes, driver files and hooks (symlinks
/// then ldcache) at spec level; NVIDIA_VISIBLE_DEVICES=void.
fn want_nvidia(tree: &Tree) -> Value {
    let gpu = |minor: u32, card: u32, render: u32, bus: &str, model: &str, name: &str| {
        json!({
            "name": name,
            "annotations": {"io.cdirun.gpu.model": model, "io.cdirun.gpu.pci-bus-id": bus},
            "containerEdits": {
                "deviceNodes": [node(tree, &format!("nvidia{minor}")),
                                node(tree, &format!("dri/card{card}")),
                                node(tree, &format!("dri/renderD{render}"))],
                "hooks": [hook(&["symlinks",
                    "--link", &format!("../card{card}::/dev/dri/by-path/pci-{bus}-card"),
                    "--link", &format!("../renderD{render}::/dev/dri/by-path/pci-{bus}-render")])]
            }
        })
    };
    let v100 = "Tesla V100-PCIE-16GB";
    let a100 = "NVIDIA A100-SXM4-40GB";
    json!({
        "cdiVersion": "0.6.0",
        "kind": "nvidia.com/gpu",
        "annotations": {"io.cdirun.generated-by": "cdirun cdi generate"},
        "devices": [
            gpu(0, 1, 128, BUS0, v100, "0"),
            gpu(1, 2, 129, BUS1, a100, "1"),
            {
                "name": "1:0",
                "annotations": {"io.cdirun.gpu.model": a100, "io.cdirun.gpu.pci-bus-id": BUS1},
                "containerEdits": {"deviceNodes": [node(tree, "nvidia1"),
                    node(tree, "nvidia-caps/nvidia-cap21"), node(tree, "nvidia-caps/nvidia-cap22")]}
            },
            gpu(0, 1, 128, BUS0, v100, UUID0),
            gpu(1, 2, 129, BUS1, a100, UUID1),
            {
                "name": "all",
                "containerEdits": {
                    "deviceNodes": [node(tree, "nvidia0"), node(tree, "dri/card1"),
                        node(tree, "dri/renderD128"), node(tree, "nvidia1"), node(tree, "dri/card2"),
                        node(tree, "dri/renderD129"), node(tree, "nvidia-caps/nvidia-cap21"),
                        node(tree, "nvidia-caps/nvidia-cap22")],
                    "hooks": [hook(&["symlinks",
                        "--link", &format!("../card1::/dev/dri/by-path/pci-{BUS0}-card"),
                        "--link", &format!("../card2::/dev/dri/by-path/pci-{BUS1}-card"),
                        "--link", &format!("../renderD128::/dev/dri/by-path/pci-{BUS0}-render"),
                        "--link", &format!("../renderD129::/dev/dri/by-path/pci-{BUS1}-render")])]
                }
            }
        ],
        "containerEdits": {
            "env": ["NVIDIA_VISIBLE_DEVICES=void"],
            "deviceNodes": [node(tree, "nvidiactl"), node(tree, "nvidia-uvm"),
                            node(tree, "nvidia-uvm-tools"), node(tree, "nvidia-modeset")],
            "hooks": [
                hook(&["symlinks", "--link", &format!("libcuda.so.1::/{LIB_DIR}/libcuda.so")]),
                hook(&["ldcache", "--folder", &format!("/{LIB_DIR}"),
                       "--folder", &format!("/{LIB_DIR}/vdpau")])
            ],
            "mounts": [
                mount(tree, &format!("/lib/firmware/nvidia/{DRIVER}/gsp_ga10x.bin")),
                mount(tree, &format!("/lib/firmware/nvidia/{DRIVER}/gsp_tu10x.bin")),
                mount(tree, "/usr/bin/nvidia-smi"),
                mount(tree, &format!("/{LIB_DIR}/libcuda.so.{DRIVER}")),
                mount(tree, &format!("/{LIB_DIR}/libnvidia-ml.so.{DRIVER}")),
                mount(tree, &format!("/{LIB_DIR}/libnvidia-ptxjitcompiler.so.{DRIVER}")),
                mount(tree, &format!("/{LIB_DIR}/vdpau/libvdpau_nvidia.so.{DRIVER}"))
            ]
        }
    })
}

#[test]
fn nvidia_two_gpus_one_in_mig_mode_has_the_nvidia_ctk_layout() {
    let tree = Tree::new();
    tree.nvidia();
    let got = generated(&tree, &["--vendor", "nvidia"]);
    assert_eq!(
        got,
        want_nvidia(&tree),
        "got:\n{}",
        serde_yaml::to_string(&got).unwrap()
    );
    // The same spec as JSON.
    let json_out = generate(&tree, &["--vendor", "nvidia", "--format", "json"]);
    let from_json: Value = serde_json::from_slice(&json_out.stdout).unwrap();
    assert_eq!(from_json, got);
}

#[test]
fn amd_two_gpus_get_kfd_at_spec_level_and_a_render_node_each() {
    let tree = Tree::new();
    tree.amd();
    let gpu = |name: &str, render: u32, bus: &str| {
        json!({"name": name,
               "annotations": {"io.cdirun.gpu.model": "gfx90a", "io.cdirun.gpu.pci-bus-id": bus},
               "containerEdits": {"deviceNodes": [node(&tree, &format!("dri/renderD{render}"))]}})
    };
    assert_eq!(
        generated(&tree, &["--vendor", "amd"]),
        json!({
            "cdiVersion": "0.6.0",
            "kind": "amd.com/gpu",
            "annotations": {"io.cdirun.generated-by": "cdirun cdi generate"},
            "devices": [
                gpu("0", 128, "0000:03:00.0"),
                gpu("1", 129, "0000:83:00.0"),
                {"name": "all", "containerEdits": {"deviceNodes": [
                    node(&tree, "dri/renderD128"), node(&tree, "dri/renderD129")]}}
            ],
            "containerEdits": {"deviceNodes": [node(&tree, "kfd")]}
        })
    );
}

#[test]
fn intel_cards_are_found_by_vendor_id_with_their_render_node() {
    let tree = Tree::new();
    tree.intel();
    assert_eq!(
        generated(&tree, &["--vendor", "intel"]),
        json!({
            "cdiVersion": "0.6.0",
            "kind": "intel.cdi.k8s.io/gpu",
            "annotations": {"io.cdirun.generated-by": "cdirun cdi generate"},
            "devices": [
                {"name": "card0", "annotations": {"io.cdirun.gpu.pci-bus-id": "0000:00:02.0"},
                 "containerEdits": {"deviceNodes": [node(&tree, "dri/card0"),
                                                    node(&tree, "dri/renderD128")]}},
                {"name": "all", "containerEdits": {"deviceNodes": [
                    node(&tree, "dri/card0"), node(&tree, "dri/renderD128")]}}
            ]
        })
    );
}

#[test]
fn a_node_without_gpus_fails_saying_where_it_looked() {
    let tree = Tree::new();
    let out = generate(&tree, &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = common::text(&out.stderr);
    for want in [
        "no supported GPU found",
        &format!(
            "{}/proc/driver/nvidia/gpus does not exist",
            tree.root().display()
        ),
        &format!("{}/sys/class/kfd/kfd/topology/nodes", tree.root().display()),
        &format!("{}/sys/class/drm has vendor 0x8086", tree.root().display()),
    ] {
        assert!(err.contains(want), "{want:?} not in {err}");
    }
    let out = generate(&tree, &["--vendor", "amd"]);
    let err = common::text(&out.stderr);
    assert!(
        !out.status.success() && err.starts_with("no AMD GPU found"),
        "{err}"
    );
    assert_eq!(out.stdout, b"");
}

#[test]
fn a_driver_version_file_without_a_version_is_named() {
    let tree = Tree::new();
    tree.nvidia();
    tree.write(
        "proc/driver/nvidia/version",
        "NVRM version: something else\n",
    );
    let out = generate(&tree, &["--vendor", "nvidia"]);
    let err = common::text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "{}/proc/driver/nvidia/version: no driver version",
            tree.root().display()
        )),
        "{err}"
    );
}

#[test]
fn libraries_of_another_driver_version_are_left_out() {
    let tree = Tree::new();
    tree.nvidia();
    // The kernel module says 535: only the old library matches; the 550 ones are not mounted.
    tree.write(
        "proc/driver/nvidia/version",
        "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  535.104.05  Release Build\n",
    );
    let got = generated(&tree, &["--vendor", "nvidia"]);
    let mounts: Vec<&str> = got["containerEdits"]["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["containerPath"].as_str().unwrap())
        .collect();
    assert_eq!(
        mounts,
        [
            "/usr/bin/nvidia-smi",
            &format!("/{LIB_DIR}/libnvidia-tls.so.535.104.05")
        ]
    );
}

/// A config file whose only spec dir is `dir`.
fn config_for(dir: &Path) -> tempfile::NamedTempFile {
    let config = tempfile::NamedTempFile::new().unwrap();
    fs::write(config.path(), format!("[cdi]\nspec-dirs = [{:?}]\n", dir)).unwrap();
    config
}

#[test]
fn specs_written_to_a_dir_pass_validate_and_load_in_the_registry() {
    let tree = Tree::new();
    tree.nvidia();
    tree.amd_at(140);
    let specs = tempfile::tempdir().unwrap();
    let dir = specs.path().to_str().unwrap();
    let out = generate(&tree, &["--output", dir]);
    let err = common::text(&out.stderr);
    assert!(out.status.success(), "{err}");
    let nvidia = specs.path().join("cdirun-nvidia.yaml");
    let amd = specs.path().join("cdirun-amd.yaml");
    assert!(
        err.contains(&format!("wrote {}", nvidia.display())),
        "{err}"
    );
    let mut names: Vec<String> = fs::read_dir(specs.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["cdirun-amd.yaml", "cdirun-nvidia.yaml"],
        "a temp file was left"
    );

    let validate = cdirun(
        &[
            "cdi",
            "validate",
            nvidia.to_str().unwrap(),
            amd.to_str().unwrap(),
        ],
        None,
    );
    assert!(
        validate.status.success(),
        "{}{}",
        common::text(&validate.stdout),
        common::text(&validate.stderr)
    );
    let config = config_for(specs.path());
    let list = cdirun(&["cdi", "list"], Some(config.path()));
    assert!(list.status.success(), "{}", common::text(&list.stderr));
    assert_eq!(
        common::text(&list.stderr),
        "",
        "the registry reported problems"
    );
    let listed: Vec<String> = common::text(&list.stdout)
        .lines()
        .map(|l| l.split_whitespace().next().unwrap().to_owned())
        .collect();
    assert_eq!(
        listed,
        [
            "amd.com/gpu",
            "amd.com/gpu=0",
            "amd.com/gpu=1",
            "amd.com/gpu=all",
            "nvidia.com/gpu",
            "nvidia.com/gpu=0",
            "nvidia.com/gpu=1",
            "nvidia.com/gpu=1:0",
            &format!("nvidia.com/gpu={UUID0}"),
            &format!("nvidia.com/gpu={UUID1}"),
            "nvidia.com/gpu=all",
        ]
    );
    // JSON into a named file.
    let file = specs.path().join("nvidia.json");
    let out = generate(&tree, &["--vendor", "nvidia", "-o", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", common::text(&out.stderr));
    let text = fs::read_to_string(&file).unwrap();
    assert!(text.starts_with("{\n"), "{text}");
    // It defines the same devices as cdirun-nvidia.yaml at the same priority: said at once.
    assert!(
        common::text(&out.stderr)
            .contains("conflicting definitions of CDI device nvidia.com/gpu=0"),
        "{}",
        common::text(&out.stderr)
    );
}

#[test]
fn another_tools_spec_is_replaced_only_with_force() {
    let tree = Tree::new();
    tree.intel();
    let specs = tempfile::tempdir().unwrap();
    let file = specs.path().join("intel.yaml");
    let theirs = "cdiVersion: 0.6.0\nkind: intel.cdi.k8s.io/gpu\ndevices: [{name: card0, containerEdits: {env: [A=1]}}]\n";
    fs::write(&file, theirs).unwrap();
    let out = generate(&tree, &["--vendor", "intel", "-o", file.to_str().unwrap()]);
    let err = common::text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&file.display().to_string()) && err.contains("--force"),
        "{err}"
    );
    assert_eq!(
        fs::read_to_string(&file).unwrap(),
        theirs,
        "their spec was changed"
    );
    // Ours is replaced without --force; theirs with it.
    let out = generate(
        &tree,
        &["--vendor", "intel", "-o", file.to_str().unwrap(), "--force"],
    );
    assert!(out.status.success(), "{}", common::text(&out.stderr));
    let out = generate(&tree, &["--vendor", "intel", "-o", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", common::text(&out.stderr));
    assert!(
        fs::read_to_string(&file)
            .unwrap()
            .contains("io.cdirun.generated-by")
    );
    // One file cannot hold two vendors' specs, and a spec file needs a spec extension.
    tree.amd_at(150);
    let out = generate(&tree, &["-o", file.to_str().unwrap()]);
    assert!(common::text(&out.stderr).contains("GPUs of several vendors found (amd, intel)"));
    let txt = specs.path().join("intel.txt");
    let out = generate(&tree, &["--vendor", "intel", "-o", txt.to_str().unwrap()]);
    assert!(common::text(&out.stderr).contains("must end in .yaml or .json"));
    assert!(!txt.exists());
}

#[test]
fn a_missing_mig_node_leaves_out_that_device_with_a_warning() {
    let tree = Tree::new();
    tree.nvidia();
    fs::remove_file(tree.path("dev/nvidia-caps/nvidia-cap22")).unwrap();
    let out = generate(&tree, &["--vendor", "nvidia"]);
    assert!(out.status.success());
    let err = common::text(&out.stderr);
    assert!(
        err.contains("nvidia-cap22 is missing") && err.contains("MIG device 1:0 left out"),
        "{err}"
    );
    let spec: Value = serde_yaml::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = spec["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["0", "1", UUID0, UUID1, "all"]);
}

/// cdirun-hook, as tests/hooks.rs finds it: `CDIRUN_HOOK_BIN`, else next to the cdirun under test.
fn hook_bin() -> std::path::PathBuf {
    let path = match std::env::var_os("CDIRUN_HOOK_BIN") {
        Some(path) => std::path::PathBuf::from(path),
        None => common::cdirun_bin().with_file_name("cdirun-hook"),
    };
    assert!(
        path.exists(),
        "{} is missing: build the workspace (cargo build --workspace [--release])",
        path.display()
    );
    path
}

/// What the container reports: the injected nodes (GPU 1's must be absent), the DRM by-path
/// link and the libcuda.so link the symlinks hook made, the mounted nvidia-smi, and the
/// container's own linker cache, which the ldcache hook refreshed with the driver's dir.
const PROBE: &str = "stat -c '%n %t:%T' /dev/nvidiactl /dev/nvidia0 /dev/dri/card1 /dev/dri/renderD128; \
    test -e /dev/nvidia1 && echo nvidia1 leaked; \
    readlink /dev/dri/by-path/pci-0000:3b:00.0-card; \
    readlink /usr/lib/x86_64-linux-gnu/libcuda.so; \
    nvidia-smi; \
    ldconfig -p | grep -o 'libcuda.so.1 .*'";

#[test]
fn a_generated_spec_injects_nodes_libraries_and_hooks_into_a_real_container() {
    common::require_root_and_busybox();
    let tree = Tree::new();
    tree.nvidia();
    let specs = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let hook = hook_bin();
    let spec_file = specs.path().join("cdirun-nvidia.yaml");
    let out = generate(
        &tree,
        &[
            "--vendor",
            "nvidia",
            "--hook-path",
            hook.to_str().unwrap(),
            "-o",
            spec_file.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", common::text(&out.stderr));
    let config = tempfile::NamedTempFile::new().unwrap();
    fs::write(
        config.path(),
        format!(
            "state-dir = {:?}\n[cdi]\nspec-dirs = [{:?}]\n",
            state.path(),
            specs.path()
        ),
    )
    .unwrap();

    let bundle = common::Bundle::with_annotations(
        &["sh", "-c", PROBE],
        &[("cdi.k8s.io/gpu", "nvidia.com/gpu=0")],
    );
    // The image's own ldconfig: cdirun-hook ldcache runs it inside the rootfs.
    fs::create_dir_all(bundle.path().join("rootfs/sbin")).unwrap();
    fs::copy("/sbin/ldconfig", bundle.path().join("rootfs/sbin/ldconfig")).unwrap();
    let mut runtime = common::Runtime::new();
    runtime.env.push((
        "CDIRUN_CONFIG".to_owned(),
        config.path().to_str().unwrap().to_owned(),
    ));
    let id = common::unique_id("gen");
    let out = runtime.run(&["run", "--bundle", bundle.path().to_str().unwrap(), &id]);
    assert!(
        out.status.success(),
        "run failed ({:?}): {}\nstdout: {}",
        out.status,
        common::text(&out.stderr),
        common::text(&out.stdout)
    );
    assert_eq!(
        common::text(&out.stdout),
        format!(
            "/dev/nvidiactl c3:ff\n/dev/nvidia0 c3:0\n/dev/dri/card1 e2:1\n/dev/dri/renderD128 e2:80\n\
             ../card1\n\
             libcuda.so.1\n\
             GPU 0: fake (UUID: GPU-fake)\n\
             libcuda.so.1 (libc6,x86-64) => /{LIB_DIR}/libcuda.so.1\n"
        )
    );
    runtime.assert_gone(&id);
}

#[test]
fn disabled_hooks_are_left_out_and_an_image_without_ldconfig_runs() {
    common::require_root_and_busybox();
    let tree = Tree::new();
    tree.nvidia();
    let spec = generated(&tree, &["--vendor", "nvidia", "--disable-hook", "ldcache"]);
    let hooks: Vec<&str> = spec["containerEdits"]["hooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["args"][1].as_str().unwrap())
        .collect();
    assert_eq!(hooks, ["symlinks"]);
    // Without ldconfig in the container, the symlinks hook makes the soname links too.
    let lib = |file: &str, soname: &str| format!("{file}.so.{DRIVER}::/{LIB_DIR}/{soname}");
    assert_eq!(
        spec["containerEdits"]["hooks"][0]["args"],
        json!([
            "cdirun-hook",
            "symlinks",
            "--link",
            lib("libcuda", "libcuda.so.1"),
            "--link",
            format!("libcuda.so.1::/{LIB_DIR}/libcuda.so"),
            "--link",
            lib("libnvidia-ml", "libnvidia-ml.so.1"),
            "--link",
            lib("libnvidia-ptxjitcompiler", "libnvidia-ptxjitcompiler.so.1"),
            "--link",
            format!("libvdpau_nvidia.so.{DRIVER}::/{LIB_DIR}/vdpau/libvdpau_nvidia.so.1"),
        ])
    );
    let none = generated(
        &tree,
        &[
            "--vendor",
            "nvidia",
            "--disable-hook",
            "ldcache",
            "--disable-hook",
            "symlinks",
        ],
    );
    assert_eq!(none["containerEdits"].get("hooks"), None, "{none}");
    assert!(
        none["devices"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["containerEdits"].get("hooks").is_none()),
        "{none}"
    );

    // A busybox image has no ldconfig: with the ldcache hook left out, the container runs.
    let specs = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let hook = hook_bin();
    let spec_file = specs.path().join("cdirun-nvidia.yaml");
    let out = generate(
        &tree,
        &[
            "--vendor",
            "nvidia",
            "--disable-hook",
            "ldcache",
            "--hook-path",
            hook.to_str().unwrap(),
            "-o",
            spec_file.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", common::text(&out.stderr));
    let config = tempfile::NamedTempFile::new().unwrap();
    fs::write(
        config.path(),
        format!(
            "state-dir = {:?}\n[cdi]\nspec-dirs = [{:?}]\n",
            state.path(),
            specs.path()
        ),
    )
    .unwrap();
    let bundle = common::Bundle::with_annotations(
        &[
            "sh",
            "-c",
            "cd /usr/lib/x86_64-linux-gnu; readlink libcuda.so; readlink libcuda.so.1; nvidia-smi; \
             test -e /sbin/ldconfig || echo no ldconfig",
        ],
        &[("cdi.k8s.io/gpu", "nvidia.com/gpu=all")],
    );
    let mut runtime = common::Runtime::new();
    runtime.env.push((
        "CDIRUN_CONFIG".to_owned(),
        config.path().to_str().unwrap().to_owned(),
    ));
    let id = common::unique_id("gen-nold");
    let out = runtime.run(&["run", "--bundle", bundle.path().to_str().unwrap(), &id]);
    assert!(
        out.status.success(),
        "run failed: {}",
        common::text(&out.stderr)
    );
    assert_eq!(
        common::text(&out.stdout),
        format!("libcuda.so.1\nlibcuda.so.{DRIVER}\nGPU 0: fake (UUID: GPU-fake)\nno ldconfig\n")
    );
    runtime.assert_gone(&id);
}

//! CDI injection end to end: the real binary runs real busybox containers whose CDI specs name
//! device nodes made with mknod, a bind-mounted fake library dir and a createContainer hook.
//!
//! Needs root and busybox-static; without them every test fails saying what to install.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::sys::stat::{Mode, SFlag, makedev, mknod};
use serde_json::{Value, json};

const BUSYBOX: &str = "/bin/busybox";

fn require_root_and_busybox() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "these tests run real containers and mknod: run them as root"
    );
    assert!(
        Path::new(BUSYBOX).exists(),
        "{BUSYBOX} is missing: apt-get install busybox-static"
    );
}

fn unique_id() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "cdi-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Everything one test needs: a bundle with a busybox rootfs, a private `--root`, a config file
/// whose spec dir and state dir are temp dirs, a dir for host device nodes and a fake library.
struct Fixture {
    dir: tempfile::TempDir,
    root: tempfile::TempDir,
    id: String,
}

impl Fixture {
    fn new(args: &[&str]) -> Self {
        require_root_and_busybox();
        let dir = tempfile::Builder::new()
            .prefix("cdirun-cdi-")
            .tempdir()
            .unwrap();
        let root = tempfile::Builder::new()
            .prefix("cdirun-cdi-root-")
            .tempdir()
            .unwrap();
        let f = Fixture {
            dir,
            root,
            id: unique_id(),
        };
        for sub in ["bundle", "cdi", "dev/dri", "lib", "state"] {
            fs::create_dir_all(f.path(sub)).unwrap();
        }
        make_rootfs(&f.rootfs());
        fs::write(f.path("lib/libfake.so.1"), "fake library\n").unwrap();
        fs::write(
            f.path("config.toml"),
            format!(
                "state-dir = {:?}\n[cdi]\nspec-dirs = [{:?}]\n",
                f.path("state"),
                f.path("cdi")
            ),
        )
        .unwrap();
        let out = f.cdirun(&["spec", "--bundle", f.path("bundle").to_str().unwrap()]);
        assert!(out.status.success(), "spec: {}", text(&out.stderr));
        f.edit(|spec| {
            spec["process"]["terminal"] = json!(false);
            spec["process"]["args"] = json!(args);
        });
        f
    }

    fn path(&self, sub: &str) -> PathBuf {
        self.dir.path().join(sub)
    }

    fn rootfs(&self) -> PathBuf {
        self.path("bundle/rootfs")
    }

    fn config_json(&self) -> Vec<u8> {
        fs::read(self.path("bundle/config.json")).unwrap()
    }

    fn edit(&self, change: impl FnOnce(&mut Value)) {
        let mut spec: Value = serde_json::from_slice(&self.config_json()).unwrap();
        change(&mut spec);
        fs::write(
            self.path("bundle/config.json"),
            serde_json::to_vec_pretty(&spec).unwrap(),
        )
        .unwrap();
    }

    fn annotate(&self, key: &str, value: &str) {
        self.edit(|spec| spec["annotations"] = json!({ key: value }));
    }

    fn env(&self, entry: &str) {
        self.edit(|spec| {
            spec["process"]["env"]
                .as_array_mut()
                .unwrap()
                .push(json!(entry))
        });
    }

    /// A character device node under the fixture's `dev/` with mode 0640.
    fn node(&self, name: &str, major: u64, minor: u64) -> PathBuf {
        let path = self.path(&format!("dev/{name}"));
        mknod(
            &path,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o640),
            makedev(major, minor),
        )
        .unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        path
    }

    fn spec(&self, file: &str, spec: &Value) {
        fs::write(
            self.path(&format!("cdi/{file}")),
            serde_json::to_vec_pretty(spec).unwrap(),
        )
        .unwrap();
    }

    fn cdirun(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cdirun"));
        cmd.arg("--root")
            .arg(self.root.path())
            .args(args)
            .env("CDIRUN_CONFIG", self.path("config.toml"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if child.try_wait().unwrap().is_some() {
                return child.wait_with_output().unwrap();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("cdirun {args:?} did not finish within a minute");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `run` in the foreground; asserts success and returns the container's stdout.
    fn run(&self) -> String {
        let out = self.cdirun(&[
            "run",
            "--bundle",
            self.path("bundle").to_str().unwrap(),
            &self.id,
        ]);
        assert!(
            out.status.success(),
            "run failed ({:?}): {}\nstdout: {}",
            out.status,
            text(&out.stderr),
            text(&out.stdout)
        );
        self.assert_gone();
        text(&out.stdout)
    }

    /// No state dir, no cgroup dir, no mount from this fixture is left.
    fn assert_gone(&self) {
        assert!(
            !self.root.path().join(&self.id).exists(),
            "state dir of {} left",
            self.id
        );
        let left = cgroup_dirs_named(&self.id);
        assert!(left.is_empty(), "cgroup dirs of {} left: {left:?}", self.id);
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let dir = self.dir.path().to_str().unwrap();
        assert!(!mounts.contains(dir), "mounts of {dir} left:\n{mounts}");
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if self.root.path().join(&self.id).exists() {
            let _ = self.cdirun(&["delete", "--force", &self.id]);
        }
    }
}

fn make_rootfs(rootfs: &Path) {
    for dir in ["bin", "proc", "sys", "dev", "tmp", "etc", "root", "usr/lib"] {
        fs::create_dir_all(rootfs.join(dir)).unwrap();
    }
    fs::copy(BUSYBOX, rootfs.join("bin/busybox")).unwrap();
    let list = Command::new(BUSYBOX).arg("--list").output().unwrap();
    for applet in text(&list.stdout).lines() {
        if applet != "busybox" {
            let _ = symlink("busybox", rootfs.join("bin").join(applet));
        }
    }
    fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    fs::write(rootfs.join("etc/group"), "root:x:0:\n").unwrap();
}

fn cgroup_dirs_named(name: &str) -> Vec<PathBuf> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let roots: BTreeSet<PathBuf> = mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let fstype = right.split_whitespace().next()?;
            matches!(fstype, "cgroup" | "cgroup2")
                .then(|| PathBuf::from(left.split_whitespace().nth(4).unwrap()))
        })
        .collect();
    let mut found = Vec::new();
    for root in roots {
        let mut stack = vec![root];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    if entry.file_name() == name {
                        found.push(entry.path());
                    }
                    stack.push(entry.path());
                }
            }
        }
    }
    found
}

/// The NVIDIA-style spec `nvidia-ctk cdi generate` makes, cut down: spec-level env, a library
/// mount and a createContainer hook; one node per device, found by lstat of its host node.
fn nvidia_spec(f: &Fixture, devices: &[(&str, PathBuf)]) -> Value {
    let rootfs = f.rootfs();
    let hook = format!(
        "cat > {0}/hook-state; echo hook-ran >> {0}/hook-marker",
        rootfs.display()
    );
    json!({
        "cdiVersion": "0.5.0",
        "kind": "nvidia.com/gpu",
        "containerEdits": {
            "env": ["NVIDIA_DRIVER_CAPABILITIES=utility,compute"],
            "mounts": [{"hostPath": f.path("lib"), "containerPath": "/usr/lib/cdi-fake",
                        "options": ["ro", "nosuid", "nodev", "bind"]}],
            "hooks": [{"hookName": "createContainer", "path": "/bin/sh",
                       "args": ["sh", "-c", hook]}]
        },
        "devices": devices.iter().map(|(name, host)| json!({
            "name": name,
            "containerEdits": {"deviceNodes": [{
                "path": format!("/dev/{}", host.file_name().unwrap().to_str().unwrap()),
                "hostPath": host
            }]}
        })).collect::<Vec<_>>()
    })
}

const PROBE_NVIDIA: &str = "stat -c '%n %F %t:%T %a' /dev/nvidia*; \
    echo CAPS=$NVIDIA_DRIVER_CAPABILITIES; cat /usr/lib/cdi-fake/libfake.so.1; \
    cat /hook-marker; grep -c ' /usr/lib/cdi-fake ' /proc/mounts";

#[test]
fn nvidia_style_spec_by_annotation_injects_node_env_mount_and_hook() {
    let f = Fixture::new(&["sh", "-c", PROBE_NVIDIA]);
    let n0 = f.node("nvidia0", 195, 0);
    let n1 = f.node("nvidia1", 195, 1);
    f.spec("nvidia.json", &nvidia_spec(&f, &[("0", n0), ("1", n1)]));
    f.annotate("cdi.k8s.io/gpu", "nvidia.com/gpu=0");
    let out = f.run();
    assert_eq!(
        out,
        "/dev/nvidia0 character special file c3:0 640\n\
         CAPS=utility,compute\n\
         fake library\n\
         hook-ran\n\
         1\n",
        "container saw something else"
    );
    let state: Value =
        serde_json::from_str(&fs::read_to_string(f.rootfs().join("hook-state")).unwrap()).unwrap();
    assert_eq!(
        state["id"],
        json!(f.id),
        "the hook got another container's state"
    );
    // config.json was rewritten with the edits, including the device cgroup rule.
    let config: Value = serde_json::from_slice(&f.config_json()).unwrap();
    let rules = config["linux"]["resources"]["devices"].as_array().unwrap();
    assert!(
        rules.contains(
            &json!({"allow": true, "type": "c", "major": 195, "minor": 0, "access": "rwm"})
        ),
        "{rules:?}"
    );
}

#[test]
fn nvidia_visible_devices_all_and_index_resolve_against_the_specs() {
    let f = Fixture::new(&["sh", "-c", PROBE_NVIDIA]);
    let n0 = f.node("nvidia0", 195, 0);
    let n1 = f.node("nvidia1", 195, 1);
    f.spec("nvidia.json", &nvidia_spec(&f, &[("0", n0), ("1", n1)]));
    f.env("NVIDIA_VISIBLE_DEVICES=all");
    let out = f.run();
    assert!(
        out.starts_with(
            "/dev/nvidia0 character special file c3:0 640\n\
             /dev/nvidia1 character special file c3:1 640\n\
             CAPS=utility,compute\n"
        ),
        "{out}"
    );
    // The spec-level hook ran once for two devices of one spec.
    assert_eq!(
        fs::read_to_string(f.rootfs().join("hook-marker")).unwrap(),
        "hook-ran\n"
    );

    let g = Fixture::new(&["sh", "-c", "ls /dev | grep nvidia"]);
    let n0 = g.node("nvidia0", 195, 0);
    let n1 = g.node("nvidia1", 195, 1);
    g.spec("nvidia.json", &nvidia_spec(&g, &[("0", n0), ("1", n1)]));
    g.env("NVIDIA_VISIBLE_DEVICES=1");
    assert_eq!(g.run(), "nvidia1\n");
}

#[test]
fn amd_style_spec_by_env_injects_kfd_and_render_node() {
    let f = Fixture::new(&[
        "sh",
        "-c",
        "stat -c '%n %F %t:%T %a' /dev/kfd /dev/dri/*; echo ROCR=$ROCR_VISIBLE_DEVICES",
    ]);
    let kfd = f.node("kfd", 238, 0);
    let render = f.node("dri/renderD128", 226, 128);
    let render2 = f.node("dri/renderD129", 226, 129);
    f.spec(
        "amd.yaml",
        &json!({
            "cdiVersion": "0.5.0",
            "kind": "amd.com/gpu",
            "containerEdits": {"deviceNodes": [{"path": "/dev/kfd", "hostPath": kfd}]},
            "devices": [
                {"name": "0", "containerEdits": {
                    "env": ["ROCR_VISIBLE_DEVICES=0"],
                    "deviceNodes": [{"path": "/dev/dri/renderD128", "hostPath": render}]}},
                {"name": "1", "containerEdits": {
                    "env": ["ROCR_VISIBLE_DEVICES=1"],
                    "deviceNodes": [{"path": "/dev/dri/renderD129", "hostPath": render2}]}}
            ]
        }),
    );
    // JSON is YAML: write the same spec as YAML text to exercise the YAML parser.
    let yaml = fs::read_to_string(f.path("cdi/amd.yaml")).unwrap();
    fs::write(f.path("cdi/amd.yaml"), json_to_yaml(&yaml)).unwrap();
    f.env("AMD_VISIBLE_DEVICES=0");
    assert_eq!(
        f.run(),
        "/dev/kfd character special file ee:0 640\n\
         /dev/dri/renderD128 character special file e2:80 640\n\
         ROCR=0\n"
    );
}

/// Re-indents a JSON document as block YAML through serde (the spec parser sees real YAML).
fn json_to_yaml(json: &str) -> String {
    let value: Value = serde_json::from_str(json).unwrap();
    let mut out = String::new();
    yaml_value(&value, 0, &mut out);
    out
}

fn yaml_value(value: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match v {
                    Value::Object(_) | Value::Array(_) => {
                        out.push_str(&format!("{pad}{key}:\n"));
                        yaml_value(v, indent + 2, out);
                    }
                    _ => out.push_str(&format!("{pad}{key}: {v}\n")),
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                out.push_str(&format!("{pad}-\n"));
                yaml_value(item, indent + 2, out);
            }
        }
        other => out.push_str(&format!("{pad}{other}\n")),
    }
}

#[test]
fn intel_style_spec_injects_card_and_render_nodes_and_env() {
    let f = Fixture::new(&[
        "sh",
        "-c",
        "stat -c '%n %F %t:%T' /dev/dri/*; echo ZE=$ZE_AFFINITY_MASK; ls /usr/lib/cdi-fake",
    ]);
    let card = f.node("dri/card0", 226, 0);
    let render = f.node("dri/renderD128", 226, 128);
    f.spec(
        "intel.json",
        &json!({
            "cdiVersion": "0.6.0",
            "kind": "intel.cdi.k8s.io/gpu",
            "devices": [{"name": "card0", "containerEdits": {
                "env": ["ZE_AFFINITY_MASK=0"],
                "deviceNodes": [
                    {"path": "/dev/dri/card0", "hostPath": card, "permissions": "rw"},
                    {"path": "/dev/dri/renderD128", "hostPath": render, "permissions": "rw"}
                ],
                "mounts": [{"hostPath": f.path("lib"), "containerPath": "/usr/lib/cdi-fake",
                            "type": "bind", "options": ["ro", "rbind"]}]
            }}]
        }),
    );
    f.annotate("cdi.k8s.io/intel", "intel.cdi.k8s.io/gpu=card0");
    assert_eq!(
        f.run(),
        "/dev/dri/card0 character special file e2:0\n\
         /dev/dri/renderD128 character special file e2:80\n\
         ZE=0\n\
         libfake.so.1\n"
    );
    let config: Value = serde_json::from_slice(&f.config_json()).unwrap();
    let rules = config["linux"]["resources"]["devices"].as_array().unwrap();
    assert!(
        rules.contains(
            &json!({"allow": true, "type": "c", "major": 226, "minor": 0, "access": "rw"})
        ),
        "{rules:?}"
    );
}

#[test]
fn unresolvable_devices_fail_create_naming_all_and_leave_nothing() {
    let f = Fixture::new(&["true"]);
    let n0 = f.node("nvidia0", 195, 0);
    f.spec("nvidia.json", &nvidia_spec(&f, &[("0", n0)]));
    f.annotate(
        "cdi.k8s.io/gpu",
        "nvidia.com/gpu=0,nvidia.com/gpu=9,nvidia.com/gpu=8",
    );
    let before = f.config_json();
    let out = f.cdirun(&[
        "create",
        "--bundle",
        f.path("bundle").to_str().unwrap(),
        &f.id,
    ]);
    assert!(!out.status.success(), "create succeeded");
    let err = text(&out.stderr);
    for want in [
        "nvidia.com/gpu=9 (annotation cdi.k8s.io/gpu), nvidia.com/gpu=8 (annotation cdi.k8s.io/gpu)",
        f.path("cdi").to_str().unwrap(),
    ] {
        assert!(err.contains(want), "{want:?} not in: {err}");
    }
    assert_eq!(err.lines().count(), 1, "one error line expected: {err}");
    assert_eq!(f.config_json(), before, "config.json was rewritten");
    f.assert_gone();
    assert!(!f.rootfs().join("hook-marker").exists(), "the hook ran");
    assert!(!f.cdirun(&["state", &f.id]).status.success());
}

#[test]
fn list_validate_and_explain_create_nothing() {
    let f = Fixture::new(&["true"]);
    let n0 = f.node("nvidia0", 195, 0);
    f.spec("nvidia.json", &nvidia_spec(&f, &[("0", n0)]));
    fs::write(
        f.path("cdi/broken.yaml"),
        "cdiVersion: 0.3.0\nkind: x.com/y\ndevices: [{name: a, containerEdits: {env: [NOEQ], hooks: [{hookName: later, path: /x}]}}]\n",
    )
    .unwrap();

    let out = f.cdirun(&["cdi", "list"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed = text(&out.stdout);
    assert!(listed.starts_with("nvidia.com/gpu\n"), "{listed}");
    assert!(
        listed.contains("nvidia.com/gpu=0") && listed.contains("nvidia.json"),
        "{listed}"
    );
    assert!(
        text(&out.stderr).contains("broken.yaml"),
        "broken file not reported"
    );

    let out = f.cdirun(&["cdi", "validate"]);
    assert_eq!(out.status.code(), Some(1));
    let report = text(&out.stdout);
    let broken = f.path("cdi/broken.yaml").display().to_string();
    assert!(
        report.contains(&format!("{broken}: devices[0].containerEdits.env[0]")),
        "{report}"
    );
    assert!(
        report.contains(&format!(
            "{broken}: devices[0].containerEdits.hooks[0].hookName"
        )),
        "{report}"
    );
    let good = f.path("cdi/nvidia.json");
    let out = f.cdirun(&["cdi", "validate", good.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stdout));

    f.env("NVIDIA_VISIBLE_DEVICES=0");
    let before = f.config_json();
    let out = f.cdirun(&[
        "explain",
        "--bundle",
        f.path("bundle").to_str().unwrap(),
        "--id",
        &f.id,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    for want in [
        "+ linux.devices",
        "/dev/nvidia0",
        "+ process.env[]: \"NVIDIA_DRIVER_CAPABILITIES=utility,compute\"",
        "/usr/lib/cdi-fake",
        "createContainer",
        "claims:\n",
        &format!("{{\"kind\":\"scope\",\"path\":\"/workload.slice/{}\"", f.id),
    ] {
        assert!(shown.contains(want), "{want:?} not in:\n{shown}");
    }
    assert_eq!(f.config_json(), before, "explain wrote config.json");
    f.assert_gone();
    assert!(
        !f.rootfs().join("hook-marker").exists(),
        "explain ran the hook"
    );
}

/// A spec dir entry named like a spec that is no regular file (a directory, a dangling link, a
/// FIFO) is named by `cdi list`, `cdi validate` and the unresolved-device error, and a FIFO is
/// never opened (reading one blocks until a writer comes).
#[test]
fn spec_dir_entries_that_are_not_files_are_named_and_a_fifo_is_never_opened() {
    let f = Fixture::new(&["true"]);
    let n0 = f.node("nvidia0", 195, 0);
    f.spec("nvidia.json", &nvidia_spec(&f, &[("0", n0)]));
    let dir = f.path("cdi/a-dir.yaml");
    fs::create_dir(&dir).unwrap();
    let dangling = f.path("cdi/dangling.json");
    symlink(f.path("no-such-spec.json"), &dangling).unwrap();
    let fifo = f.path("cdi/fifo.yaml");
    nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o644)).unwrap();
    let named = [
        format!("{}: a directory, not a regular file", dir.display()),
        format!(
            "{}: a symbolic link to {}, which does not exist",
            dangling.display(),
            f.path("no-such-spec.json").display()
        ),
        format!("{}: a FIFO, not a regular file", fifo.display()),
    ];

    let out = f.cdirun(&["cdi", "list"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("nvidia.com/gpu=0"));
    let warnings = text(&out.stderr);
    for want in &named {
        assert!(warnings.contains(want), "{want:?} not in:\n{warnings}");
    }

    let out = f.cdirun(&["cdi", "validate"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let report = text(&out.stdout);
    for want in &named {
        assert!(report.contains(want), "{want:?} not in:\n{report}");
    }
    assert!(
        text(&out.stderr).contains("3 problem(s)"),
        "{}",
        text(&out.stderr)
    );
    let out = f.cdirun(&["cdi", "validate", fifo.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains(&named[2]),
        "{}",
        text(&out.stdout)
    );

    f.annotate("cdi.k8s.io/gpu", "nvidia.com/gpu=7");
    let out = f.cdirun(&[
        "create",
        "--bundle",
        f.path("bundle").to_str().unwrap(),
        &f.id,
    ]);
    assert!(!out.status.success(), "create succeeded");
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    for want in named.iter().chain([&"nvidia.com/gpu=7".to_owned()]) {
        assert!(err.contains(want.as_str()), "{want:?} not in: {err}");
    }
    f.assert_gone();
}

#[test]
fn a_node_with_permissions_none_is_injected_without_a_cgroup_rule() {
    // Regression: `none` became an allow rule with empty access, and the kernel refused it
    // (EINVAL writing devices.allow), failing the create.
    let f = Fixture::new(&["sh", "-c", "stat -c '%n %F %t:%T' /dev/nvidia0"]);
    let n0 = f.node("nvidia0", 195, 0);
    let mut spec = nvidia_spec(&f, &[("0", n0)]);
    spec["containerEdits"]["hooks"] = json!([]);
    spec["devices"][0]["containerEdits"]["deviceNodes"][0]["permissions"] = json!("none");
    f.spec("nvidia.json", &spec);
    f.annotate("cdi.k8s.io/gpu", "nvidia.com/gpu=0");
    assert_eq!(f.run(), "/dev/nvidia0 character special file c3:0\n");
    let config: Value = serde_json::from_slice(&f.config_json()).unwrap();
    let rules = config["linux"]["resources"]["devices"].as_array().unwrap();
    assert!(!rules.iter().any(|r| r["major"] == json!(195)), "{rules:?}");
}

//! Regression tests for the runtime-spec rules the OCI validation suite found cdirun breaking
//! (conformance/runtime-tools.sh runs the whole suite): delete of a `created` container, unknown
//! capabilities, and failing poststart/poststop hooks. Real containers: run as root with
//! busybox-static installed.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const BUSYBOX: &str = "/bin/busybox";

/// A container in a private `--root`, on a busybox bundle whose config.json `edit` shapes.
struct Case {
    root: tempfile::TempDir,
    bundle: tempfile::TempDir,
    id: String,
}

impl Case {
    fn new(name: &str, edit: impl FnOnce(&mut Value)) -> Self {
        assert!(
            nix::unistd::geteuid().is_root(),
            "these tests run real containers: run them as root"
        );
        assert!(
            Path::new(BUSYBOX).exists(),
            "{BUSYBOX} is missing: apt-get install busybox-static"
        );
        let case = Case {
            root: tempfile::tempdir().unwrap(),
            bundle: tempfile::tempdir().unwrap(),
            id: format!("{name}-{}", std::process::id()),
        };
        let rootfs = case.bundle.path().join("rootfs");
        fs::create_dir_all(rootfs.join("bin")).unwrap();
        fs::copy(BUSYBOX, rootfs.join("bin/busybox")).unwrap();
        for applet in ["sh", "true", "false", "sleep", "echo"] {
            symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
        }
        let out = case.cdirun(&["spec", "--bundle", case.bundle_dir()]);
        assert!(out.status.success(), "spec: {}", stderr(&out));
        let path = case.bundle.path().join("config.json");
        let mut spec: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        spec["process"]["terminal"] = Value::Bool(false);
        spec["process"]["args"] = serde_json::json!(["sleep", "30"]);
        edit(&mut spec);
        fs::write(&path, serde_json::to_vec_pretty(&spec).unwrap()).unwrap();
        case
    }

    fn bundle_dir(&self) -> &str {
        self.bundle.path().to_str().unwrap()
    }

    /// Runs cdirun with its output in files: a created container's init inherits them, so
    /// pipes would stay open until it exits.
    fn cdirun(&self, args: &[&str]) -> Output {
        let out = tempfile::tempfile().unwrap();
        let err = tempfile::tempfile().unwrap();
        let status = Command::new(env!("CARGO_BIN_EXE_cdirun"))
            .arg("--root")
            .arg(self.root.path())
            .args(args)
            .env("CDIRUN_CONFIG", self.config())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(err.try_clone().unwrap())
            .status()
            .unwrap();
        Output {
            status,
            stdout: contents(out),
            stderr: contents(err),
        }
    }

    /// A config keeping claims inside this test's temp dir.
    fn config(&self) -> PathBuf {
        let path = self.root.path().join("config.toml");
        if !path.exists() {
            let state = self.root.path().join("state");
            fs::write(&path, format!("state-dir = {:?}\n", state.display())).unwrap();
        }
        path
    }

    fn create(&self) -> Output {
        self.cdirun(&["create", "--bundle", self.bundle_dir(), &self.id])
    }

    fn status(&self) -> Option<String> {
        let out = self.cdirun(&["state", &self.id]);
        let state: Value = serde_json::from_slice(&out.stdout).ok()?;
        state["status"].as_str().map(str::to_owned)
    }
}

impl Drop for Case {
    fn drop(&mut self) {
        let _ = self.cdirun(&["delete", "--force", &self.id]);
    }
}

fn contents(mut file: fs::File) -> Vec<u8> {
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(0)).unwrap();
    file.read_to_end(&mut bytes).unwrap();
    bytes
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn hook(script: &str) -> Value {
    serde_json::json!({ "path": "/bin/sh", "args": ["sh", "-c", script] })
}

/// runtime-tools `delete`: deleting a container that is not stopped must fail and leave it be;
/// containerd's `delete --force` of a created, then of a gone, container still succeeds.
#[test]
fn delete_of_a_created_container_needs_force() {
    let case = Case::new("delete-created", |_| {});
    let out = case.create();
    assert!(out.status.success(), "create: {}", stderr(&out));

    let out = case.cdirun(&["delete", &case.id]);
    assert!(
        !out.status.success(),
        "plain delete of a created container succeeded"
    );
    assert!(stderr(&out).contains("not stopped"), "{}", stderr(&out));
    assert_eq!(case.status().as_deref(), Some("created"));

    let out = case.cdirun(&["delete", "--force", &case.id]);
    assert!(out.status.success(), "delete --force: {}", stderr(&out));
    assert_eq!(case.status(), None);
    let out = case.cdirun(&["delete", "--force", &case.id]);
    assert!(
        out.status.success(),
        "second delete --force: {}",
        stderr(&out)
    );
}

/// runtime-tools `process_capabilities_fail`: a capability the kernel cannot map is refused at
/// create, and nothing is left behind.
#[test]
fn unknown_capability_is_refused_at_create() {
    let case = Case::new("unknown-cap", |spec| {
        spec["process"]["capabilities"]["bounding"]
            .as_array_mut()
            .unwrap()
            .push(Value::from("CAP_TEST"));
    });
    let out = case.create();
    assert!(!out.status.success(), "create accepted CAP_TEST");
    assert!(stderr(&out).contains("CAP_TEST"), "{}", stderr(&out));
    assert_eq!(case.status(), None);
}

/// runtime-tools `poststart_fail` / `poststop_fail`: a failing hook is a warning; the hooks
/// after it run, and start and delete succeed.
#[test]
fn failing_poststart_and_poststop_hooks_are_warnings() {
    let out_file = tempfile::NamedTempFile::new().unwrap();
    let out_path = out_file.path().display().to_string();
    let case = Case::new("failing-hooks", |spec| {
        spec["hooks"] = serde_json::json!({
            "poststart": [hook("exit 1"), hook(&format!("echo poststart >> {out_path}"))],
            "poststop": [hook("exit 1"), hook(&format!("echo poststop >> {out_path}"))],
        });
    });
    let out = case.create();
    assert!(out.status.success(), "create: {}", stderr(&out));
    let out = case.cdirun(&["start", &case.id]);
    assert!(out.status.success(), "start: {}", stderr(&out));
    assert_eq!(case.status().as_deref(), Some("running"));

    let out = case.cdirun(&["delete", "--force", &case.id]);
    assert!(out.status.success(), "delete: {}", stderr(&out));
    assert_eq!(
        case.status(),
        None,
        "the state dir outlived a failing poststop hook"
    );
    assert_eq!(
        fs::read_to_string(out_file.path()).unwrap(),
        "poststart\npoststop\n"
    );
}

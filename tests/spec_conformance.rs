//! Regression tests for the runtime-spec rules the OCI validation suite found cdirun breaking
//! (conformance/runtime-tools.sh runs the whole suite): delete of a `created` container, unknown
//! capabilities, and failing poststart/poststop hooks.

mod common;

use std::fs;

use common::{Bundle, Runtime, unique_id};
use serde_json::Value;

fn hook(script: &str) -> Value {
    serde_json::json!({ "path": "/bin/sh", "args": ["sh", "-c", script] })
}

/// `state`'s status, or `None` once the container is gone.
fn status(rt: &Runtime, id: &str) -> Option<String> {
    let out = rt.run(&["state", id]);
    let state: Value = serde_json::from_slice(&out.stdout).ok()?;
    state["status"].as_str().map(str::to_owned)
}

/// runtime-tools `delete`: deleting a container that is not stopped must fail and leave it be;
/// containerd's `delete --force` of a created, then of a gone, container still succeeds.
#[test]
fn delete_of_a_created_container_needs_force() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["sleep", "30"]);
    let id = unique_id("delete-created");
    rt.created(&bundle, &id);

    let err = rt.fails(&["delete", &id]);
    assert!(err.contains("not stopped"), "{err}");
    assert_eq!(status(&rt, &id).as_deref(), Some("created"));

    rt.ok(&["delete", "--force", &id]);
    assert_eq!(status(&rt, &id), None);
    rt.ok(&["delete", "--force", &id]);
    rt.assert_gone(&id);
}

/// runtime-tools `process_capabilities_fail`: a capability the kernel cannot map is refused at
/// create, and nothing is left behind.
#[test]
fn unknown_capability_is_refused_at_create() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["sleep", "30"]);
    bundle.edit(|spec| {
        spec["process"]["capabilities"]["bounding"]
            .as_array_mut()
            .unwrap()
            .push(Value::from("CAP_TEST"));
    });
    let id = unique_id("unknown-cap");
    let (ok, err) = rt.create(&bundle, &id, &[]);
    assert!(!ok, "create accepted CAP_TEST");
    assert!(err.contains("CAP_TEST"), "{err}");
    rt.assert_gone(&id);
}

/// runtime-tools `poststart_fail` / `poststop_fail`: a failing hook is a warning; the hooks
/// after it run, and start and delete succeed.
#[test]
fn failing_poststart_and_poststop_hooks_are_warnings() {
    let rt = Runtime::new();
    let out_file = tempfile::NamedTempFile::new().unwrap();
    let out_path = out_file.path().display().to_string();
    let bundle = Bundle::new(&["sleep", "30"]);
    bundle.edit(|spec| {
        spec["hooks"] = serde_json::json!({
            "poststart": [hook("exit 1"), hook(&format!("echo poststart >> {out_path}"))],
            "poststop": [hook("exit 1"), hook(&format!("echo poststop >> {out_path}"))],
        });
    });
    let id = unique_id("failing-hooks");
    rt.started(&bundle, &id);
    assert_eq!(status(&rt, &id).as_deref(), Some("running"));

    rt.ok(&["delete", "--force", &id]);
    assert_eq!(
        status(&rt, &id),
        None,
        "the state dir outlived a failing poststop hook"
    );
    rt.assert_gone(&id);
    assert_eq!(
        fs::read_to_string(out_file.path()).unwrap(),
        "poststart\npoststop\n"
    );
}

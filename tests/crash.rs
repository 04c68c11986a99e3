//! Crash safety: `create` killed with SIGKILL at each of its stages (the test-only
//! `CDIRUN_TEST_PAUSE_AT` stops it there), then `delete --force` must give back everything it
//! took: state dir, cgroup dirs in every hierarchy, GPU ledger entry, MPS reference (and the
//! per_run daemon), the container's processes; the bundle must stay usable and a new container
//! with the same id must run.
//!
//! Needs root and busybox-static; without them every test fails saying what to install.

mod common;
#[path = "support/node.rs"]
mod node;

use std::fs;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{Bundle, Runtime, text, unique_id};
use node::{MPS_ONE, Node, alive, assert_no_trace};

/// Starts `create` paused at `stage`, waits until it says it got there, and SIGKILLs it.
fn create_killed_at(rt: &Runtime, bundle: &common::Bundle, id: &str, stage: &str) {
    let stderr_path = bundle.path().join("create.stderr");
    let mut cmd = rt.command(&["create", "--bundle", bundle.path().to_str().unwrap(), id]);
    cmd.env("CDIRUN_TEST_PAUSE_AT", stage)
        .stdout(Stdio::null())
        .stderr(fs::File::create(&stderr_path).unwrap());
    let mut child = cmd.spawn().unwrap();
    let want = format!("cdirun: paused at {stage}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let err = fs::read_to_string(&stderr_path).unwrap();
        if err.contains(&want) {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("create exited ({status}) before pausing at {stage}: {err}");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("create never paused at {stage}: {err}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

/// The container's init pid from its state file, when libcontainer got as far as writing one.
fn init_pid(rt: &Runtime, id: &str) -> Option<i32> {
    let bytes = fs::read(rt.root().join(id).join("state.json")).ok()?;
    let state: Value = serde_json::from_slice(&bytes).ok()?;
    state["pid"].as_i64().map(|pid| pid as i32)
}

fn killed_create_is_cleaned_by_delete_force(stage: &str) {
    let node = Node::new();
    let rt = node.runtime();
    let b = Bundle::with_annotations(&["sh", "-c", "echo gpus=$NVIDIA_VISIBLE_DEVICES"], MPS_ONE);
    let id = unique_id(&format!("crash-{stage}"));

    create_killed_at(&rt, &b, &id, stage);
    // The claims were taken before the kill: otherwise this test would check nothing.
    assert_eq!(
        node.ledger_holders(),
        std::slice::from_ref(&id),
        "{stage}: ledger"
    );
    assert_eq!(
        node.mps_holders(),
        std::slice::from_ref(&id),
        "{stage}: MPS references"
    );
    assert_eq!(node.running_daemons(), [0], "{stage}: MPS daemon");
    let pid = init_pid(&rt, &id);

    let out = rt.run(&["delete", "--force", &id]);
    assert!(
        out.status.success(),
        "{stage}: delete --force failed: {}",
        text(&out.stderr)
    );
    assert_no_trace(&node, &rt, &id, b.path());
    assert_eq!(
        node.running_daemons(),
        [] as [u32; 0],
        "{stage}: daemon left"
    );
    if let Some(pid) = pid {
        // The init is reaped by init(1) shortly after its kill.
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!alive(pid), "{stage}: init {pid} still runs");
    }

    // The same id and bundle work again, edited once from the client's config.
    let out = rt.run(&["run", "--bundle", b.path().to_str().unwrap(), &id]);
    assert!(
        out.status.success(),
        "{stage}: run after the crash failed: {}",
        text(&out.stderr)
    );
    assert_eq!(text(&out.stdout).trim(), "gpus=0", "{stage}");
    let devices = b.config()["linux"]["devices"].as_array().unwrap().len();
    assert_eq!(devices, 1, "{stage}: the GPU was injected once");
    assert_no_trace(&node, &rt, &id, b.path());
    assert_eq!(
        node.running_daemons(),
        [] as [u32; 0],
        "{stage}: daemon left"
    );
}

#[test]
fn create_killed_after_the_edits() {
    killed_create_is_cleaned_by_delete_force("edited");
}

#[test]
fn create_killed_after_config_json_was_saved() {
    killed_create_is_cleaned_by_delete_force("saved");
}

#[test]
fn create_killed_after_libcontainer_built_the_container() {
    killed_create_is_cleaned_by_delete_force("built");
}

#[test]
fn create_killed_after_the_init_was_placed() {
    killed_create_is_cleaned_by_delete_force("placed");
}

#[test]
fn create_killed_after_the_record_was_saved() {
    killed_create_is_cleaned_by_delete_force("recorded");
}

#[test]
fn every_pause_stage_is_tested() {
    // The stages above, in the order create passes them; a new stage must get a test here.
    assert_eq!(
        cdirun::commands::create::PAUSE_STAGES,
        ["edited", "saved", "built", "placed", "recorded"]
    );
}

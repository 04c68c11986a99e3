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
use node::{EXCLUSIVE_ONE, MPS_ONE, Node, alive, assert_no_trace};

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

/// Ids holding a cgroup in the node's cgroup ledger.
fn cgroup_ledger_holders(node: &Node) -> Vec<String> {
    let Ok(bytes) = fs::read(node.path("state/cgroups.json")) else {
        return Vec::new();
    };
    let ledger: Value = serde_json::from_slice(&bytes).unwrap();
    ledger["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["holder"]["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Pids of live (not zombie) processes whose command line mentions `needle`: the clones of a
/// create (libcontainer's intermediate and init keep its argv) included.
fn processes_mentioning(needle: &str) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(needle) && alive(pid) {
            found.push(pid);
        }
    }
    found
}

/// A small xorshift generator: the delays differ from run to run, and a failure names the
/// seed that gave them.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// `create` SIGKILLed at a random moment (no pause stage: anywhere, libcontainer's
/// intermediate and init half-made included), then exactly one `delete --force`: it must
/// succeed and leave no state dir, cgroup, claim or process, every time. Before the create's
/// processes were found through the mark they inherit, a kill between libcontainer's clone and
/// the intermediate joining its cgroup left an init that the first delete could not remove.
#[test]
fn create_killed_at_random_moments_is_cleaned_by_one_delete_force() {
    const TRIES: u32 = 30;
    let node = Node::new();
    let rt = node.runtime();
    let b = Bundle::with_annotations(&["sleep", "300"], EXCLUSIVE_ONE);
    // How long a whole create takes here: the kills fall anywhere within it.
    let id = unique_id("rl-crash-full");
    let began = Instant::now();
    let (ok, err) = rt.create(&b, &id, &[]);
    let full = began.elapsed();
    assert!(ok, "create: {err}");
    let out = rt.run(&["delete", "--force", &id]);
    assert!(out.status.success(), "delete: {}", text(&out.stderr));
    assert_no_trace(&node, &rt, &id, b.path());

    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let first_seed = seed;
    let span = (full.as_micros() as u64 * 5 / 4).max(1);
    for attempt in 0..TRIES {
        let id = unique_id("rl-crash-rand");
        let delay = Duration::from_micros(next_random(&mut seed) % span);
        let mut child = rt
            .command(&["create", "--bundle", b.path().to_str().unwrap(), &id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let _ = child.kill();
        child.wait().unwrap();
        let context = format!("try {attempt}, seed {first_seed}, killed after {delay:?}");

        let out = rt.run(&["delete", "--force", &id]);
        assert!(
            out.status.success(),
            "{context}: delete --force failed: {}",
            text(&out.stderr)
        );
        assert_no_trace(&node, &rt, &id, b.path());
        assert!(
            !cgroup_ledger_holders(&node).contains(&id),
            "{context}: cgroup ledger still holds {id}"
        );
        // Killed processes are reaped by init(1) a moment later.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut left = processes_mentioning(&id);
        while !left.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
            left = processes_mentioning(&id);
        }
        assert_eq!(left, [] as [i32; 0], "{context}: processes of {id} left");
        assert!(
            !rt.root().join(format!(".{id}:creating")).exists(),
            "{context}: the create's mark is left"
        );
    }
}

#[test]
fn every_pause_stage_is_tested() {
    // The stages above, in the order create passes them; a new stage must get a test here.
    assert_eq!(
        cdirun::engine::creation::PAUSE_STAGES,
        ["edited", "saved", "built", "placed", "recorded"]
    );
}

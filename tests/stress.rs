//! Stress: many containers, one after another and side by side, on a fake GPU node. After each
//! test nothing may be left: no state dir, no cgroup dir in any hierarchy, no mount, no GPU
//! ledger entry, no MPS reference, no running MPS daemon. Every command has a bounded timeout,
//! so a hang fails the test instead of stalling it. Wall times are printed, never asserted.
//!
//! Needs root and busybox-static; without them every test fails saying what to install.

mod common;
#[path = "support/node.rs"]
mod node;

use std::time::{Duration, Instant};

use common::{Bundle, Runtime, output_within, text, unique_id};
use node::{EXCLUSIVE_ONE, MPS_ONE, Node, assert_no_trace, cgroup_dirs_starting_with};

/// Sequential `run`s of /bin/true.
const SEQUENTIAL_RUNS: usize = 1000;
/// Concurrent create/start/delete loops, and the iterations of each.
const LOOPS: usize = 32;
const ITERATIONS: usize = 4;

/// Every check of `assert_no_trace`, for every id that starts with `prefix`, plus the node-wide
/// ones: the ledger and references are empty and no daemon runs.
fn assert_node_clean(node: &Node, rt: &Runtime, prefix: &str) {
    let left: Vec<String> = rt.ids().into_iter().collect();
    assert!(left.is_empty(), "state dirs left: {left:?}");
    let cgroups = cgroup_dirs_starting_with(prefix);
    assert!(cgroups.is_empty(), "cgroup dirs left: {cgroups:?}");
    assert_eq!(node.ledger_holders(), [] as [String; 0], "GPU ledger");
    assert_eq!(node.mps_holders(), [] as [String; 0], "MPS references");
    assert_eq!(node.running_daemons(), [] as [u32; 0], "MPS daemons");
}

#[test]
fn a_thousand_sequential_runs_neither_hang_nor_leak() {
    let node = Node::new();
    let rt = node.runtime();
    // Every run takes a GPU in the ledger: the claim goes through create and delete a thousand
    // times. (MPS references, whose stand-in daemon costs two shell runs per container, are
    // exercised by the concurrent loops below.)
    let b = Bundle::with_annotations(&["true"], EXCLUSIVE_ONE);
    let prefix = unique_id("seq");
    let bundle_arg = b.path().to_str().unwrap();
    let started = Instant::now();
    for i in 0..SEQUENTIAL_RUNS {
        let id = format!("{prefix}-{i}");
        let out = output_within(
            rt.command(&["run", "--bundle", bundle_arg, &id]),
            Duration::from_secs(30),
        );
        assert!(
            out.status.success(),
            "run {i} failed ({}): {}",
            out.status,
            text(&out.stderr)
        );
        assert!(!rt.root().join(&id).exists(), "run {i} left its state dir");
    }
    let elapsed = started.elapsed();
    eprintln!(
        "{SEQUENTIAL_RUNS} sequential runs with {}: {elapsed:.1?} ({:.1?} per run)",
        common::cdirun_bin().display(),
        elapsed / SEQUENTIAL_RUNS as u32
    );
    assert_node_clean(&node, &rt, &prefix);
    assert_no_trace(&node, &rt, &format!("{prefix}-0"), b.path());
    // Each run got the first GPU: the previous run's claim was given back.
    assert_eq!(
        b.config()["annotations"]["io.cdirun.gpu.allocated"],
        "nvidia.com/gpu=0"
    );
}

#[test]
fn thirty_two_concurrent_create_start_delete_loops_leave_nothing() {
    let node = Node::new();
    let rt = node.runtime();
    let prefix = unique_id("par");
    // Half the loops share the two GPUs through MPS, half ask for nothing.
    let bundles: Vec<common::Bundle> = (0..LOOPS)
        .map(|l| {
            let annotations = if l % 2 == 0 { MPS_ONE } else { &[] };
            Bundle::with_annotations(&["sh", "-c", "echo $NVIDIA_VISIBLE_DEVICES"], annotations)
        })
        .collect();
    let started = Instant::now();
    std::thread::scope(|scope| {
        for (l, b) in bundles.iter().enumerate() {
            let (rt, prefix) = (&rt, &prefix);
            scope.spawn(move || {
                for i in 0..ITERATIONS {
                    let id = format!("{prefix}-{l}-{i}");
                    rt.created(b, &id);
                    rt.ok(&["start", &id]);
                    rt.wait_status(&id, "stopped");
                    rt.ok(&["delete", &id]);
                    rt.assert_gone(&id);
                    let out = std::fs::read_to_string(b.path().join("stdout")).unwrap();
                    let want = if l % 2 == 0 { &["0", "1"][..] } else { &[""] };
                    assert!(want.contains(&out.trim()), "{id} printed {out:?}");
                }
            });
        }
    });
    eprintln!(
        "{LOOPS} concurrent loops of {ITERATIONS} create/start/delete: {:.1?}",
        started.elapsed()
    );
    assert_node_clean(&node, &rt, &prefix);
    // The per_run daemons were started and stopped in pairs, as references came and went.
    let calls = node.calls();
    let starts = calls.iter().filter(|c| c.starts_with("mps -d")).count();
    let quits = calls.iter().filter(|c| c.starts_with("mps quit")).count();
    assert!(
        starts > 0 && starts == quits,
        "{starts} starts, {quits} quits"
    );
    for (l, b) in bundles.iter().enumerate() {
        assert_no_trace(&node, &rt, &format!("{prefix}-{l}-0"), b.path());
    }
}

//! Behaviour clients rely on because runc 1.1.5 has it, checked on real containers: verbs
//! whose stdout goes away, hook output and hook failures, and the lifecycle verbs' answers to
//! containers in every state.

mod common;

use std::fs::File;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::Duration;

use common::{Bundle, Runtime, text, unique_id, wait_within};

/// Runs a verb with its stdout going to `stdout` and returns how it ended and its stderr.
fn with_stdout(rt: &Runtime, args: &[&str], stdout: Stdio) -> (std::process::ExitStatus, String) {
    let mut cmd = rt.command(args);
    cmd.stdout(stdout).stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    let out = wait_within(child, Duration::from_secs(30));
    (out.status, text(&out.stderr))
}

/// A pipe whose reader is already gone.
fn closed_pipe() -> Stdio {
    let (read, write) = nix::unistd::pipe().unwrap();
    drop(read);
    Stdio::from(write)
}

/// Regression: `state ID | true` and `list | true` panicked ("failed printing to stdout:
/// Broken pipe", status 134 and a backtrace). As runc, they die of SIGPIPE and say nothing; on
/// a full disk they fail with one line naming stdout.
#[test]
fn state_and_list_die_quietly_on_a_closed_stdout_and_fail_cleanly_on_a_full_one() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["sleep", "60"]);
    let id = unique_id("stdout");
    rt.created(&bundle, &id);
    let verbs: [&[&str]; 4] = [&["state", &id], &["list"], &["list", "-q"], &["--version"]];
    for args in verbs {
        let (status, err) = with_stdout(&rt, args, closed_pipe());
        assert_eq!(
            status.signal(),
            Some(libc::SIGPIPE),
            "{args:?}: {status:?}, stderr: {err}"
        );
        assert_eq!(err, "", "{args:?}");

        let full = File::options().write(true).open("/dev/full").unwrap();
        let (status, err) = with_stdout(&rt, args, Stdio::from(full));
        assert_eq!(
            status.code(),
            Some(1),
            "{args:?}: {status:?}, stderr: {err}"
        );
        assert_eq!(
            err, "cannot write to stdout: No space left on device (os error 28)\n",
            "{args:?}"
        );
    }
    rt.ok(&["delete", "--force", &id]);
    rt.assert_gone(&id);
}

/// A shell hook: `script` run by /bin/sh (the host's for the runtime-namespace stages, the
/// busybox rootfs's for startContainer).
fn sh_hook(script: &str) -> serde_json::Value {
    serde_json::json!({"path": "/bin/sh", "args": ["sh", "-c", script]})
}

/// Regression: createContainer and startContainer hooks wrote to the container's stderr (what
/// a shim hands on as the container's log), and createRuntime hooks to cdirun's. Hook output
/// goes to --log; the container's streams carry only what the container writes.
#[test]
fn hook_output_goes_to_the_log_and_never_to_the_container_streams() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["sh", "-c", "echo out; echo err >&2"]);
    bundle.edit(|spec| {
        spec["hooks"] = serde_json::json!({
            "createRuntime": [sh_hook("echo runtime-hook-says >&2; echo runtime-hook-stdout")],
            "createContainer": [sh_hook("echo container-hook-says >&2")],
            "startContainer": [sh_hook("echo start-hook-says >&2")],
        });
    });
    let log = bundle.path().join("cdirun.log");
    let id = unique_id("hookout");
    let out = rt.run(&[
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "run",
        "--bundle",
        bundle.path().to_str().unwrap(),
        &id,
    ]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "out\n");
    assert_eq!(text(&out.stderr), "err\n");
    let logged = std::fs::read_to_string(&log).unwrap();
    for line in logged.lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|err| panic!("log line is not JSON ({err}): {line}"));
    }
    for said in ["runtime-hook-says", "container-hook-says"] {
        assert!(logged.contains(said), "{said} not in the log:\n{logged}");
    }
    rt.assert_gone(&id);
}

/// A failed hook's error line ends with what it wrote to stderr, as runc's does, and nothing
/// else reaches stderr.
#[test]
fn a_failed_hooks_error_line_carries_its_stderr() {
    let rt = Runtime::new();
    for stage in ["createRuntime", "createContainer"] {
        let bundle = Bundle::new(&["true"]);
        bundle.edit(|spec| {
            spec["hooks"] =
                serde_json::json!({ stage: [sh_hook("echo first >&2; echo broken-thing >&2; exit 3")] });
        });
        let id = unique_id("hookfail");
        let (ok, err) = rt.create(&bundle, &id, &[]);
        assert!(!ok, "{stage}: create succeeded");
        assert_eq!(err.lines().count(), 1, "{stage}: {err}");
        assert!(
            err.contains(&format!("error running {stage} hook #0 (/bin/sh)"))
                && err.trim_end().ends_with(", stderr: first\\nbroken-thing"),
            "{stage}: {err}"
        );
        rt.assert_gone(&id);
    }
}

/// Regression: a failing startContainer hook made `run` exit 255 without a word and `start`
/// succeed. Both fail with status 1 and one line naming the hook; the container is stopped.
#[test]
fn a_failed_start_container_hook_fails_run_and_start_with_one_line() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["sleep", "60"]);
    bundle.edit(|spec| {
        spec["hooks"] = serde_json::json!({"startContainer": [{"path": "/nonexistent-hook"}]});
    });
    let want = "error running startContainer hook #0 (/nonexistent-hook): no such file or directory in the container";
    let bundle_arg = bundle.path().to_str().unwrap();

    let id = unique_id("starthook");
    let out = rt.run(&["run", "--bundle", bundle_arg, &id]);
    assert_eq!(out.status.code(), Some(1), "run: {}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        format!("cannot start container {id:?}: {want}\n")
    );
    rt.assert_gone(&id);

    let id = unique_id("starthook");
    rt.created(&bundle, &id);
    let out = rt.run(&["start", &id]);
    assert_eq!(out.status.code(), Some(1), "start: {}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        format!("cannot start container {id:?}: {want}\n")
    );
    assert_eq!(rt.status(&id), "stopped");
    rt.ok(&["delete", &id]);
    rt.assert_gone(&id);
}

/// A startContainer hook that succeeds leaves `start` as it was: the process runs.
#[test]
fn a_passing_start_container_hook_lets_start_succeed() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["sleep", "60"]);
    bundle.edit(|spec| {
        spec["hooks"] = serde_json::json!({"startContainer": [sh_hook("true")]});
    });
    let id = unique_id("starthookok");
    rt.started(&bundle, &id);
    assert_eq!(rt.status(&id), "running");
    rt.ok(&["delete", "--force", &id]);
    rt.assert_gone(&id);
}

/// Regression: a seccomp profile with SCMP_ACT_NOTIFY and a listener hung the create. It is
/// refused at once, naming the action, and nothing is left behind.
#[test]
fn a_seccomp_notify_profile_is_refused_at_once() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["true"]);
    let listener = bundle.path().join("listener.sock");
    let _socket = std::os::unix::net::UnixListener::bind(&listener).unwrap();
    bundle.edit(|spec| {
        spec["linux"]["seccomp"] = serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": listener,
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]
        });
    });
    let id = unique_id("notify");
    let started = std::time::Instant::now();
    let (ok, err) = rt.create(&bundle, &id, &[]);
    assert!(!ok, "create with a notify profile succeeded");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        err.contains("SCMP_ACT_NOTIFY") && err.contains(listener.to_str().unwrap()),
        "{err}"
    );
    rt.assert_gone(&id);
}

/// runc 1.1.5's answers to the lifecycle verbs, one row each.
#[test]
fn kill_of_a_stopped_container_is_container_not_running_and_kill_all_succeeds() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["true"]);
    let id = unique_id("killstopped");
    rt.started(&bundle, &id);
    rt.wait_status(&id, "stopped");
    for signal in ["KILL", "0"] {
        let err = rt.fails(&["kill", &id, signal]);
        assert!(err.contains("container not running"), "{signal}: {err}");
    }
    rt.ok(&["kill", "--all", &id, "KILL"]);
    rt.ok(&["delete", &id]);
    rt.assert_gone(&id);
}

#[test]
fn kill_of_a_container_that_never_existed_fails_naming_it() {
    let rt = Runtime::new();
    let out = rt.run(&["kill", "never-was", "KILL"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "container \"never-was\" does not exist\n"
    );
}

#[test]
fn plain_delete_of_a_running_container_fails_and_leaves_it_running() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["sleep", "60"]);
    let id = unique_id("delrunning");
    rt.started(&bundle, &id);
    let out = rt.run(&["delete", &id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("not stopped"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(rt.status(&id), "running");
    rt.ok(&["delete", "--force", &id]);
    rt.assert_gone(&id);
}

/// cdirun's documented choice (docs/hooks.md): a failing poststart hook is a warning in --log;
/// `start` succeeds and the container keeps running, so containerd sees a running task.
#[test]
fn a_failing_poststart_hook_is_a_warning_and_the_container_runs() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["sleep", "60"]);
    bundle.edit(|spec| spec["hooks"] = serde_json::json!({"poststart": [sh_hook("exit 1")]}));
    let log = bundle.path().join("cdirun.log");
    let id = unique_id("poststart");
    rt.created(&bundle, &id);
    let out = rt.run(&["--log", log.to_str().unwrap(), "start", &id]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(rt.status(&id), "running");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("poststart hook #0 (/bin/sh) failed"),
        "{logged}"
    );
    rt.ok(&["delete", "--force", &id]);
    rt.assert_gone(&id);
}

/// As runc: a failing poststop hook leaves `delete` succeeding and the container gone.
#[test]
fn a_failing_poststop_hook_leaves_delete_succeeding() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["true"]);
    bundle.edit(|spec| spec["hooks"] = serde_json::json!({"poststop": [sh_hook("exit 1")]}));
    let id = unique_id("poststop");
    rt.started(&bundle, &id);
    rt.wait_status(&id, "stopped");
    rt.ok(&["delete", &id]);
    rt.assert_gone(&id);
}

/// As runc: a relative --pid-file names a file under the caller's working directory.
#[test]
fn a_relative_pid_file_is_resolved_against_the_callers_cwd() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["sleep", "60"]);
    let cwd = tempfile::tempdir().unwrap();
    let id = unique_id("pidfile");
    let mut cmd = rt.command(&[
        "create",
        "--bundle",
        bundle.path().to_str().unwrap(),
        "--pid-file",
        "init.pid",
        &id,
    ]);
    cmd.current_dir(cwd.path());
    cmd.stdout(File::create(bundle.path().join("stdout")).unwrap());
    cmd.stderr(File::create(bundle.path().join("stderr")).unwrap());
    let status = cmd.status().unwrap();
    assert!(status.success());
    let pid: i64 = std::fs::read_to_string(cwd.path().join("init.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(rt.state(&id)["pid"].as_i64(), Some(pid));
    assert!(!bundle.path().join("init.pid").exists());
    rt.ok(&["delete", "--force", &id]);
    rt.assert_gone(&id);
}

/// As runc: right after `start` returns, `state` says running with the init's pid.
#[test]
fn state_right_after_start_is_running_with_the_init_pid() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["sleep", "60"]);
    let id = unique_id("juststarted");
    rt.created(&bundle, &id);
    let created_pid = rt.state(&id)["pid"].as_i64().unwrap();
    rt.ok(&["start", &id]);
    let state = rt.state(&id);
    assert_eq!(state["status"], "running");
    assert_eq!(state["pid"].as_i64(), Some(created_pid));
    rt.ok(&["delete", "--force", &id]);
    rt.assert_gone(&id);
}

/// Gives the bundle's container a cgroup namespace of its own (the default spec may have one).
fn with_cgroup_namespace(bundle: &Bundle) {
    bundle.edit(|spec| {
        let namespaces = spec["linux"]["namespaces"].as_array_mut().unwrap();
        if !namespaces.iter().any(|ns| ns["type"] == "cgroup") {
            namespaces.push(serde_json::json!({"type": "cgroup"}));
        }
    });
}

/// In a private cgroup namespace the container sees `/` in every hierarchy, as with runc: the
/// init and an exec'd process start in the container's cgroup there, also where cdirun (not
/// libcontainer) places them (`name=systemd` and the cgroup2 mount of a hybrid host), and
/// cdirun itself is back in its own cgroup afterwards.
#[test]
fn a_private_cgroup_namespace_shows_root_in_every_hierarchy() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["sh", "-c", "cat /proc/self/cgroup; sleep 30"]);
    with_cgroup_namespace(&bundle);
    let own_before = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let id = unique_id("cgns");
    rt.started(&bundle, &id);
    let check = |what: &str, listing: &str| {
        assert!(!listing.trim().is_empty(), "{what}: no /proc/self/cgroup");
        for line in listing.lines() {
            assert!(
                line.ends_with(":/"),
                "{what} sees a host path: {line:?} in\n{listing}"
            );
        }
    };
    let mut init_view = String::new();
    for _ in 0..200 {
        init_view = std::fs::read_to_string(bundle.path().join("stdout")).unwrap();
        if !init_view.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    check("the init", &init_view);
    check(
        "an exec'd process",
        &rt.ok(&["exec", &id, "cat", "/proc/self/cgroup"]),
    );
    // The test process and cdirun (its child) were in the same cgroups; cdirun left the
    // container's again, so the container's cgroup holds only the container's processes.
    assert_eq!(
        std::fs::read_to_string("/proc/self/cgroup").unwrap(),
        own_before
    );
    let ps = rt.ok(&["ps", "--format", "json", &id]);
    let pids: Vec<i64> = serde_json::from_str(&ps).unwrap();
    assert_eq!(
        pids.len(),
        1,
        "only the init is in the container's cgroup: {pids:?}"
    );
    rt.ok(&["delete", "--force", &id]);
    rt.assert_gone(&id);
}

/// Hooks that run from the runtime's process (prestart, createRuntime) start in the runtime's
/// own cgroups, as with runc, not in the container's: cdirun stands in the container's cgroup
/// only until libcontainer forked, and the container still sees `/` in its cgroup namespace.
#[test]
fn runtime_hooks_run_in_the_runtimes_cgroup_and_the_container_sees_root() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["cat", "/proc/self/cgroup"]);
    let seen = bundle.path().join("hook-cgroups");
    let hook = |out: &std::path::Path| serde_json::json!({"path": "/bin/sh", "args": ["sh", "-c", format!("cat /proc/self/cgroup >> {}", out.display())]});
    bundle.edit(|spec| {
        spec["hooks"] =
            serde_json::json!({"prestart": [hook(&seen)], "createRuntime": [hook(&seen)]});
    });
    with_cgroup_namespace(&bundle);
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let id = unique_id("hookcg");
    let out = rt.run(&["run", "--bundle", bundle.path().to_str().unwrap(), &id]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for line in text(&out.stdout).lines() {
        assert!(
            line.ends_with(":/"),
            "the container sees a host path: {line:?}"
        );
    }
    let hooks = std::fs::read_to_string(&seen).unwrap();
    assert_eq!(
        hooks,
        format!("{own}{own}"),
        "the hooks ran in the runtime's cgroups"
    );
    rt.assert_gone(&id);
}

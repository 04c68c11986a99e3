//! The command line surface clients probe: version, features, spec, checkpoint support, flag
//! order, and the console socket handshake.

mod common;

use std::fs;
use std::os::unix::fs::OpenOptionsExt;

use common::{Bundle, ConsoleSocket, Runtime, cdirun_bin, read_pty_until, text, unique_id};
use serde_json::Value;

#[test]
fn version_names_the_runtime_and_spec() {
    let out = std::process::Command::new(cdirun_bin())
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("cdirun version "), "{stdout}");
    assert!(stdout.contains("\nspec: 1."), "{stdout}");
}

#[test]
fn features_is_runc_shaped_json() {
    let out = std::process::Command::new(cdirun_bin())
        .arg("features")
        .output()
        .unwrap();
    assert!(out.status.success());
    let features: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(features["ociVersionMin"], "1.0.0");
    assert!(
        features["ociVersionMax"]
            .as_str()
            .unwrap()
            .starts_with("1.")
    );
    let hooks: Vec<&str> = features["hooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap())
        .collect();
    assert_eq!(
        hooks,
        [
            "prestart",
            "createRuntime",
            "createContainer",
            "startContainer",
            "poststart",
            "poststop"
        ]
    );
    let linux = &features["linux"];
    assert!(
        linux["namespaces"]
            .as_array()
            .unwrap()
            .contains(&Value::from("pid"))
    );
    assert!(
        linux["capabilities"]
            .as_array()
            .unwrap()
            .contains(&Value::from("CAP_SYS_ADMIN"))
    );
    assert_eq!(linux["cgroup"]["v1"], true);
    assert!(
        features["mountOptions"]
            .as_array()
            .unwrap()
            .contains(&Value::from("rbind"))
    );
}

#[test]
fn spec_writes_a_parseable_config_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().to_str().unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(cdirun_bin())
            .args(args)
            .output()
            .unwrap()
    };
    assert!(run(&["spec", "--bundle", bundle]).status.success());
    let spec: Value =
        serde_json::from_slice(&fs::read(dir.path().join("config.json")).unwrap()).unwrap();
    assert_eq!(spec["root"]["path"], "rootfs");
    assert_eq!(spec["process"]["args"], serde_json::json!(["sh"]));
    assert!(
        spec["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|ns| ns["type"] == "pid")
    );
    let again = run(&["spec", "--bundle", bundle]);
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("exists"),
        "{}",
        text(&again.stderr)
    );

    let rootless = tempfile::tempdir().unwrap();
    assert!(
        run(&[
            "spec",
            "--rootless",
            "--bundle",
            rootless.path().to_str().unwrap()
        ])
        .status
        .success()
    );
    let spec: Value =
        serde_json::from_slice(&fs::read(rootless.path().join("config.json")).unwrap()).unwrap();
    assert!(
        spec["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|ns| ns["type"] == "user")
    );
    assert_eq!(spec["linux"]["uidMappings"][0]["containerID"], 0);
}

/// The rootless template runs as it is: a single-id user namespace cannot mount sysfs or name
/// the tty group, so /sys is bound and `gid=5` left out, as in runc's.
#[test]
fn rootless_spec_runs_a_container() {
    let rt = Runtime::new();
    let dir = tempfile::Builder::new()
        .prefix("cdirun-rootless-")
        .tempdir()
        .unwrap();
    common::make_rootfs(&dir.path().join("rootfs"));
    rt.ok(&[
        "spec",
        "--rootless",
        "--bundle",
        dir.path().to_str().unwrap(),
    ]);
    let config = dir.path().join("config.json");
    let mut spec: Value = serde_json::from_slice(&fs::read(&config).unwrap()).unwrap();
    let sys = spec["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["destination"] == "/sys")
        .unwrap()
        .clone();
    assert_eq!(sys["source"], "/sys", "{sys}");
    assert!(!spec.to_string().contains("gid=5"));
    spec["process"]["terminal"] = Value::Bool(false);
    spec["process"]["args"] = serde_json::json!(["sh", "-c", "test -d /sys/class && id -u"]);
    fs::write(&config, spec.to_string()).unwrap();
    let id = unique_id("rootless");
    let out = rt.run(&["run", "--bundle", dir.path().to_str().unwrap(), &id]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "0\n");
    rt.assert_gone(&id);
}

#[test]
fn checkpoint_is_reported_unsupported_even_for_help() {
    for args in [
        vec!["checkpoint", "--help"],
        vec!["checkpoint", "some-id"],
        vec!["restore", "some-id"],
    ] {
        let out = std::process::Command::new(cdirun_bin())
            .args(&args)
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "{args:?} must fail: podman reads exit 0 as support"
        );
        assert!(
            text(&out.stderr).contains("not supported"),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}

/// containerd reads a failed runtime's error from the --log file: a command line the parser
/// refuses is logged there too, as runc logs "flag provided but not defined".
#[test]
fn refused_command_line_is_written_to_the_json_log() {
    let rt = Runtime::new();
    let log = rt.root().join("refused.json");
    let out = rt.run(&[
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "kill",
        "--bogus",
        "x",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let line: Value = serde_json::from_str(fs::read_to_string(&log).unwrap().trim()).unwrap();
    assert_eq!(line["level"], "error");
    assert!(line["msg"].as_str().unwrap().contains("--bogus"), "{line}");
}

#[test]
fn flags_are_accepted_in_any_order() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["sleep", "30"]);
    let id = unique_id("order");
    let pid_file = bundle.path().join("p.pid");
    let log = bundle.path().join("log.json");
    // podman: flags then id; containerd: global flags first, id last; others put the id first.
    let (ok, err) = rt.create(&bundle, &id, &["--pid-file", pid_file.to_str().unwrap()]);
    assert!(ok, "{err}");
    let out = rt.run(&[
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "--debug",
        "--systemd-cgroup=false",
        "state",
        &id,
    ]);
    // --systemd-cgroup takes no value in runc: `=false` must be refused, not misread.
    assert!(!out.status.success());
    rt.ok(&[
        "--log",
        log.to_str().unwrap(),
        "--log-format=json",
        "state",
        &id,
    ]);
    rt.ok(&["kill", "--all", &id, "9"]);
    rt.wait_status(&id, "stopped");
    rt.ok(&["delete", &id, "--force"]);
    rt.assert_gone(&id);
}

#[test]
fn console_socket_receives_the_pty_master() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["sh", "-c", "tty; echo over-the-pty"]);
    bundle.edit(|spec| spec["process"]["terminal"] = Value::Bool(true));
    let mut console = ConsoleSocket::listen();
    let id = unique_id("tty");
    let (ok, err) = rt.create(&bundle, &id, &["--console-socket", &console.path()]);
    assert!(ok, "{err}");
    let mut master = console.master();
    rt.ok(&["start", &id]);
    let seen = read_pty_until(&mut master, "over-the-pty");
    assert!(
        seen.contains("/dev/pts/") || seen.contains("/dev/console"),
        "{seen}"
    );
    assert!(seen.contains("over-the-pty"), "{seen}");
    rt.wait_status(&id, "stopped");
    rt.ok(&["delete", &id]);
    rt.assert_gone(&id);
}

/// Regression: Docker's `run -it` hung in create. containerd's shim reads the runtime's stdout
/// and stderr (one pipe) to their end before it takes the pty master, and with a hook (Docker
/// always adds libnetwork's prestart hook) the init kept cdirun's stderr open until its exec,
/// which waits for a start that never came.
#[test]
fn create_with_a_terminal_and_hooks_closes_its_own_output() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["sh", "-c", "echo over-the-pty"]);
    bundle.edit(|spec| {
        spec["process"]["terminal"] = Value::Bool(true);
        spec["hooks"] = serde_json::json!({"prestart": [{"path": "/bin/true"}]});
    });
    let mut console = ConsoleSocket::listen();
    let id = unique_id("ttyhook");
    // Close-on-exec: a copy the child inherited under its own number would hold the pipe open.
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let mut cmd = rt.command(&[
        "create",
        "--bundle",
        bundle.path().to_str().unwrap(),
        "--console-socket",
        &console.path(),
        &id,
    ]);
    cmd.stdout(std::fs::File::from(write.try_clone().unwrap()))
        .stderr(std::fs::File::from(write));
    let mut child = cmd.spawn().unwrap();
    drop(cmd); // the command holds its copies of the pipe's write end
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::Read as _;
        let mut out = String::new();
        let _ = std::fs::File::from(read).read_to_string(&mut out);
        let _ = done.send(out);
    });
    let output = finished.recv_timeout(std::time::Duration::from_secs(20));
    let status = child.wait().unwrap();
    let output = output.expect("create's stdout and stderr stayed open after it exited");
    assert!(status.success(), "create failed: {output}");
    let mut master = console.master();
    rt.ok(&["start", &id]);
    let seen = read_pty_until(&mut master, "over-the-pty");
    assert!(seen.contains("over-the-pty"), "{seen}");
    rt.wait_status(&id, "stopped");
    rt.ok(&["delete", &id]);
    rt.assert_gone(&id);
}

/// podman's `exec -t`: a process.json with a terminal, the pty master over --console-socket.
#[test]
fn exec_with_tty_sends_its_pty_over_the_console_socket() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["sleep", "60"]);
    let id = unique_id("exectty");
    rt.started(&bundle, &id);
    let process = serde_json::json!({
        "terminal": true, "user": {"uid": 0, "gid": 0}, "cwd": "/",
        "env": ["PATH=/bin"], "args": ["sh", "-c", "tty; echo exec-over-the-pty"]
    });
    let process_file = bundle.path().join("process.json");
    fs::write(&process_file, process.to_string()).unwrap();
    let pid_file = bundle.path().join("exec.pid");
    let mut console = ConsoleSocket::listen();
    let out = rt.run(&[
        "exec",
        "--pid-file",
        pid_file.to_str().unwrap(),
        "--process",
        process_file.to_str().unwrap(),
        "--detach",
        "--tty",
        "--console-socket",
        &console.path(),
        &id,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut master = console.master();
    let seen = read_pty_until(&mut master, "exec-over-the-pty");
    assert!(seen.contains("/dev/pts/"), "{seen}");
    assert!(seen.contains("exec-over-the-pty"), "{seen}");
    assert!(
        fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse::<i32>()
            .unwrap()
            > 0
    );
    rt.ok(&["delete", "--force", &id]);
    rt.assert_gone(&id);
}

/// `exec --tty` with argv (no process file) also gets a terminal over the console socket.
#[test]
fn exec_argv_with_tty_gets_a_terminal() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["sleep", "60"]);
    let id = unique_id("execargvtty");
    rt.started(&bundle, &id);
    let mut console = ConsoleSocket::listen();
    let out = rt.run(&[
        "exec",
        "--detach",
        "--tty",
        "--console-socket",
        &console.path(),
        &id,
        "sh",
        "-c",
        "tty; echo argv-over-the-pty",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut master = console.master();
    let seen = read_pty_until(&mut master, "argv-over-the-pty");
    assert!(seen.contains("/dev/pts/"), "{seen}");
    // Nor the link to the console socket that libcontainer makes for it.
    let left = rt.exec_leftovers(&id);
    assert!(left.is_empty(), "left in the state dir: {left:?}");
    rt.ok(&["delete", "--force", &id]);
    rt.assert_gone(&id);
}

/// CVE-2019-5736: a process that holds /proc/<init>/exe of a runtime process must not be able to
/// reopen it for writing once the runtime is gone; the binary runs from a read-only mount.
#[test]
fn runtime_binary_cannot_be_reopened_for_writing_through_proc_exe() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["sleep", "30"]);
    let id = unique_id("seal");
    rt.created(&bundle, &id);
    // In the `created` state the init process still runs cdirun's image.
    let pid = rt.state(&id)["pid"].as_i64().unwrap();
    let held = fs::File::options()
        .read(true)
        .custom_flags(libc::O_PATH)
        .open(format!("/proc/{pid}/exe"))
        .unwrap();
    rt.ok(&["delete", "--force", &id]);
    use std::os::fd::AsRawFd;
    let reopened = fs::OpenOptions::new()
        .write(true)
        .open(format!("/proc/self/fd/{}", held.as_raw_fd()));
    let err = reopened.expect_err("the runtime binary was writable through /proc/<pid>/exe");
    assert!(
        matches!(
            err.raw_os_error(),
            Some(libc::EROFS) | Some(libc::EPERM) | Some(libc::ETXTBSY)
        ),
        "unexpected error {err}"
    );
    rt.assert_gone(&id);
}

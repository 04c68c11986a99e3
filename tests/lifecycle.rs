//! The runc verbs on real busybox containers: run, the create/start/state/delete lifecycle,
//! kill, exec, pause/resume, ps, list, update, events.

mod common;

use std::fs;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Bundle, Runtime, cdirun_bin, output_within, text, unique_id};
use serde_json::Value;

#[test]
fn run_returns_exit_status_and_output() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["sh", "-c", "echo hello from busybox; exit 3"]);
    let id = unique_id("run");
    let out = rt.run(&["run", "--bundle", bundle.path().to_str().unwrap(), &id]);
    assert_eq!(out.status.code(), Some(3), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello from busybox\n");
    rt.assert_gone(&id);
}

#[test]
fn run_reports_a_signal_death_as_128_plus_signal() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["sleep", "60"]);
    let id = unique_id("runsig");
    let child = rt
        .command(&["run", "--bundle", bundle.path().to_str().unwrap(), &id])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    rt.wait_status(&id, "running");
    rt.ok(&["kill", &id, "KILL"]);
    let out = common::wait_within(child, Duration::from_secs(10));
    assert_eq!(
        out.status.code(),
        Some(137),
        "stderr: {}",
        text(&out.stderr)
    );
    rt.assert_gone(&id);
}

/// A container that exits at once must never leave `run` waiting (the lost-SIGCHLD race).
#[test]
fn run_of_instant_exits_never_hangs() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["true"]);
    for i in 0..60 {
        let id = format!("{}-{i}", unique_id("race"));
        let cmd = rt.command(&["run", "--bundle", bundle.path().to_str().unwrap(), &id]);
        let out = output_within(cmd, Duration::from_secs(10));
        assert!(out.status.success(), "run {i}: {}", text(&out.stderr));
    }
    assert!(rt.ids().is_empty(), "left: {:?}", rt.ids());
}

#[test]
fn run_forwards_signals_to_the_container() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&[
        "sh",
        "-c",
        "trap 'echo got-usr1; exit 9' USR1; echo ready; while true; do sleep 0.05; done",
    ]);
    let id = unique_id("fwd");
    let mut child = rt
        .command(&["run", "--bundle", bundle.path().to_str().unwrap(), &id])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    rt.wait_status(&id, "running");
    std::thread::sleep(Duration::from_millis(200));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::SIGUSR1,
    )
    .unwrap();
    child.stdin.take();
    let out = common::wait_within(child, Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(9), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "ready\ngot-usr1\n");
    rt.assert_gone(&id);
}

#[test]
fn create_start_state_delete_lifecycle() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["sh", "-c", "read line; echo done"]);
    let id = unique_id("life");
    // stdin comes from a FIFO we hold open so the process waits until we let it finish.
    let fifo = bundle.path().join("stdin");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let writer_path = fifo.clone();
    let writer = std::thread::spawn(move || {
        fs::OpenOptions::new()
            .write(true)
            .open(writer_path)
            .unwrap()
    });
    let mut cmd = rt.command(&["create", "--bundle", bundle.path().to_str().unwrap(), &id]);
    cmd.stdin(fs::File::open(&fifo).unwrap())
        .stdout(fs::File::create(bundle.path().join("stdout")).unwrap());
    let status = cmd.status().unwrap();
    assert!(status.success());
    let mut writer = writer.join().unwrap();

    let state = rt.state(&id);
    assert_eq!(state["status"], "created");
    assert_eq!(state["id"], Value::from(id.clone()));
    assert_eq!(
        state["bundle"],
        Value::from(bundle.path().to_str().unwrap())
    );
    let pid = state["pid"].as_i64().unwrap();
    assert!(
        pid > 0 && fs::metadata(format!("/proc/{pid}")).is_ok(),
        "init {pid} not alive"
    );

    rt.ok(&["start", &id]);
    assert_eq!(rt.status(&id), "running");
    // A second start of a running container is an error, as in runc; so is a plain delete.
    let err = rt.fails(&["start", &id]);
    assert!(err.contains("started already (it is running)"), "{err}");
    let err = rt.fails(&["delete", &id]);
    assert!(err.contains("it is running, not stopped"), "{err}");

    writeln!(writer, "go").unwrap();
    drop(writer);
    rt.wait_status(&id, "stopped");
    assert_eq!(rt.state(&id)["pid"], 0);
    assert_eq!(
        fs::read_to_string(bundle.path().join("stdout")).unwrap(),
        "done\n"
    );

    let err = rt.fails(&["start", &id]);
    assert!(err.contains("(it is stopped)"), "{err}");
    rt.ok(&["delete", &id]);
    rt.assert_gone(&id);
    rt.fails(&["state", &id]);
}

#[test]
fn pid_file_holds_the_init_pid() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["sleep", "30"]);
    let id = unique_id("pidf");
    let pid_file = bundle.path().join("init.pid");
    rt.created(&bundle, &id);
    rt.ok(&["delete", "--force", &id]);
    let (ok, err) = rt.create(&bundle, &id, &["--pid-file", pid_file.to_str().unwrap()]);
    assert!(ok, "{err}");
    let written: i64 = fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(Value::from(written), rt.state(&id)["pid"]);
    rt.ok(&["delete", "--force", &id]);
    rt.assert_gone(&id);
}

#[test]
fn kill_by_name_and_number_and_all() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&[
        "sh",
        "-c",
        "trap 'echo term; exit 0' TERM; while true; do sleep 0.05; done",
    ]);

    // The trap prints "term" for a signal by name, and for none named (SIGTERM, as with runc).
    for (prefix, signal) in [("killn", Some("SIGTERM")), ("killdef", None)] {
        let id = unique_id(prefix);
        rt.started(&bundle, &id);
        std::thread::sleep(Duration::from_millis(200));
        let mut args = vec!["kill", id.as_str()];
        args.extend(signal);
        rt.ok(&args);
        rt.wait_status(&id, "stopped");
        assert_eq!(
            fs::read_to_string(bundle.path().join("stdout")).unwrap(),
            "term\n",
            "kill {signal:?}"
        );
        // Signalling a stopped container is an error.
        rt.fails(&["kill", &id, "TERM"]);
        rt.ok(&["delete", &id]);
        rt.assert_gone(&id);
    }

    let by_number = unique_id("killnum");
    rt.created(&bundle, &by_number);
    rt.ok(&["start", &by_number]);
    rt.ok(&["kill", &by_number, "9"]);
    rt.wait_status(&by_number, "stopped");
    rt.ok(&["delete", &by_number]);

    let all = unique_id("killall");
    rt.created(&bundle, &all);
    rt.ok(&["start", &all]);
    rt.ok(&["kill", "--all", &all, "KILL"]);
    rt.wait_status(&all, "stopped");
    rt.ok(&["delete", &all]);

    rt.fails(&["kill", &all, "NOSUCHSIGNAL"]);
    for id in [by_number, all] {
        rt.assert_gone(&id);
    }
}

/// runc takes any signal number: 0 only asks whether the init is there, and realtime ones (podman
/// stops a systemd container with SIGRTMIN+3, sent as 37) reach the process. A stopped
/// container is "container not running", the words containerd reads as "already stopped".
#[test]
fn kill_takes_signal_zero_and_realtime_numbers() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&[
        "sh",
        "-c",
        "trap 'echo rtmin3; exit 0' 37; while true; do sleep 0.05; done",
    ]);
    let id = unique_id("killrt");
    rt.started(&bundle, &id);
    std::thread::sleep(Duration::from_millis(200));
    rt.ok(&["kill", &id, "0"]);
    assert_eq!(rt.status(&id), "running");
    rt.ok(&["kill", &id, "37"]);
    rt.wait_status(&id, "stopped");
    assert_eq!(
        fs::read_to_string(bundle.path().join("stdout")).unwrap(),
        "rtmin3\n"
    );
    for signal in ["0", "KILL"] {
        let err = rt.fails(&["kill", &id, signal]);
        assert!(err.contains("container not running"), "{err}");
    }
    let err = rt.fails(&["kill", &id, "65"]);
    assert!(err.contains("unknown signal \"65\""), "{err}");
    rt.ok(&["delete", &id]);
    rt.assert_gone(&id);
}

#[test]
fn delete_force_removes_running_and_tolerates_gone_containers() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["sleep", "60"]);
    let id = unique_id("delf");
    let pid = rt.started(&bundle, &id);
    // Without --force a running container stays.
    rt.fails(&["delete", &id]);
    assert_eq!(rt.status(&id), "running");
    rt.ok(&["delete", "--force", &id]);
    rt.assert_gone(&id);
    std::thread::sleep(Duration::from_millis(100));
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(
        stat.is_empty() || stat.contains(") Z "),
        "init {pid} still alive: {stat}"
    );
    // containerd deletes twice: the second, forced, must succeed although the container is gone.
    rt.ok(&["delete", "--force", &id]);
    let err = rt.fails(&["delete", &id]);
    assert!(err.contains(&id), "{err}");
}

#[test]
fn exec_argv_process_file_and_detach() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["sleep", "60"]);
    let id = unique_id("exec");
    rt.started(&bundle, &id);

    let out = rt.run(&["exec", &id, "sh", "-c", "echo inside $HOSTNAME; exit 5"]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "inside cdirun\n");

    // The containerd/podman form: a process.json and flags before the id.
    let process = serde_json::json!({
        "terminal": false, "user": {"uid": 0, "gid": 0}, "cwd": "/tmp",
        "env": ["PATH=/bin", "GREETING=hi"], "args": ["sh", "-c", "echo $GREETING from $(pwd)"]
    });
    let process_file = bundle.path().join("process.json");
    fs::write(&process_file, process.to_string()).unwrap();
    let out = rt.run(&["exec", "--process", process_file.to_str().unwrap(), &id]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hi from /tmp\n");

    let pid_file = bundle.path().join("exec.pid");
    let detached = serde_json::json!({"cwd": "/", "args": ["sleep", "30"], "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0}});
    fs::write(&process_file, detached.to_string()).unwrap();
    let mut cmd = rt.command(&[
        "exec",
        "--pid-file",
        pid_file.to_str().unwrap(),
        "--process",
        process_file.to_str().unwrap(),
        "--detach",
        &id,
    ]);
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    assert!(cmd.status().unwrap().success());
    let exec_pid: i32 = fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let ps: Vec<i32> = serde_json::from_str(&rt.ok(&["ps", "--format", "json", &id])).unwrap();
    assert!(ps.contains(&exec_pid), "exec pid {exec_pid} not in {ps:?}");

    rt.fails(&["exec", "no-such-container", "true"]);
    rt.ok(&["delete", "--force", &id]);
    rt.assert_gone(&id);
}

/// libcontainer leaves a notify socket per exec in the container's state dir; cdirun removes
/// them once each exec has started, without breaking execs that start at the same time.
#[test]
fn execs_leave_no_files_in_the_state_dir() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["sleep", "60"]);
    let id = unique_id("execfiles");
    rt.started(&bundle, &id);
    std::thread::scope(|scope| {
        for n in 0..6 {
            let (rt, id) = (&rt, &id);
            scope.spawn(move || {
                for _ in 0..4 {
                    let out = rt.run(&["exec", id, "sh", "-c", &format!("echo {n}")]);
                    assert!(out.status.success(), "{}", text(&out.stderr));
                    assert_eq!(text(&out.stdout), format!("{n}\n"));
                }
            });
        }
    });
    rt.fails(&["exec", &id, "/no/such/program"]);
    let left = rt.exec_leftovers(&id);
    assert!(left.is_empty(), "left in the state dir: {left:?}");
    rt.ok(&["delete", "--force", &id]);
    rt.assert_gone(&id);
}

/// An argv exec runs as the container's own process does (runc's rule): its user, extra groups,
/// cwd, rlimits and environment, with the flags laid over them.
#[test]
fn exec_argv_inherits_the_container_process() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["sleep", "60"]);
    bundle.edit(|spec| {
        let process = &mut spec["process"];
        process["user"] = serde_json::json!({"uid": 65534, "gid": 65534, "additionalGids": [7]});
        process["cwd"] = Value::from("/tmp");
        process["env"]
            .as_array_mut()
            .unwrap()
            .push(Value::from("FROM_SPEC=spec"));
        process["rlimits"] =
            serde_json::json!([{"type": "RLIMIT_NOFILE", "hard": 512, "soft": 512}]);
    });
    let id = unique_id("execinherit");
    rt.started(&bundle, &id);
    let show = "id; pwd; ulimit -n; echo $FROM_SPEC";

    let out = rt.run(&["exec", &id, "sh", "-c", show]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "uid=65534 gid=65534 groups=7\n/tmp\n512\nspec\n"
    );

    let out = rt.run(&[
        "exec",
        "--user",
        "0",
        "--additional-gids",
        "9",
        "--cwd",
        "/",
        "--env",
        "FROM_SPEC=flag",
        &id,
        "sh",
        "-c",
        show,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // --user without a gid keeps the container's gid; --additional-gids adds to its groups.
    assert_eq!(
        text(&out.stdout),
        "uid=0(root) gid=65534 groups=7,9\n/\n512\nflag\n"
    );

    // --cap raises a capability the container's process lacks (CAP_CHOWN is bit 0).
    let effective = |out: &std::process::Output| {
        let status = text(&out.stdout);
        let line = status
            .lines()
            .find(|l| l.starts_with("CapEff:"))
            .unwrap_or_else(|| panic!("{status}"))
            .to_owned();
        u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
    };
    let plain = rt.run(&["exec", "--user", "0:0", &id, "cat", "/proc/self/status"]);
    let raised = rt.run(&[
        "exec",
        "--user",
        "0:0",
        "--cap",
        "CAP_CHOWN",
        &id,
        "cat",
        "/proc/self/status",
    ]);
    assert_eq!(effective(&plain) & 1, 0);
    assert_eq!(effective(&raised) & 1, 1);

    rt.ok(&["delete", "--force", &id]);
    rt.assert_gone(&id);
}

/// An exec'd process runs under the container's seccomp filter, as runc's does (libcontainer
/// left it out), whether the process comes from argv or from a --process file.
#[test]
fn exec_runs_under_the_container_seccomp_filter() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["sleep", "60"]);
    bundle.edit(|spec| {
        spec["linux"]["seccomp"] = serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]
        });
    });
    let id = unique_id("execseccomp");
    rt.started(&bundle, &id);
    let probe = "grep Seccomp: /proc/self/status | tr -d '\t'; mkdir /tmp/x 2>/dev/null && echo made || echo refused";
    let want = "Seccomp:2\nrefused\n";
    assert_eq!(rt.ok(&["exec", &id, "sh", "-c", probe]), want);
    let process = bundle.path().join("probe.json");
    fs::write(
        &process,
        serde_json::json!({
            "cwd": "/", "args": ["sh", "-c", probe], "env": ["PATH=/bin"],
            "user": {"uid": 0, "gid": 0}
        })
        .to_string(),
    )
    .unwrap();
    assert_eq!(
        rt.ok(&["exec", "--process", process.to_str().unwrap(), &id]),
        want
    );
    rt.ok(&["delete", "--force", &id]);
    rt.assert_gone(&id);
}

/// libcontainer cannot join an exec'd process to the container's user namespace, so such an
/// exec would run as the host's root among the container's mounts: it is refused by name, and
/// the container keeps running.
#[test]
fn exec_into_a_container_with_its_own_user_namespace_is_refused() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["sleep", "60"]);
    bundle.edit(|spec| {
        let linux = &mut spec["linux"];
        linux["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"type": "user"}));
        let map = serde_json::json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        linux["uidMappings"] = map.clone();
        linux["gidMappings"] = map;
        // sysfs and the cgroup hierarchies cannot be mounted from a user namespace without
        // its own network and cgroup namespaces; this container needs neither.
        spec["mounts"]
            .as_array_mut()
            .unwrap()
            .retain(|m| m["type"] != "sysfs" && m["type"] != "cgroup");
    });
    let id = unique_id("execuserns");
    rt.started(&bundle, &id);
    let out = rt.run(&["exec", &id, "cat", "/proc/self/uid_map"]);
    assert_eq!(out.status.code(), Some(255), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(err.contains("user namespace"), "{err}");
    assert!(err.contains(&id), "{err}");
    assert_eq!(rt.status(&id), "running");
    rt.ok(&["delete", "--force", &id]);
    rt.assert_gone(&id);
}

/// runc's exec statuses: the process's own status when it ran, 255 when exec itself failed; a
/// bad --process file is named; a file without `user` runs as root, as runc reads it.
#[test]
fn exec_failures_exit_255_and_name_what_is_wrong() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["sleep", "60"]);
    let id = unique_id("execfail");
    rt.started(&bundle, &id);

    let status = |args: &[&str]| rt.run(args).status.code();
    assert_eq!(status(&["exec", &id, "sh", "-c", "exit 3"]), Some(3));
    assert_eq!(status(&["exec", "no-such-container", "true"]), Some(255));
    assert_eq!(status(&["exec", &id, "no-such-command"]), Some(255));
    assert_eq!(status(&["exec", &id]), Some(255));
    assert_eq!(
        status(&["exec", "--cwd", "relative", &id, "true"]),
        Some(255)
    );

    let missing = bundle.path().join("missing.json");
    let out = rt.run(&["exec", "--process", missing.to_str().unwrap(), &id]);
    assert_eq!(out.status.code(), Some(255));
    assert!(
        text(&out.stderr).contains(missing.to_str().unwrap()),
        "{}",
        text(&out.stderr)
    );

    let no_user = bundle.path().join("no-user.json");
    fs::write(
        &no_user,
        r#"{"cwd": "/", "args": ["id", "-u"], "env": ["PATH=/bin"]}"#,
    )
    .unwrap();
    let out = rt.run(&["exec", "--process", no_user.to_str().unwrap(), &id]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "0\n");

    // A detached terminal has nowhere to go without a console socket.
    let out = rt.run(&["exec", "--tty", "--detach", &id, "true"]);
    assert_eq!(out.status.code(), Some(255));
    assert!(
        text(&out.stderr).contains("--console-socket"),
        "{}",
        text(&out.stderr)
    );

    // The process file is gone once the process started.
    let left: Vec<_> = fs::read_dir(rt.root().join(&id))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("exec-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");

    rt.ok(&["delete", "--force", &id]);
    rt.assert_gone(&id);
}

/// HOME as runc sets it when the process env has none: the home of the uid in the container's
/// /etc/passwd, else `/` (a uid the image does not know); a HOME the client set is kept. For the
/// container's process and for exec'd ones alike.
#[test]
fn home_comes_from_the_image_passwd_or_is_the_root_dir() {
    let rt = Runtime::new();
    let home_of = |bundle: &Bundle, id: &str| {
        let out = rt.run(&["run", "--bundle", bundle.path().to_str().unwrap(), id]);
        assert!(out.status.success(), "{id}: {}", text(&out.stderr));
        rt.assert_gone(id);
        text(&out.stdout)
    };
    let show = ["sh", "-c", "env | grep '^HOME=' || echo 'HOME unset'"];
    let unknown = Bundle::new(&show);
    unknown.edit(|spec| spec["process"]["user"] = serde_json::json!({"uid": 4242, "gid": 4242}));
    assert_eq!(home_of(&unknown, &unique_id("home")), "HOME=/\n");
    let root = Bundle::new(&show);
    assert_eq!(home_of(&root, &unique_id("home")), "HOME=/root\n");
    let own = Bundle::new(&show);
    own.edit(|spec| {
        spec["process"]["user"] = serde_json::json!({"uid": 4242, "gid": 4242});
        spec["process"]["env"]
            .as_array_mut()
            .unwrap()
            .push(Value::from("HOME=/data"));
    });
    assert_eq!(home_of(&own, &unique_id("home")), "HOME=/data\n");

    let bundle = Bundle::new(&["sleep", "60"]);
    let id = unique_id("home");
    rt.started(&bundle, &id);
    for (user, want) in [("4242", "HOME=/\n"), ("0", "HOME=/root\n")] {
        let mut args = vec!["exec", "--user", user, &id];
        args.extend_from_slice(&show);
        let out = rt.run(&args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout), want, "exec --user {user}");
    }
    rt.ok(&["delete", "--force", &id]);
    rt.assert_gone(&id);
}

/// An image's NSS modules never run in the runtime's processes: libcontainer looks up a missing
/// HOME with getpwuid in the container's init, where glibc follows the image's nsswitch.conf and
/// loaded the module it names from the image before the exec, with cdirun's descriptors open.
/// The module here (built with gcc) leaves a file in /dev/shm when it is loaded; HOME still
/// comes from the image's /etc/passwd, for the init and for an exec.
#[test]
fn an_nss_module_in_the_image_never_loads_in_the_runtime() {
    let rt = Runtime::new();
    let show = [
        "sh",
        "-c",
        "echo HOME=$HOME; cat /dev/shm/nss-loaded 2>/dev/null || echo no module",
    ];
    let bundle = Bundle::new(&["sleep", "60"]);
    let rootfs = bundle.path().join("rootfs");
    let source = bundle.path().join("nss_evil.c");
    fs::write(
        &source,
        "#include <fcntl.h>\n#include <unistd.h>\n\
         __attribute__((constructor)) static void loaded(void) {\n\
         int fd = open(\"/dev/shm/nss-loaded\", O_WRONLY | O_CREAT | O_APPEND, 0644);\n\
         if (fd >= 0) { write(fd, \"module loaded\\n\", 14); close(fd); }\n}\n",
    )
    .unwrap();
    let multiarch = Command::new("gcc").arg("-print-multiarch").output();
    let multiarch =
        multiarch.expect("gcc is needed to build an NSS module (scripts/install-deps.sh)");
    let multiarch = text(&multiarch.stdout).trim().to_owned();
    for dir in [
        "lib".to_owned(),
        "lib64".to_owned(),
        format!("lib/{multiarch}"),
    ] {
        let dir = rootfs.join(dir);
        fs::create_dir_all(&dir).unwrap();
        let status = Command::new("gcc")
            .args(["-shared", "-fPIC", "-o"])
            .arg(dir.join("libnss_evil.so.2"))
            .arg(&source)
            .status()
            .unwrap();
        assert!(status.success(), "gcc failed");
    }
    fs::write(rootfs.join("etc/nsswitch.conf"), "passwd: evil files\n").unwrap();
    fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nu:x:1000:1000::/home/u:/bin/sh\n",
    )
    .unwrap();

    let id = unique_id("nss");
    let run = bundle.path().join("run");
    fs::create_dir_all(&run).unwrap();
    let config: Value =
        serde_json::from_slice(&fs::read(bundle.path().join("config.json")).unwrap()).unwrap();
    let mut once = config.clone();
    once["process"]["args"] = serde_json::json!(show);
    once["root"]["path"] = Value::from(rootfs.to_str().unwrap());
    fs::write(run.join("config.json"), once.to_string()).unwrap();
    let out = rt.run(&["run", "--bundle", run.to_str().unwrap(), &id]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "HOME=/root\nno module\n");
    rt.assert_gone(&id);

    let id = unique_id("nss");
    rt.started(&bundle, &id);
    for (user, want) in [("1000", "HOME=/home/u\n"), ("4242", "HOME=/\n")] {
        let mut args = vec!["exec", "--user", user, &id];
        args.extend_from_slice(&show);
        let out = rt.run(&args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(
            text(&out.stdout),
            format!("{want}no module\n"),
            "exec --user {user}"
        );
    }
    rt.ok(&["delete", "--force", &id]);
    rt.assert_gone(&id);
}

/// Socket-activation descriptors reach the container only when LISTEN_PID names cdirun itself,
/// as with runc; a stale LISTEN_FDS in a caller's environment leaks nothing.
#[test]
fn listen_fds_count_only_when_listen_pid_is_ours() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&[
        "sh",
        "-c",
        "[ -e /proc/self/fd/4 ] && echo fd4 || echo no-fd4; echo \"${LISTEN_FDS:-unset} ${LISTEN_PID:-unset}\"",
    ]);
    for (listen_pid, want) in [("$$", "fd4\n2 1\n"), ("1", "no-fd4\nunset unset\n")] {
        let id = unique_id("listenfds");
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!(
                "exec 3</dev/null 4</dev/null; LISTEN_PID={listen_pid} LISTEN_FDS=2 exec \"$@\""
            ))
            .arg("sh")
            .arg(cdirun_bin())
            .args(["--root", rt.root().to_str().unwrap(), "run", "--bundle"])
            .arg(bundle.path())
            .arg(&id)
            .stdin(Stdio::null());
        let out = output_within(cmd, Duration::from_secs(30));
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout), want, "LISTEN_PID={listen_pid}");
        rt.assert_gone(&id);
    }
}

/// Signals to a paused container: a SIGTERM waits in the frozen process and the container stays
/// paused (libcontainer recorded it stopped, then reported it running while still frozen); a
/// SIGKILL thaws it and it stops. To a created one: SIGTERM stops it, as it stops runc's init.
#[test]
fn signals_to_paused_and_created_containers_behave_as_with_runc() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["sleep", "60"]);
    let paused = unique_id("killpaused");
    rt.started(&bundle, &paused);
    rt.ok(&["pause", &paused]);
    rt.ok(&["kill", &paused, "TERM"]);
    assert_eq!(rt.status(&paused), "paused");
    rt.ok(&["kill", &paused, "KILL"]);
    rt.wait_status(&paused, "stopped");
    rt.ok(&["delete", &paused]);
    rt.assert_gone(&paused);

    let created = unique_id("killcreated");
    rt.created(&bundle, &created);
    rt.ok(&["kill", &created, "SIGTERM"]);
    rt.wait_status(&created, "stopped");
    rt.ok(&["delete", &created]);
    rt.assert_gone(&created);
}

#[test]
fn pause_and_resume_freeze_the_container() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["sleep", "60"]);
    let id = unique_id("pause");
    let pid = rt.started(&bundle, &id);
    rt.ok(&["pause", &id]);
    assert_eq!(rt.status(&id), "paused");
    let state_of = |pid: i64| fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    // A frozen task sleeps in the freezer; the cgroup says FROZEN.
    let freezer = fs::read_to_string(format!(
        "/sys/fs/cgroup/freezer{}/freezer.state",
        cgroup_of(pid, "freezer")
    ))
    .unwrap();
    assert_eq!(freezer.trim(), "FROZEN", "{}", state_of(pid));
    // runc's words: pause needs a running container, resume a paused one.
    let err = rt.fails(&["pause", &id]);
    assert!(
        err.contains("container not running (it is paused)"),
        "{err}"
    );
    rt.ok(&["resume", &id]);
    assert_eq!(rt.status(&id), "running");
    let err = rt.fails(&["resume", &id]);
    assert!(
        err.contains("container not paused (it is running)"),
        "{err}"
    );
    rt.ok(&["delete", "--force", &id]);
    rt.assert_gone(&id);
}

/// The cgroup path of `pid` in the v1 hierarchy holding `controller`.
fn cgroup_of(pid: i64, controller: &str) -> String {
    fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap()
        .lines()
        .find_map(|line| {
            let mut parts = line.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            controllers
                .split(',')
                .any(|c| c == controller)
                .then(|| path.to_owned())
        })
        .unwrap()
}

#[test]
fn ps_list_and_events_report_the_container() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["sleep", "60"]);
    let id = unique_id("ps");
    let pid = rt.started(&bundle, &id);

    let pids: Vec<i64> = serde_json::from_str(&rt.ok(&["ps", "--format", "json", &id])).unwrap();
    assert_eq!(pids, vec![pid]);
    let table = rt.ok(&["ps", &id]);
    assert!(table.lines().next().unwrap().contains("PID"), "{table}");
    assert!(
        table.lines().skip(1).any(|l| l.contains("sleep 60")),
        "{table}"
    );

    assert_eq!(rt.ok(&["list", "-q"]), format!("{id}\n"));
    let listed: Vec<Value> = serde_json::from_str(&rt.ok(&["list", "--format", "json"])).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], Value::from(id.clone()));
    assert_eq!(listed[0]["status"], "running");
    assert_eq!(listed[0]["pid"], Value::from(pid));
    // runc's state fields, rootfs among them, in state and list alike.
    let rootfs = bundle.path().join("rootfs");
    assert_eq!(listed[0]["rootfs"], Value::from(rootfs.to_str().unwrap()));
    assert_eq!(rt.state(&id)["rootfs"], listed[0]["rootfs"]);
    let short: Vec<Value> = serde_json::from_str(&rt.ok(&["list", "-f", "json"])).unwrap();
    assert_eq!(short.len(), 1);
    let table = rt.ok(&["list"]);
    let header = table.lines().next().unwrap();
    let columns: Vec<&str> = header.split_whitespace().collect();
    assert_eq!(
        columns,
        ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
    );
    // runc's tabwriter: a column is its widest cell plus three, at least twelve wide.
    let pid_at = (id.len() + 3).max(12);
    assert_eq!(header.find("PID"), Some(pid_at), "{table}");
    assert_eq!(header.find("STATUS"), Some(pid_at + 12), "{table}");
    assert!(table.lines().nth(1).unwrap().starts_with(&id), "{table}");

    let event: Value = serde_json::from_str(rt.ok(&["events", "--stats", &id]).trim()).unwrap();
    assert_eq!(event["type"], "stats");
    assert_eq!(event["id"], Value::from(id.clone()));
    assert!(
        event["data"]["memory"].is_object() && event["data"]["pids"].is_object(),
        "{event}"
    );

    rt.ok(&["delete", "--force", &id]);
    assert_eq!(rt.ok(&["list", "-q"]), "");
    assert_eq!(rt.ok(&["list", "--format", "json"]).trim(), "[]");
}

/// Regression: `events --interval 1s` was refused; runc takes a Go duration, sub-second too.
#[test]
fn events_repeats_at_a_go_duration_interval_until_the_container_goes() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["sleep", "60"]);
    let id = unique_id("evi");
    rt.started(&bundle, &id);
    let child = rt
        .command(&["events", "--interval", "200ms", &id])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    rt.ok(&["delete", "--force", &id]);
    let out = common::wait_within(child, Duration::from_secs(10));
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("invalid value"), "{stderr}");
    let events: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    // One at once, then one every 200 ms: five or six in 1.1 s (one with the 5 s default).
    assert!(events.len() >= 3, "{} events: {stderr}", events.len());
    assert!(
        events
            .iter()
            .all(|e| e["type"] == "stats" && e["id"] == id.as_str())
    );
    rt.assert_gone(&id);
}

#[test]
fn update_applies_resources_from_stdin_file_and_flags() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["sleep", "60"]);
    let id = unique_id("upd");
    let pid = rt.started(&bundle, &id);
    let pids_max = || {
        fs::read_to_string(format!(
            "/sys/fs/cgroup/pids{}/pids.max",
            cgroup_of(pid, "pids")
        ))
        .unwrap()
    };

    // containerd's form: JSON on stdin.
    let mut child = rt
        .command(&["update", "--resources", "-", &id])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"pids": {"limit": 42}}"#)
        .unwrap();
    let out = common::wait_within(child, Duration::from_secs(10));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(pids_max().trim(), "42");

    // podman's form: a file.
    let file = bundle.path().join("resources.json");
    fs::write(&file, r#"{"pids": {"limit": 77}}"#).unwrap();
    rt.ok(&["update", &format!("--resources={}", file.display()), &id]);
    assert_eq!(pids_max().trim(), "77");

    rt.ok(&["update", "--pids-limit", "99", &id]);
    assert_eq!(pids_max().trim(), "99");

    fs::write(&file, "{not json").unwrap();
    let err = rt.fails(&["update", "--resources", file.to_str().unwrap(), &id]);
    assert!(err.contains("resources.json"), "{err}");

    rt.ok(&["delete", "--force", &id]);
    rt.assert_gone(&id);
}

/// `explain` computes claims without taking or releasing any: run with the id of a live
/// container it must leave that container and its cgroup alone.
/// runc's update values: sizes with units, -1 for unlimited (memory, with its swap; CPU quota;
/// pids), landing in the container's cgroup; a stopped container is not updated.
#[test]
fn update_takes_runc_sizes_and_unlimited() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["sleep", "60"]);
    let id = unique_id("updunits");
    let pid = rt.started(&bundle, &id);
    let read = |controller: &str, file: &str| {
        fs::read_to_string(format!(
            "/sys/fs/cgroup/{controller}{}/{file}",
            cgroup_of(pid, controller)
        ))
        .unwrap()
        .trim()
        .to_owned()
    };
    rt.ok(&[
        "update",
        "--memory",
        "100m",
        "--memory-reservation",
        "50M",
        "--cpu-quota",
        "20000",
        "--pids-limit",
        "30",
        &id,
    ]);
    assert_eq!(read("memory", "memory.limit_in_bytes"), "104857600");
    assert_eq!(read("memory", "memory.soft_limit_in_bytes"), "52428800");
    assert_eq!(read("cpu", "cpu.cfs_quota_us"), "20000");
    assert_eq!(read("pids", "pids.max"), "30");

    rt.ok(&[
        "update",
        "--memory",
        "-1",
        "--cpu-quota",
        "-1",
        "--pids-limit",
        "-1",
        &id,
    ]);
    let unlimited: u64 = read("memory", "memory.limit_in_bytes").parse().unwrap();
    assert!(unlimited > 1 << 60, "memory limit {unlimited}");
    assert_eq!(read("cpu", "cpu.cfs_quota_us"), "-1");
    assert_eq!(read("pids", "pids.max"), "max");

    let err = rt.fails(&["update", "--memory", "12x", &id]);
    assert!(err.contains("12x"), "{err}");

    rt.ok(&["kill", &id, "KILL"]);
    rt.wait_status(&id, "stopped");
    let err = rt.fails(&["update", "--pids-limit", "10", &id]);
    assert!(err.contains("container not running"), "{err}");
    rt.ok(&["delete", &id]);
    rt.assert_gone(&id);
}

#[test]
fn explain_with_a_live_containers_id_leaves_it_running() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["sleep", "60"]);
    let id = unique_id("explain");
    let pid = rt.started(&bundle, &id);
    let cgroup_before = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();

    let other = Bundle::new(&["true"]);
    let shown = rt.ok(&[
        "explain",
        "--bundle",
        other.path().to_str().unwrap(),
        "--id",
        &id,
    ]);
    assert!(shown.contains("claims:"), "{shown}");

    assert_eq!(rt.status(&id), "running");
    assert_eq!(
        fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap(),
        cgroup_before
    );
    let pids: Vec<i64> = serde_json::from_str(&rt.ok(&["ps", "--format", "json", &id])).unwrap();
    assert_eq!(pids, vec![pid]);
    rt.ok(&["delete", "--force", &id]);
    rt.assert_gone(&id);
}

/// Regression: create wrote its edits (the cgroupsPath among them) into config.json, so a second
/// container from the same bundle inherited the first one's cgroup, and deleting either killed
/// both. Every create must start from the client's own config.
#[test]
fn containers_from_one_bundle_get_their_own_cgroups() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["sleep", "60"]);
    let client_config = fs::read(bundle.path().join("config.json")).unwrap();
    let (a, b) = (unique_id("reuse-a"), unique_id("reuse-b"));
    rt.created(&bundle, &a);
    rt.created(&bundle, &b);
    let cgroup = |id: &str| {
        let pid = rt.state(id)["pid"].as_i64().unwrap();
        fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap()
    };
    let (cgroup_a, cgroup_b) = (cgroup(&a), cgroup(&b));
    assert!(
        cgroup_a.contains(&a) && !cgroup_a.contains(&b),
        "{cgroup_a}"
    );
    assert!(
        cgroup_b.contains(&b) && !cgroup_b.contains(&a),
        "{cgroup_b}"
    );
    rt.ok(&["start", &b]);
    rt.ok(&["delete", "--force", &a]);
    assert_eq!(rt.status(&b), "running", "deleting {a} hurt {b}");
    rt.ok(&["delete", "--force", &b]);
    rt.assert_gone(&a);
    rt.assert_gone(&b);
    // The next create from the bundle still starts from the client's config.
    let c = unique_id("reuse-c");
    rt.created(&bundle, &c);
    assert!(cgroup(&c).contains(&c));
    rt.ok(&["delete", "--force", &c]);
    // A failed create puts the client's bytes back.
    bundle.edit(|spec| spec["process"]["args"] = serde_json::json!(["/bin/no-such-program"]));
    let failing_config = fs::read(bundle.path().join("config.json")).unwrap();
    assert_ne!(failing_config, client_config);
    let (ok, _) = rt.create(&bundle, &unique_id("reuse-d"), &[]);
    assert!(!ok);
    assert_eq!(
        fs::read(bundle.path().join("config.json")).unwrap(),
        failing_config
    );
}

/// libcontainer never applied `disableOOMKiller`; cdirun writes it to the v1 memory controller.
#[test]
fn disable_oom_killer_reaches_the_memory_cgroup() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["sleep", "60"]);
    bundle.edit(|spec| {
        spec["linux"]["resources"]["memory"] =
            serde_json::json!({"limit": 67108864, "disableOOMKiller": true});
    });
    let id = unique_id("oom");
    rt.created(&bundle, &id);
    let pid = rt.state(&id)["pid"].as_i64().unwrap();
    let control = fs::read_to_string(format!(
        "/sys/fs/cgroup/memory{}/memory.oom_control",
        cgroup_of(pid, "memory")
    ))
    .unwrap();
    assert!(
        control.lines().any(|l| l == "oom_kill_disable 1"),
        "{control}"
    );
    rt.ok(&["delete", "--force", &id]);
    rt.assert_gone(&id);
}

//! Bad input: each error is one clear line naming what is wrong, and leaves nothing behind.

mod common;

use std::fs;

use common::{Bundle, Runtime, cgroup_dirs_named, unique_id};
use serde_json::Value;

/// One line on stderr, without the program name (as runc's: clients prefix the runtime's name).
fn assert_one_line(err: &str) {
    assert_eq!(err.lines().count(), 1, "expected one line, got: {err:?}");
    assert!(!err.starts_with("cdirun: "), "{err}");
}

#[test]
fn missing_bundle_names_the_bundle_and_leaves_nothing() {
    let rt = Runtime::new();
    let id = unique_id("nobundle");
    let err = rt.fails(&["create", "--bundle", "/nonexistent/bundle-dir", &id]);
    assert_one_line(&err);
    assert!(err.contains("/nonexistent/bundle-dir"), "{err}");
    assert!(rt.ids().is_empty());
    rt.assert_gone(&id);
}

#[test]
fn malformed_config_names_file_and_position_and_leaves_nothing() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["true"]);
    let config = bundle.path().join("config.json");
    fs::write(
        &config,
        "{\n  \"ociVersion\": \"1.0.2\",\n  \"process\": {,\n}\n",
    )
    .unwrap();
    let id = unique_id("badjson");
    let (ok, err) = rt.create(&bundle, &id, &[]);
    assert!(!ok);
    assert_one_line(&err);
    assert!(err.contains(&format!("{}:3:", config.display())), "{err}");
    assert!(rt.ids().is_empty());
    rt.assert_gone(&id);
    // The bad file is left exactly as it was: cdirun never rewrote it.
    assert!(
        fs::read_to_string(&config)
            .unwrap()
            .contains("\"process\": {,")
    );
}

#[test]
fn invalid_spec_fails_create_and_leaves_no_state_or_cgroup() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["/bin/no-such-program"]);
    let id = unique_id("badprog");
    let (ok, err) = rt.create(&bundle, &id, &[]);
    assert!(!ok, "create of a missing program must fail");
    assert!(
        err.lines().last().unwrap().contains("/bin/no-such-program"),
        "{err}"
    );
    assert!(rt.ids().is_empty(), "left: {:?}", rt.ids());
    rt.assert_gone(&id);
}

/// Regression: Docker's `--privileged` on a host whose bounding set lacks a capability failed
/// with libcontainer's bare "failed syscall". A capability cdirun itself cannot have is refused
/// by name before anything is created; the same config works where cdirun has it.
#[test]
fn capabilities_outside_the_bounding_set_are_named() {
    use std::os::unix::process::CommandExt as _;
    const CAP_SYSLOG: libc::c_ulong = 34; // capability.h; the libc crate does not name it
    let rt = Runtime::new();
    let bundle = Bundle::new(&["true"]);
    bundle.edit(|spec| {
        let caps = serde_json::json!(["CAP_CHOWN", "CAP_SYSLOG"]);
        spec["process"]["capabilities"] = serde_json::json!({
            "bounding": caps, "effective": caps, "permitted": caps});
    });
    let id = unique_id("capbnd");
    let mut cmd = rt.command(&["create", "--bundle", bundle.path().to_str().unwrap(), &id]);
    // SAFETY: prctl(2) only changes the child's own bounding set; no allocation, no locks.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_CAPBSET_DROP, CAP_SYSLOG, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = common::output_within(cmd, std::time::Duration::from_secs(30));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "create with CAP_SYSLOG withheld succeeded"
    );
    assert_one_line(&err);
    assert!(
        err.contains("unable to apply caps: cdirun itself does not hold CAP_SYSLOG"),
        "{err}"
    );
    rt.assert_gone(&id);
    // With the capability in its bounding set the same config creates a container.
    let id = unique_id("capok");
    let (ok, err) = rt.create(&bundle, &id, &[]);
    assert!(ok, "{err}");
    rt.ok(&["delete", "--force", &id]);
}

/// An rlimit the init could not set is refused by name before anything is created; one that
/// raises a hard limit works where cdirun may raise it (CAP_SYS_RESOURCE), as with runc.
#[test]
fn rlimits_the_init_cannot_set_are_named() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["sh", "-c", "ulimit -Hn"]);
    let rlimit = |soft: u64, hard: u64| serde_json::json!([{"type": "RLIMIT_NOFILE", "soft": soft, "hard": hard}]);
    bundle.edit(|spec| spec["process"]["rlimits"] = rlimit(2048, 1024));
    let original = fs::read(bundle.path().join("config.json")).unwrap();
    let id = unique_id("rlimsoft");
    let (ok, err) = rt.create(&bundle, &id, &[]);
    assert!(!ok);
    assert_one_line(&err);
    assert!(
        err.contains("RLIMIT_NOFILE soft limit 2048 is above its hard limit 1024"),
        "{err}"
    );
    rt.assert_gone(&id);
    assert_eq!(
        fs::read(bundle.path().join("config.json")).unwrap(),
        original
    );

    let mut own = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only `own`.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut own) }, 0);
    let (own, above) = (own.rlim_max, own.rlim_max + 1);
    bundle.edit(|spec| spec["process"]["rlimits"] = rlimit(1024, above));
    let id = unique_id("rlimhard");
    let may_raise = caps::has_cap(
        None,
        caps::CapSet::Effective,
        caps::Capability::CAP_SYS_RESOURCE,
    )
    .unwrap();
    if may_raise {
        let out = rt.ok(&["run", "--bundle", bundle.path().to_str().unwrap(), &id]);
        assert_eq!(out.trim(), above.to_string());
    } else {
        let (ok, err) = rt.create(&bundle, &id, &[]);
        assert!(!ok);
        assert_one_line(&err);
        assert!(
            err.contains(&format!(
                "cannot raise the hard limit of RLIMIT_NOFILE to {above} (cdirun's is {own}) \
                 without CAP_SYS_RESOURCE"
            )),
            "{err}"
        );
    }
    rt.assert_gone(&id);

    // Up to cdirun's own hard limit needs no capability.
    bundle.edit(|spec| spec["process"]["rlimits"] = rlimit(1024, own));
    let id = unique_id("rlimown");
    let out = rt.ok(&["run", "--bundle", bundle.path().to_str().unwrap(), &id]);
    assert_eq!(out.trim(), own.to_string());
    rt.assert_gone(&id);
}

#[test]
fn failed_create_removes_the_cgroup_parents_it_made() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["/bin/no-such-program"]);
    let id = unique_id("badcg");
    let parent = unique_id("cdirun-test-parent");
    bundle.edit(|spec| spec["linux"]["cgroupsPath"] = Value::from(format!("/{parent}/{id}")));
    let (ok, _) = rt.create(&bundle, &id, &[]);
    assert!(!ok);
    assert!(
        cgroup_dirs_named(&parent).is_empty(),
        "parent cgroup left: {:?}",
        cgroup_dirs_named(&parent)
    );
    rt.assert_gone(&id);
}

#[test]
fn duplicate_id_is_refused_and_the_first_container_is_untouched() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["sleep", "60"]);
    let other = Bundle::new(&["true"]);
    let id = unique_id("dup");
    rt.created(&bundle, &id);
    let pid = rt.state(&id)["pid"].clone();
    let before = fs::read(other.path().join("config.json")).unwrap();
    let (ok, err) = rt.create(&other, &id, &[]);
    assert!(!ok);
    assert_one_line(&err);
    assert!(err.contains("already exists") && err.contains(&id), "{err}");
    assert_eq!(rt.state(&id)["pid"], pid);
    assert_eq!(rt.status(&id), "created");
    assert_eq!(
        fs::read(other.path().join("config.json")).unwrap(),
        before,
        "bundle of the refused create was rewritten"
    );
    rt.ok(&["delete", "--force", &id]);
    rt.assert_gone(&id);
}

#[test]
fn unknown_id_is_an_error_naming_it_for_every_verb() {
    let rt = Runtime::new();
    let id = unique_id("ghost");
    for args in [
        vec!["state", &id],
        vec!["start", &id],
        vec!["kill", &id, "TERM"],
        vec!["delete", &id],
        vec!["pause", &id],
        vec!["resume", &id],
        vec!["ps", &id],
        vec!["exec", &id, "true"],
        vec!["events", "--stats", &id],
        vec!["update", "--pids-limit", "10", &id],
    ] {
        let err = rt.fails(&args);
        assert_one_line(&err);
        assert!(err.contains(&format!("{id:?}")), "{args:?}: {err}");
    }
    assert!(rt.ids().is_empty());
}

/// An id is a name under `--root`, never a path: `..`, `/` and the like are refused by every verb
/// before it touches anything, as runc refuses them.
#[test]
fn ids_that_are_paths_are_refused_by_every_verb() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["sleep", "60"]);
    // A directory next to the root that `../<name>` would name.
    let victim = tempfile::Builder::new()
        .prefix("cdirun-victim-")
        .tempdir_in(rt.root().parent().unwrap())
        .unwrap();
    fs::write(victim.path().join("keep"), "").unwrap();
    let outside = format!(
        "../{}",
        victim.path().file_name().unwrap().to_str().unwrap()
    );
    let bundle_dir = bundle.path().to_str().unwrap();
    for id in [outside.as_str(), "..", ".", "a/b", "a b"] {
        for args in [
            vec!["delete", "--force", id],
            vec!["delete", id],
            vec!["create", "--bundle", bundle_dir, id],
            vec!["run", "--detach", "--bundle", bundle_dir, id],
            vec!["state", id],
            vec!["kill", id, "KILL"],
            vec!["exec", id, "true"],
        ] {
            let err = rt.fails(&args);
            assert_one_line(&err);
            assert!(
                err.contains(&format!("invalid container id {id:?}")),
                "{args:?}: {err}"
            );
        }
    }
    assert!(
        victim.path().join("keep").exists(),
        "delete removed {outside}"
    );
    assert!(rt.ids().is_empty(), "left: {:?}", rt.ids());
}

/// An empty id is refused as runc refuses it: one line naming the problem and status 1, for
/// every verb that takes an id (clap's usage text and status 2 are for malformed command lines).
#[test]
fn an_empty_id_is_one_line_and_status_one_for_every_verb() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["true"]);
    let bundle_dir = bundle.path().to_str().unwrap();
    for args in [
        vec!["create", "--bundle", bundle_dir, ""],
        vec!["run", "--detach", "--bundle", bundle_dir, ""],
        vec!["start", ""],
        vec!["state", ""],
        vec!["kill", "", "KILL"],
        vec!["delete", "--force", ""],
        vec!["exec", "", "true"],
        vec!["ps", ""],
        vec!["pause", ""],
        vec!["resume", ""],
        vec!["events", "--stats", ""],
        vec!["update", "--pids-limit", "10", ""],
    ] {
        let out = rt.run(&args);
        let err = common::text(&out.stderr);
        let want = if args[0] == "exec" { 255 } else { 1 };
        assert_eq!(out.status.code(), Some(want), "{args:?}: {err}");
        assert_one_line(&err);
        assert_eq!(err.trim_end(), "container id cannot be empty", "{args:?}");
    }
    assert!(rt.ids().is_empty(), "left: {:?}", rt.ids());
}

/// A failed cgroup write names the file once: the causes libcgroups repeats in its own text are
/// not printed twice.
#[test]
fn failed_update_names_the_cgroup_file_once() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["sleep", "60"]);
    let id = unique_id("updfail");
    rt.started(&bundle, &id);
    let err = rt.fails(&["update", "--cpuset-cpus", "9999", &id]);
    assert_one_line(&err);
    assert_eq!(err.matches("cpuset.cpus").count(), 1, "{err}");
    assert!(err.contains(&format!("{id:?}")), "{err}");
    rt.ok(&["delete", "--force", &id]);
    rt.assert_gone(&id);
}

#[test]
fn json_log_gets_the_error_as_its_last_line() {
    let rt = Runtime::new();
    let log_dir = tempfile::tempdir().unwrap();
    let log = log_dir.path().join("log.json");
    let id = unique_id("jsonlog");
    // containerd's shim prefix: --root, --log, --log-format json before the verb.
    let err = rt.fails(&[
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "state",
        &id,
    ]);
    let last = fs::read_to_string(&log)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .to_owned();
    let record: Value = serde_json::from_str(&last).unwrap();
    assert_eq!(record["level"], "error");
    let msg = record["msg"].as_str().unwrap();
    assert!(msg.contains(&id), "{msg}");
    assert_eq!(err.trim_end(), msg);
    assert!(record["time"].as_str().unwrap().contains('T'));
}

#[test]
fn text_log_is_logrus_shaped() {
    let rt = Runtime::new();
    let log_dir = tempfile::tempdir().unwrap();
    let log = log_dir.path().join("log.txt");
    rt.fails(&["--log", log.to_str().unwrap(), "start", "nope"]);
    let last = fs::read_to_string(&log)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .to_owned();
    assert!(
        last.starts_with("time=\"") && last.contains(" level=error msg=\""),
        "{last}"
    );
}

#[test]
fn bad_log_format_is_refused() {
    let rt = Runtime::new();
    let err = rt.fails(&["--log-format", "xml", "list"]);
    assert!(err.contains("xml"), "{err}");
}

/// cdirun run without CAP_SYS_RESOURCE, as on a host or under a service that lacks it: the
/// oom_score_adj case below fails for certain whatever this machine holds.
fn without_sys_resource(rt: &Runtime, args: &[&str]) -> std::process::Output {
    let mut cmd = std::process::Command::new("setpriv");
    cmd.args(["--bounding-set=-sys_resource", "--inh-caps=-sys_resource"])
        .arg(common::cdirun_bin())
        .arg("--root")
        .arg(rt.root())
        .args(args)
        .stdin(std::process::Stdio::null());
    common::output_within(cmd, std::time::Duration::from_secs(30))
}

#[test]
fn a_missing_rootfs_is_named() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["true"]);
    bundle.edit(|spec| spec["root"]["path"] = "no-such-rootfs".into());
    let id = unique_id("norootfs");
    let (ok, err) = rt.create(&bundle, &id, &[]);
    assert!(!ok);
    assert_one_line(&err);
    let path = bundle.path().join("no-such-rootfs");
    assert!(
        err.contains(&format!("invalid rootfs {}", path.display())),
        "{err}"
    );
    assert!(err.contains("No such file or directory"), "{err}");
    rt.assert_gone(&id);
}

/// libcontainer's init reports a failed mount as "failed to prepare rootfs"; the line names the
/// mount's destination and its source.
#[test]
fn a_failed_mount_names_the_mount_and_its_source() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["true"]);
    bundle.edit(|spec| {
        spec["mounts"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({
                "destination": "/data",
                "type": "bind",
                "source": "/nonexistent/mount-source",
                "options": ["rbind"],
            }))
    });
    let id = unique_id("badmount");
    let (ok, err) = rt.create(&bundle, &id, &[]);
    assert!(!ok);
    assert_one_line(&err);
    assert!(err.contains(r#"mount at "/data""#), "{err}");
    assert!(err.contains("/nonexistent/mount-source"), "{err}");
    assert!(err.contains("No such file or directory"), "{err}");
    assert!(!err.contains("failed to prepare rootfs"), "{err}");
    rt.assert_gone(&id);
}

/// The write to /proc/self/oom_score_adj fails in libcontainer with "io error"; the line carries
/// the file and the errno.
#[test]
fn a_refused_oom_score_adj_names_the_file() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["true"]);
    bundle.edit(|spec| spec["process"]["oomScoreAdj"] = (-500).into());
    let id = unique_id("oomadj");
    let out = without_sys_resource(
        &rt,
        &["run", "--bundle", bundle.path().to_str().unwrap(), &id],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_one_line(&err);
    assert!(err.contains("/proc/self/oom_score_adj"), "{err}");
    assert!(err.contains("Permission denied"), "{err}");
    rt.assert_gone(&id);
}

/// `exec --cwd` of a directory the container lacks: runc's words, the directory named, status
/// 255; a file where a directory is due is told apart.
#[test]
fn exec_into_a_missing_cwd_names_the_directory() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["sleep", "30"]);
    let id = unique_id("execcwd");
    rt.started(&bundle, &id);
    let out = rt.run(&["exec", "--cwd", "/no-such-dir", &id, "true"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(255), "{err}");
    assert_one_line(&err);
    assert!(
        err.contains(r#"chdir to cwd ("/no-such-dir") set in the exec process failed: no such file or directory"#),
        "{err}"
    );
    let err = rt.fails(&["exec", "--cwd", "/bin/busybox", &id, "true"]);
    assert!(err.contains("not a directory"), "{err}");
    // A directory the container has and the host lacks works; so does one only the container's
    // own processes can resolve.
    fs::create_dir(bundle.path().join("rootfs/only-here")).unwrap();
    assert_eq!(
        rt.ok(&["exec", "--cwd", "/only-here", &id, "sh", "-c", "echo $PWD"])
            .trim(),
        "/only-here"
    );
    let pwd = rt.ok(&[
        "exec",
        "--cwd",
        "/proc/self",
        &id,
        "sh",
        "-c",
        "cd -P . && echo $PWD",
    ]);
    assert!(pwd.trim().starts_with("/proc/"), "{pwd}");
    rt.ok(&["delete", "--force", &id]);
    rt.assert_gone(&id);
}

/// runtime-spec: a namespace type listed twice is an error (runc: "duplicated ns"); libcontainer
/// would take the last one.
#[test]
fn a_namespace_listed_twice_is_refused_and_leaves_nothing() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["true"]);
    bundle.edit(|spec| {
        let namespaces = spec["linux"]["namespaces"].as_array_mut().unwrap();
        namespaces.push(serde_json::json!({"type": "uts"}));
        namespaces.push(serde_json::json!({"type": "uts"}));
    });
    let original = fs::read(bundle.path().join("config.json")).unwrap();
    let id = unique_id("dupns");
    let (ok, err) = rt.create(&bundle, &id, &[]);
    assert!(!ok);
    assert_one_line(&err);
    assert!(err.contains("the uts namespace is listed twice"), "{err}");
    rt.assert_gone(&id);
    assert_eq!(
        fs::read(bundle.path().join("config.json")).unwrap(),
        original
    );
}

/// libcontainer writes state.json in place; a create killed mid-write leaves it empty. One
/// `delete --force` still removes the container: its process, cgroup and state dir.
#[test]
fn delete_force_cleans_up_a_container_whose_state_file_is_empty() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["sleep", "30"]);
    let id = unique_id("emptystate");
    rt.created(&bundle, &id);
    let pid = rt.state(&id)["pid"].as_i64().unwrap();
    fs::write(rt.root().join(&id).join("state.json"), "").unwrap();
    assert!(
        rt.fails(&["delete", &id]).contains("state"),
        "a plain delete still fails"
    );
    rt.ok(&["delete", "--force", &id]);
    rt.assert_gone(&id);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::path::Path::new(&format!("/proc/{pid}/stat")).exists()
        && !fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(
        stat.is_empty() || stat.contains(") Z "),
        "init {pid} still runs: {stat}"
    );
}

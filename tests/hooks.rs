//! hooks.d and cdirun-hook end to end: the real binaries, real busybox containers, definitions
//! in temp hooks dirs named by a temp config file.
//!
//! Needs root and busybox-static; without them every test fails saying what to install.

mod common;

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use common::{Bundle, Runtime, text, unique_id};
use serde_json::{Value, json};

/// cdirun-hook, built by the same cargo invocation as cdirun: `CDIRUN_HOOK_BIN`, else next to
/// the cdirun under test.
fn hook_bin() -> PathBuf {
    let path = match std::env::var_os("CDIRUN_HOOK_BIN") {
        Some(path) => PathBuf::from(path),
        None => common::cdirun_bin().with_file_name("cdirun-hook"),
    };
    assert!(
        path.exists(),
        "{} is missing: build the workspace (cargo build --workspace [--release])",
        path.display()
    );
    path
}

/// Hooks dirs and a config naming them, a private `--root` and a scratch dir for markers.
struct Setup {
    tmp: tempfile::TempDir,
    rt: Runtime,
}

impl Setup {
    /// Runs a `/bin/true` container that must succeed, with `--log`; returns the log.
    fn run_logged(&self) -> String {
        let bundle = Bundle::new(&["/bin/true"]);
        let id = unique_id("hk");
        let log = self.path("cdirun.log");
        let out = self.rt.run(&[
            "--log",
            log.to_str().unwrap(),
            "run",
            "--bundle",
            bundle.path().to_str().unwrap(),
            &id,
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        fs::read_to_string(&log).unwrap()
    }

    fn new(on_error: &str) -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("cdirun-hooks-")
            .tempdir()
            .unwrap();
        for sub in ["d0", "d1", "state", "marks"] {
            fs::create_dir_all(tmp.path().join(sub)).unwrap();
        }
        let config = tmp.path().join("config.toml");
        fs::write(
            &config,
            format!(
                "state-dir = {:?}\n[hooks]\ndirs = [{:?}, {:?}]\non-error = {on_error:?}\n",
                tmp.path().join("state"),
                tmp.path().join("d0"),
                tmp.path().join("d1"),
            ),
        )
        .unwrap();
        let mut rt = Runtime::new();
        rt.env
            .push(("CDIRUN_CONFIG".into(), config.to_str().unwrap().to_owned()));
        Setup { tmp, rt }
    }

    fn path(&self, sub: &str) -> PathBuf {
        self.tmp.path().join(sub)
    }

    /// Writes a definition into hooks dir `dir` (0 or 1).
    fn define(&self, dir: usize, name: &str, definition: Value) {
        fs::write(
            self.path(&format!("d{dir}")).join(name),
            serde_json::to_vec_pretty(&definition).unwrap(),
        )
        .unwrap();
    }

    /// A host hook that writes the OCI state it gets on stdin to `marks/<name>`.
    fn marker_hook(&self, name: &str) -> Value {
        let mark = self.path("marks").join(name);
        json!({"path": "/bin/sh", "args": ["sh", "-c", format!("cat > {}", mark.display())]})
    }

    fn marked(&self, name: &str) -> Option<Value> {
        let bytes = fs::read(self.path("marks").join(name)).ok()?;
        Some(serde_json::from_slice(&bytes).expect("a marker holds the OCI state"))
    }

    /// `run` in the foreground; returns (success, stdout, stderr).
    fn run(&self, bundle: &Bundle, id: &str) -> (bool, String, String) {
        let out = self
            .rt
            .run(&["run", "--bundle", bundle.path().to_str().unwrap(), id]);
        (out.status.success(), text(&out.stdout), text(&out.stderr))
    }
}

fn hook_definition(hook: Value, when: Value, stages: &[&str]) -> Value {
    json!({"version": "1.0.0", "hook": hook, "when": when, "stages": stages})
}

#[test]
fn matching_definitions_run_and_others_do_not() {
    let s = Setup::new("fail");
    s.define(
        0,
        "10-by-annotation.json",
        hook_definition(
            s.marker_hook("annotation"),
            json!({"annotations": {"^io\\.example/team$": "^ml-"}}),
            &["prestart"],
        ),
    );
    s.define(
        0,
        "20-by-command.json",
        hook_definition(
            s.marker_hook("command"),
            json!({"commands": ["^/bin/true$"]}),
            &["createRuntime"],
        ),
    );
    s.define(
        1,
        "30-other-command.json",
        hook_definition(
            s.marker_hook("other"),
            json!({"commands": ["^true$"]}),
            &["prestart"],
        ),
    );
    s.define(
        1,
        "40-and.json",
        hook_definition(
            s.marker_hook("and"),
            json!({"always": true, "hasBindMounts": true}),
            &["poststop"],
        ),
    );
    s.define(
        1,
        "50-legacy-any-of.json",
        json!({"hook": "/bin/sh",
               "arguments": ["-c", format!("cat > {}", s.path("marks/legacy").display())],
               "cmds": ["^/nomatch$"], "annotations": ["^ml-"], "stages": ["poststop"]}),
    );
    let bundle = Bundle::new(&["/bin/true"]);
    bundle.edit(|spec| spec["annotations"] = json!({"io.example/team": "ml-research"}));
    let id = unique_id("hk");
    let (ok, _, err) = s.run(&bundle, &id);
    assert!(ok, "run failed: {err}");

    let state = s
        .marked("annotation")
        .expect("annotation-matched hook did not run");
    assert_eq!(state["id"], id.as_str());
    assert_eq!(state["annotations"]["io.example/team"], "ml-research");
    assert!(state["pid"].as_i64().unwrap() > 0, "{state}");
    assert!(
        s.marked("command").is_some(),
        "command-matched hook did not run"
    );
    assert!(
        s.marked("legacy").is_some(),
        "legacy any-of hook did not run"
    );
    assert!(
        s.marked("other").is_none(),
        "args[0] is /bin/true, not true"
    );
    assert!(
        s.marked("and").is_none(),
        "no bind mounts: the AND must fail"
    );

    // The edited config shows the injected hooks in file-name order.
    let hooks = &bundle.config()["hooks"];
    assert_eq!(hooks["prestart"].as_array().unwrap().len(), 1);
    assert_eq!(hooks["createRuntime"].as_array().unwrap().len(), 1);
    assert_eq!(hooks["poststop"][0]["path"], "/bin/sh");
    assert_eq!(hooks["poststop"][0]["args"][0], "/bin/sh");
    s.rt.assert_gone(&id);
}

#[test]
fn a_later_dir_masks_the_same_file_name() {
    let s = Setup::new("fail");
    let always = json!({"always": true});
    s.define(
        0,
        "10-x.json",
        hook_definition(s.marker_hook("earlier"), always.clone(), &["prestart"]),
    );
    s.define(
        1,
        "10-x.json",
        hook_definition(s.marker_hook("later"), always, &["prestart"]),
    );
    let bundle = Bundle::new(&["/bin/true"]);
    let id = unique_id("hk");
    let (ok, _, err) = s.run(&bundle, &id);
    assert!(ok, "run failed: {err}");
    assert!(s.marked("later").is_some());
    assert!(s.marked("earlier").is_none(), "masked definition ran");
}

#[test]
fn broken_definition_fails_create_naming_file_and_stage_and_leaves_nothing() {
    let s = Setup::new("fail");
    s.define(
        1,
        "60-bad.json",
        hook_definition(s.marker_hook("bad"), json!({"always": true}), &["preStart"]),
    );
    let bundle = Bundle::new(&["/bin/true"]);
    let before = bundle.config();
    let id = unique_id("hk");
    let (ok, err) = s.rt.create(&bundle, &id, &[]);
    assert!(!ok, "create succeeded with a broken definition");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("\"preStart\""), "{err}");
    assert!(
        err.contains(&s.path("d1/60-bad.json").display().to_string()),
        "{err}"
    );
    assert_eq!(bundle.config(), before, "config.json was rewritten");
    s.rt.assert_gone(&id);
    assert!(s.rt.ids().is_empty());
}

#[test]
fn broken_definition_is_skipped_with_a_warning_when_configured() {
    let s = Setup::new("skip");
    s.define(
        0,
        "10-bad.json",
        json!({"version": "1.0.0", "hook": {"path": "/bin/sh"},
        "when": {"always": true, "command": ["x"]}, "stages": ["prestart"]}),
    );
    s.define(
        0,
        "20-good.json",
        hook_definition(
            s.marker_hook("good"),
            json!({"always": true}),
            &["prestart"],
        ),
    );
    let log = s.run_logged();
    assert!(s.marked("good").is_some());
    assert!(
        log.contains("10-bad.json") && log.contains("command"),
        "{log}"
    );
    assert!(log.contains("warn"), "{log}");
}

/// Regression: with on-error = "skip", a broken file in a later dir masked the valid
/// same-named file of an earlier dir, and its hook silently disappeared.
#[test]
fn a_broken_file_in_a_later_dir_leaves_the_earlier_one_in_effect_when_skipping() {
    let s = Setup::new("skip");
    s.define(
        0,
        "10-x.json",
        hook_definition(
            s.marker_hook("earlier"),
            json!({"always": true}),
            &["prestart"],
        ),
    );
    fs::write(s.path("d1").join("10-x.json"), "{half written").unwrap();
    let log = s.run_logged();
    assert!(
        s.marked("earlier").is_some(),
        "the earlier valid hook did not run"
    );
    let kept = format!("{} stays in effect", s.path("d0/10-x.json").display());
    assert!(
        log.contains(&s.path("d1/10-x.json").display().to_string()) && log.contains(&kept),
        "{log}"
    );
}

/// A definition running `cdirun-hook <args>` at createContainer for every container.
fn cdirun_hook(s: &Setup, name: &str, args: &[&str]) {
    cdirun_hook_at(s, name, "createContainer", args);
}

#[test]
fn symlinks_are_visible_inside_and_cannot_escape_the_rootfs() {
    let s = Setup::new("fail");
    let host_dir = s.path("host-only");
    fs::create_dir_all(&host_dir).unwrap();
    cdirun_hook(
        &s,
        "10-links.json",
        &[
            "symlinks",
            "--link",
            "../../../bin/busybox::/usr/local/bin/echo",
            "--link",
            "/etc/passwd::/opt/vendor/passwd",
            "--link",
            "target::/escape/pwned",
        ],
    );
    let bundle = Bundle::new(&[
        "sh",
        "-c",
        "readlink /usr/local/bin/echo; /usr/local/bin/echo via-link; head -c 4 /opt/vendor/passwd; echo; readlink /escape/pwned",
    ]);
    // An image symlink pointing at a host path: resolved inside the rootfs instead.
    let rootfs = bundle.path().join("rootfs");
    symlink(&host_dir, rootfs.join("escape")).unwrap();
    fs::create_dir_all(rootfs.join(host_dir.strip_prefix("/").unwrap())).unwrap();
    let id = unique_id("hk");
    let (ok, out, err) = s.run(&bundle, &id);
    assert!(ok, "run failed: {err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["../../../bin/busybox", "via-link", "root", "target"],
        "{out}"
    );
    assert!(
        fs::read_dir(&host_dir).unwrap().next().is_none(),
        "a symlink was created on the host"
    );
    s.rt.assert_gone(&id);
}

#[test]
fn symlink_with_dotdot_fails_create_clearly_and_leaves_nothing() {
    let s = Setup::new("fail");
    cdirun_hook(
        &s,
        "10-links.json",
        &["symlinks", "--link", "x::/usr/../../etc/evil"],
    );
    let bundle = Bundle::new(&["/bin/true"]);
    let id = unique_id("hk");
    let (ok, err) = s.rt.create(&bundle, &id, &[]);
    assert!(!ok, "create succeeded");
    assert!(
        err.contains("/usr/../../etc/evil") && err.contains(".."),
        "{err}"
    );
    assert!(!bundle.path().join("rootfs/etc/evil").exists());
    s.rt.assert_gone(&id);
}

fn write_script(s: &Setup, name: &str, body: &str) -> PathBuf {
    let path = s.path(name);
    fs::write(&path, body).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    path
}

#[test]
fn provision_runs_inside_before_the_process_and_its_output_is_logged() {
    let s = Setup::new("fail");
    let script = write_script(
        &s,
        "setup.sh",
        "echo provisioning $(hostname)\n\
         mkdir -p /srv/app && echo ready > /srv/app/state\n\
         echo pid-in-container=$$ >&2\n\
         if echo tamper >> /proc/self/fd/3 2>/dev/null; then echo script-writable; else echo script-read-only; fi\n",
    );
    cdirun_hook(
        &s,
        "10-provision.json",
        &[
            "provision",
            "--script",
            script.to_str().unwrap(),
            "--log",
            "/var/log/provision.log",
        ],
    );
    let bundle = Bundle::new(&["sh", "-c", "cat /srv/app/state; cat /var/log/provision.log"]);
    bundle.edit(|spec| spec["hostname"] = json!("hk-provisioned"));
    let id = unique_id("hk");
    let (ok, out, err) = s.run(&bundle, &id);
    assert!(ok, "run failed: {err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "ready", "{out}");
    // Ran in the container's UTS namespace, and pid namespace (a small pid).
    assert!(lines.contains(&"provisioning hk-provisioned"), "{out}");
    let pid_line = lines
        .iter()
        .find(|l| l.starts_with("pid-in-container="))
        .unwrap();
    let pid: u32 = pid_line["pid-in-container=".len()..].parse().unwrap();
    assert!(
        pid < 100,
        "provision ran outside the container's pid namespace: {pid}"
    );
    assert!(lines.contains(&"script-read-only"), "{out}");
    assert_eq!(fs::read_to_string(&script).unwrap().lines().count(), 4);
    s.rt.assert_gone(&id);
}

#[test]
fn failing_provision_aborts_with_the_scripts_error_and_leaves_nothing() {
    let s = Setup::new("fail");
    // With pipefail the failure in the pipeline's first command counts; set -e stops there.
    let script = write_script(
        &s,
        "setup.sh",
        "echo step-one\n\
         { echo 'mirror unreachable: setup broke' >&2; exit 7; } | cat\n\
         echo not-reached > /not-reached\n",
    );
    cdirun_hook(
        &s,
        "10-provision.json",
        &["provision", "--script", script.to_str().unwrap()],
    );
    let bundle = Bundle::new(&["/bin/true"]);
    let id = unique_id("hk");
    let (ok, err) = s.rt.create(&bundle, &id, &[]);
    assert!(!ok, "create succeeded with a failing provision script");
    assert!(err.contains("mirror unreachable: setup broke"), "{err}");
    assert!(err.contains("exit status 7"), "{err}");
    assert!(err.contains("step-one"), "{err}");
    assert!(!bundle.path().join("rootfs/not-reached").exists());
    s.rt.assert_gone(&id);
    assert!(s.rt.ids().is_empty());
}

#[test]
fn oversized_provision_script_is_refused() {
    let s = Setup::new("fail");
    let script = write_script(&s, "big.sh", &"echo x\n".repeat(100));
    cdirun_hook(
        &s,
        "10-provision.json",
        &[
            "provision",
            "--script",
            script.to_str().unwrap(),
            "--max-size",
            "64",
        ],
    );
    let bundle = Bundle::new(&["/bin/true"]);
    let id = unique_id("hk");
    let (ok, err) = s.rt.create(&bundle, &id, &[]);
    assert!(!ok);
    assert!(err.contains("larger than the limit of 64 bytes"), "{err}");
    s.rt.assert_gone(&id);
}

/// A real shared library, named by its SONAME, for ldconfig to cache.
fn some_host_library() -> PathBuf {
    for candidate in [
        "/lib/x86_64-linux-gnu/libz.so.1",
        "/usr/lib/x86_64-linux-gnu/libz.so.1",
        "/lib/x86_64-linux-gnu/libm.so.6",
    ] {
        if Path::new(candidate).exists() {
            return PathBuf::from(candidate);
        }
    }
    panic!("no host library to cache (apt-get install zlib1g)");
}

#[test]
fn ldcache_caches_a_bind_mounted_library_dir_with_the_images_ldconfig() {
    let ldconfig = Path::new("/sbin/ldconfig");
    assert!(ldconfig.exists(), "/sbin/ldconfig is missing (libc-bin)");
    let s = Setup::new("fail");
    // The injected library dir, as a CDI spec would bind-mount it.
    let libdir = s.path("vendor-lib");
    fs::create_dir_all(&libdir).unwrap();
    let lib = some_host_library();
    let soname = lib.file_name().unwrap().to_str().unwrap().to_owned();
    fs::copy(&lib, libdir.join(&soname)).unwrap();
    cdirun_hook(
        &s,
        "10-ldcache.json",
        &["ldcache", "--folder", "/opt/vendor/lib"],
    );
    let bundle = Bundle::new(&[
        "sh",
        "-c",
        "cat /etc/ld.so.conf.d/00-cdirun-*.conf; grep -c vendor/lib /etc/ld.so.cache",
    ]);
    let rootfs = bundle.path().join("rootfs");
    fs::create_dir_all(rootfs.join("sbin")).unwrap();
    // Debian's ldconfig is static: it runs in a busybox rootfs.
    fs::copy(ldconfig, rootfs.join("sbin/ldconfig")).unwrap();
    bundle.edit(|spec| {
        spec["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/opt/vendor/lib", "type": "bind",
            "source": libdir, "options": ["rbind", "ro"]
        }))
    });
    let id = unique_id("hk");
    let (ok, out, err) = s.run(&bundle, &id);
    assert!(ok, "run failed: {err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["/opt/vendor/lib", "1"],
        "{out}"
    );
    // The cache names the library by its path in the container.
    let cache = fs::read(rootfs.join("etc/ld.so.cache")).unwrap();
    let needle = format!("/opt/vendor/lib/{soname}");
    assert!(
        cache.windows(needle.len()).any(|w| w == needle.as_bytes()),
        "{needle} not in the cache"
    );
    s.rt.assert_gone(&id);
}

#[test]
fn ldcache_without_ldconfig_in_the_image_fails_clearly_and_leaves_nothing() {
    let s = Setup::new("fail");
    cdirun_hook(&s, "10-ldcache.json", &["ldcache", "--folder", "/usr/lib"]);
    let bundle = Bundle::new(&["/bin/true"]);
    let id = unique_id("hk");
    let (ok, err) = s.rt.create(&bundle, &id, &[]);
    assert!(!ok, "create succeeded without an ldconfig");
    assert!(err.contains("no ldconfig in the container rootfs"), "{err}");
    assert!(err.contains("/sbin/ldconfig"), "{err}");
    s.rt.assert_gone(&id);
}

#[test]
fn verbs_after_create_do_not_read_hooks_dirs() {
    let s = Setup::new("fail");
    s.define(
        0,
        "10-ok.json",
        hook_definition(s.marker_hook("ok"), json!({"always": true}), &["poststop"]),
    );
    let bundle = Bundle::new(&["sleep", "30"]);
    let id = unique_id("hk");
    s.rt.created(&bundle, &id);
    // A broken definition would fail any verb that loaded the dirs (on-error = fail).
    s.define(1, "20-broken.json", json!({"version": "1.0.0"}));
    s.rt.ok(&["start", &id]);
    s.rt.wait_status(&id, "running");
    s.rt.ok(&["state", &id]);
    s.rt.ok(&["list"]);
    s.rt.ok(&["kill", &id, "KILL"]);
    s.rt.wait_status(&id, "stopped");
    s.rt.ok(&["delete", &id]);
    assert!(
        s.marked("ok").is_some(),
        "the poststop hook injected at create did not run"
    );
    s.rt.assert_gone(&id);
    // And create does read them.
    let err =
        s.rt.create(&Bundle::new(&["/bin/true"]), &unique_id("hk"), &[])
            .1;
    assert!(err.contains("20-broken.json"), "{err}");
}

/// A definition running `cdirun-hook <args>` at `stage` for every container.
fn cdirun_hook_at(s: &Setup, name: &str, stage: &str, args: &[&str]) {
    let mut argv = vec!["cdirun-hook".to_owned()];
    argv.extend(args.iter().map(|a| a.to_string()));
    s.define(
        0,
        name,
        hook_definition(
            json!({"path": hook_bin(), "args": argv}),
            json!({"always": true}),
            &[stage],
        ),
    );
}

#[test]
fn ldcache_and_symlinks_also_work_from_the_runtime_namespaces() {
    let s = Setup::new("fail");
    cdirun_hook_at(
        &s,
        "10-links.json",
        "createRuntime",
        &["symlinks", "--link", "/bin/busybox::/opt/bb"],
    );
    cdirun_hook_at(
        &s,
        "20-ldcache.json",
        "prestart",
        &["ldcache", "--folder", "/opt/lib"],
    );
    // Only inside the container's mount namespace: a tmpfs the host does not see.
    let bundle = Bundle::new(&["sh", "-c", "readlink /opt/bb; cat /etc/ld.so.conf.d/*.conf"]);
    let rootfs = bundle.path().join("rootfs");
    fs::create_dir_all(rootfs.join("sbin")).unwrap();
    fs::copy("/sbin/ldconfig", rootfs.join("sbin/ldconfig")).unwrap();
    bundle.edit(|spec| {
        spec["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/opt", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid"]
        }))
    });
    let id = unique_id("hk");
    let (ok, out, err) = s.run(&bundle, &id);
    assert!(ok, "run failed: {err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["/bin/busybox", "/opt/lib"],
        "{out}"
    );
    assert!(
        !rootfs.join("opt/bb").exists(),
        "the link went to the host's view of /opt"
    );
    assert!(rootfs.join("etc/ld.so.cache").exists());
    s.rt.assert_gone(&id);
}

#[test]
fn provision_refuses_to_run_from_the_runtime_namespaces() {
    let s = Setup::new("fail");
    let script = write_script(&s, "setup.sh", "touch /provisioned\n");
    cdirun_hook_at(
        &s,
        "10-provision.json",
        "createRuntime",
        &["provision", "--script", script.to_str().unwrap()],
    );
    let bundle = Bundle::new(&["/bin/true"]);
    let id = unique_id("hk");
    let (ok, err) = s.rt.create(&bundle, &id, &[]);
    assert!(!ok, "create succeeded");
    assert!(err.contains("must be a createContainer hook"), "{err}");
    assert!(!bundle.path().join("rootfs/provisioned").exists());
    s.rt.assert_gone(&id);
}

/// A bundle running /bin/true whose config has `hooks` (the OCI `hooks` object).
fn bundle_with_hooks(hooks: Value) -> Bundle {
    let bundle = Bundle::new(&["/bin/true"]);
    bundle.edit(|spec| spec["hooks"] = hooks);
    bundle
}

fn failing_hook(message: &str, code: i32) -> Value {
    json!({"path": "/bin/sh", "args": ["sh", "-c", format!("echo {message} >&2; exit {code}")]})
}

/// Regression: a failed createRuntime hook gave only "failed hooks hook command exited with
/// non-zero exit code: 3", naming neither the stage nor the hook.
#[test]
fn a_failed_create_runtime_hook_is_named_with_its_exit_status() {
    let rt = Runtime::new();
    let bundle =
        bundle_with_hooks(json!({"createRuntime": [failing_hook("runtime-hook-broke", 3)]}));
    let id = unique_id("hkf");
    let (ok, err) = rt.create(&bundle, &id, &[]);
    assert!(!ok, "create succeeded with a failing hook");
    assert!(
        err.contains("error running createRuntime hook #0 (/bin/sh): exit status 3"),
        "{err}"
    );
    // The hook's own stderr passes through, just before the error line.
    assert!(err.contains("runtime-hook-broke"), "{err}");
    rt.assert_gone(&id);
}

/// A timeout narrows the suspects to the hooks that have one.
#[test]
fn a_timed_out_prestart_hook_is_named_with_its_timeout() {
    let rt = Runtime::new();
    let bundle = bundle_with_hooks(json!({
        "prestart": [{"path": "/bin/sh", "args": ["sh", "-c", "sleep 5"], "timeout": 1}],
        "createRuntime": [{"path": "/bin/true"}],
    }));
    let id = unique_id("hkf");
    let (ok, err) = rt.create(&bundle, &id, &[]);
    assert!(!ok, "create succeeded with a hook that timed out");
    assert!(
        err.contains("error running prestart hook #0 (/bin/sh): timed out after 1s"),
        "{err}"
    );
    rt.assert_gone(&id);
}

/// Regression: a failed createContainer hook gave only "error in executing process : failed to
/// run hooks". The init passes on no exit status, so the line names the hook and says so.
#[test]
fn a_failed_create_container_hook_is_named() {
    let rt = Runtime::new();
    let bundle = bundle_with_hooks(json!({
        "prestart": [{"path": "/bin/true"}],
        "createContainer": [failing_hook("container-hook-broke", 4)],
    }));
    let id = unique_id("hkf");
    let (ok, err) = rt.create(&bundle, &id, &[]);
    assert!(!ok, "create succeeded with a failing hook");
    assert!(
        err.contains("error running createContainer hook #0 (/bin/sh): "),
        "{err}"
    );
    assert!(err.contains("container-hook-broke"), "{err}");
    rt.assert_gone(&id);
}

//! Owned slices on this host, with the real binary and busybox containers (as root): placement
//! in every cgroup hierarchy, refusals that leave nothing behind, removal at delete, slice
//! limits and `events --stats` metrics.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};

use serde_json::{Value, json};

const CDIRUN: &str = env!("CARGO_BIN_EXE_cdirun");
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Tests share the host's slice directories and their cleanup: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());
static NEXT: AtomicU32 = AtomicU32::new(0);

/// Slice directories the tests may cause to exist; removed afterwards unless they were there.
const SLICES: &[&str] = &[
    "workload.slice",
    "workload.slice/workload-slclim.slice",
    "pact.slice",
    "pact.slice/pact-infra.slice",
    "pact.slice/pact-network.slice",
    "pact.slice/pact-gpu.slice",
    "pact.slice/pact-audit.slice",
];

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the slice tests create containers and cgroups: run them as root"
    );
}

fn unique(tag: &str) -> String {
    format!(
        "slc-{tag}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

/// Every cgroup and cgroup2 mount point, from mountinfo.
fn hierarchies() -> Vec<PathBuf> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mut found: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let fstype = right.split_whitespace().next()?;
            (fstype == "cgroup" || fstype == "cgroup2")
                .then(|| PathBuf::from(left.split_whitespace().nth(4).unwrap()))
        })
        .collect();
    found.dedup();
    assert!(
        found.len() > 1,
        "expected a v1 or hybrid host, found {found:?}"
    );
    found
}

/// Every directory below the cgroup mounts, relative to its mount (`memory/workload.slice/x`).
fn cgroup_dirs() -> BTreeSet<PathBuf> {
    fn walk(dir: &Path, base: &Path, out: &mut BTreeSet<PathBuf>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                let path = entry.path();
                out.insert(path.strip_prefix(base).unwrap().to_owned());
                walk(&path, base, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    for mount in hierarchies() {
        walk(&mount, Path::new(CGROUP_ROOT), &mut out);
    }
    out
}

/// Directories a test made, as opposed to those of other processes on the host.
fn ours(relative: &Path) -> bool {
    let text = relative.to_string_lossy();
    let below_mount: PathBuf = relative.components().skip(1).collect();
    text.contains("slc-")
        || text.contains("workload.slice-extra")
        || SLICES.iter().any(|s| below_mount == Path::new(s))
}

/// The state-dir (claims, the cgroup ledger) all bundles of this test process share.
fn state_dir() -> PathBuf {
    std::env::temp_dir().join(format!("cdirun-slices-state-{}", std::process::id()))
}

/// Holds the serial lock and removes, when dropped, the cgroup directories the test created.
struct Host {
    before: BTreeSet<PathBuf>,
    _serial: MutexGuard<'static, ()>,
}

impl Host {
    fn new() -> Self {
        require_root();
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        Self {
            before: cgroup_dirs(),
            _serial: serial,
        }
    }

    /// Directories of ours that appeared since the test began.
    fn new_dirs(&self) -> Vec<PathBuf> {
        cgroup_dirs()
            .into_iter()
            .filter(|d| !self.before.contains(d) && ours(d))
            .collect()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        // Tests run one at a time: the next one makes it again.
        let _ = fs::remove_dir_all(state_dir());
        let mut made = self.new_dirs();
        made.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for dir in made {
            let _ = fs::remove_dir(Path::new(CGROUP_ROOT).join(dir));
        }
    }
}

/// A temp dir with a busybox bundle, a `--root` and a config file.
struct Bundle {
    dir: tempfile::TempDir,
}

impl Bundle {
    fn new(config: &str, edit: impl FnOnce(&mut Value)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bundle/rootfs/bin");
        fs::create_dir_all(&bin).unwrap();
        fs::copy("/bin/busybox", bin.join("busybox")).unwrap();
        for applet in ["sh", "sleep", "cat", "true"] {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
        }
        // One state-dir for every bundle of this run (the cgroup ledger is node-wide across
        // --roots), not the host's default.
        let config = format!("state-dir = {:?}\n{config}", state_dir());
        fs::write(dir.path().join("config.toml"), config).unwrap();
        let bundle = Self { dir };
        let out = bundle.cdirun(&["spec", "--bundle", bundle.path().to_str().unwrap()]);
        assert!(out.status.success(), "spec: {}", stderr(&out));
        let file = bundle.path().join("config.json");
        let mut spec: Value = serde_json::from_slice(&fs::read(&file).unwrap()).unwrap();
        spec["process"]["args"] = json!(["sleep", "300"]);
        spec["process"]["terminal"] = json!(false);
        edit(&mut spec);
        fs::write(&file, serde_json::to_vec_pretty(&spec).unwrap()).unwrap();
        bundle
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("bundle")
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(CDIRUN);
        command
            .arg("--root")
            .arg(self.root())
            .args(args)
            .env("CDIRUN_CONFIG", self.dir.path().join("config.toml"));
        command
    }

    fn cdirun(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// `create` hands its stdio to the container (as runc does), so pipes would stay open
    /// until the container exits: its stdout goes nowhere and stderr to a file read back here.
    fn create(&self, id: &str) -> Output {
        let log = self.dir.path().join(format!("{id}.stderr"));
        let status = self
            .command(&["create", "--bundle", self.path().to_str().unwrap(), id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .status()
            .unwrap();
        Output {
            status,
            stdout: Vec::new(),
            stderr: fs::read(&log).unwrap(),
        }
    }

    fn pid(&self, id: &str) -> i32 {
        let out = self.cdirun(&["state", id]);
        assert!(out.status.success(), "state: {}", stderr(&out));
        let state: Value = serde_json::from_slice(&out.stdout).unwrap();
        state["pid"].as_i64().unwrap() as i32
    }

    fn delete(&self, id: &str) {
        let out = self.cdirun(&["delete", "--force", id]);
        assert!(out.status.success(), "delete: {}", stderr(&out));
    }
}

/// Deletes the container even when an assertion fails first.
struct Running<'a> {
    bundle: &'a Bundle,
    id: String,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let _ = self.bundle.cdirun(&["delete", "--force", &self.id]);
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `/proc/PID/cgroup` as (hierarchy field, path) pairs.
fn proc_cgroups(pid: i32) -> Vec<(String, String)> {
    fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap()
        .lines()
        .map(|line| {
            let mut parts = line.splitn(3, ':');
            let _id = parts.next();
            (
                parts.next().unwrap().to_owned(),
                parts.next().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Asserts the container's process is at `path` in every hierarchy, v1 and unified, and that
/// the directory exists under every mount.
fn assert_placed(pid: i32, path: &str) {
    let lines = proc_cgroups(pid);
    assert!(
        lines.iter().any(|(h, _)| h.is_empty()),
        "no cgroup2 line in {lines:?}"
    );
    assert!(
        lines.iter().any(|(h, _)| h == "memory"),
        "no v1 memory line in {lines:?}"
    );
    for (hierarchy, at) in &lines {
        assert_eq!(at, path, "hierarchy {hierarchy:?} in {lines:?}");
    }
    for mount in hierarchies() {
        let dir = mount.join(path.trim_start_matches('/'));
        assert!(dir.is_dir(), "{} missing", dir.display());
    }
}

fn assert_gone_everywhere(path: &str) {
    for mount in hierarchies() {
        let dir = mount.join(path.trim_start_matches('/'));
        assert!(!dir.exists(), "{} left after delete", dir.display());
    }
}

#[test]
fn podman_path_is_nested_in_the_owned_slice_everywhere_and_removed_at_delete() {
    let host = Host::new();
    let id = unique("pod");
    let client = format!("/slc-libpod_parent/libpod-{id}");
    let bundle = Bundle::new("", |spec| {
        spec["linux"]["cgroupsPath"] = json!(client);
        spec["linux"]["resources"]["memory"] = json!({ "limit": 67_108_864 });
    });
    let out = bundle.create(&id);
    assert!(out.status.success(), "create: {}", stderr(&out));
    let running = Running {
        bundle: &bundle,
        id: id.clone(),
    };
    let pid = bundle.pid(&id);
    let scope = format!("/workload.slice{client}");
    assert_placed(pid, &scope);

    let out = bundle.cdirun(&["start", &id]);
    assert!(out.status.success(), "start: {}", stderr(&out));

    // An exec'd process joins the same scope, the cgroup2 line included.
    let exec_pid_file = bundle.dir.path().join("exec.pid");
    let status = bundle
        .command(&[
            "exec",
            "--detach",
            "--pid-file",
            exec_pid_file.to_str().unwrap(),
            &id,
            "sleep",
            "300",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "exec failed");
    let exec_pid: i32 = fs::read_to_string(&exec_pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_placed(exec_pid, &scope);

    let out = bundle.cdirun(&["events", "--stats", &id]);
    assert!(out.status.success(), "events: {}", stderr(&out));
    let event: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(event["type"], "stats");
    assert_eq!(event["id"], id.as_str());
    let metrics = &event["data"]["scope"];
    assert_eq!(metrics["path"], scope.as_str(), "{event}");
    assert!(
        metrics["memory"]["current"].as_u64().unwrap() > 0,
        "{event}"
    );
    assert_eq!(metrics["memory"]["max"], 67_108_864, "{event}");
    assert!(
        metrics["cpu"]["usage_usec"].as_u64().unwrap() > 0,
        "{event}"
    );
    assert_eq!(metrics["pids"]["current"], 2, "{event}");
    // libcgroups' own object is still there for runc-shaped consumers.
    assert!(event["data"]["memory"].is_object(), "{event}");

    bundle.delete(&id);
    assert_gone_everywhere(&scope);
    assert!(!bundle.root().join(&id).exists());
    drop(running);
    drop(host);
}

#[test]
fn no_cgroups_path_gets_slice_and_id_and_pact_owner_gets_its_sub_slices() {
    let host = Host::new();
    let id = unique("plain");
    let bundle = Bundle::new("", |_| {});
    let out = bundle.create(&id);
    assert!(out.status.success(), "create: {}", stderr(&out));
    let running = Running {
        bundle: &bundle,
        id: id.clone(),
    };
    assert_placed(bundle.pid(&id), &format!("/workload.slice/{id}"));
    bundle.delete(&id);
    assert_gone_everywhere(&format!("/workload.slice/{id}"));
    drop(running);

    let id = unique("pact");
    let bundle = Bundle::new(
        "owner = \"pact\"\n[slices]\ndefault = \"pact-infra.slice\"\n",
        |spec| {
            spec["annotations"] = json!({ "io.cdirun.slice": "pact-gpu.slice" });
            spec["linux"]["cgroupsPath"] = json!(format!("/slc-ns/{id}"));
        },
    );
    let out = bundle.create(&id);
    assert!(out.status.success(), "create: {}", stderr(&out));
    let running = Running {
        bundle: &bundle,
        id: id.clone(),
    };
    let scope = format!("/pact.slice/pact-gpu.slice/slc-ns/{id}");
    assert_placed(bundle.pid(&id), &scope);
    for mount in hierarchies() {
        for sub in ["infra", "network", "gpu", "audit"] {
            let slice = mount.join(format!("pact.slice/pact-{sub}.slice"));
            assert!(slice.is_dir(), "{} missing", slice.display());
        }
    }
    bundle.delete(&id);
    assert_gone_everywhere(&scope);
    drop(running);
    drop(host);
}

#[test]
fn respected_prefix_is_used_as_sent() {
    let host = Host::new();
    let id = unique("resp");
    let client = format!("/slc-respect/{id}");
    let bundle = Bundle::new("[slices]\nrespect = [\"/slc-respect\"]\n", |spec| {
        spec["linux"]["cgroupsPath"] = json!(client);
    });
    let out = bundle.create(&id);
    assert!(out.status.success(), "create: {}", stderr(&out));
    let running = Running {
        bundle: &bundle,
        id: id.clone(),
    };
    assert_placed(bundle.pid(&id), &client);
    bundle.delete(&id);
    assert_gone_everywhere(&client);
    drop(running);
    drop(host);
}

#[test]
fn slice_limits_from_config_reach_the_v1_controllers() {
    let host = Host::new();
    let id = unique("lim");
    let config =
        "[slices.limits.\"workload-slclim.slice\"]\nmemory-max = 268435456\ncpu-weight = 200\n";
    let bundle = Bundle::new(config, |spec| {
        spec["annotations"] = json!({ "io.cdirun.slice": "workload-slclim.slice" });
    });
    let out = bundle.create(&id);
    assert!(out.status.success(), "create: {}", stderr(&out));
    let running = Running {
        bundle: &bundle,
        id: id.clone(),
    };
    let slice = Path::new(CGROUP_ROOT).join("memory/workload.slice/workload-slclim.slice");
    let read = |file: PathBuf| fs::read_to_string(file).unwrap().trim().to_owned();
    assert_eq!(read(slice.join("memory.limit_in_bytes")), "268435456");
    assert_eq!(
        read(Path::new(CGROUP_ROOT).join("cpu/workload.slice/workload-slclim.slice/cpu.shares")),
        // runc's weight -> shares mapping: 2 + (200 - 1) * 262142 / 9999
        "5219"
    );
    assert_placed(
        bundle.pid(&id),
        &format!("/workload.slice/workload-slclim.slice/{id}"),
    );
    bundle.delete(&id);
    drop(running);
    drop(host);
}

#[test]
fn refused_requests_leave_no_directory_and_no_state() {
    let host = Host::new();
    let slice_dirs_before: Vec<bool> = hierarchies()
        .iter()
        .map(|m| m.join("workload.slice").exists())
        .collect();
    // (annotation, cgroupsPath, words the error must contain)
    let cases: &[(Option<&str>, Option<&str>, &[&str])] = &[
        (Some("pact.slice"), None, &["/pact.slice", "\"pact\""]),
        (
            Some("pact-gpu.slice"),
            None,
            &["/pact.slice/pact-gpu.slice", "\"pact\""],
        ),
        (
            Some("workload.slice-extra"),
            None,
            &["/workload.slice-extra", "no owner"],
        ),
        (
            None,
            Some("/slc-x/../../pact.slice/slc-ref"),
            &["\"..\"", "/slc-x/../../pact.slice/slc-ref"],
        ),
        (Some("/"), None, &["asks for /", "no owner"]),
        (
            None,
            Some("/pact.slice/pact-audit.slice/slc-ref"),
            &["/pact.slice/pact-audit.slice/slc-ref", "\"pact\""],
        ),
        // Names of cgroup interface files, which libcontainer met as "Not a directory".
        (
            Some("workload.slice/cgroup.procs"),
            None,
            &["\"cgroup.procs\"", "interface file"],
        ),
        (
            Some("workload.slice/memory.limit_in_bytes"),
            None,
            &["\"memory.limit_in_bytes\"", "controller prefix"],
        ),
        (
            Some("workload.slice/tasks"),
            None,
            &["/workload.slice/tasks", "\"tasks\""],
        ),
        (
            None,
            Some("/slc-if/cpu.shares"),
            &["cgroupsPath", "\"cpu.shares\""],
        ),
    ];
    for (annotation, path, words) in cases {
        let id = unique("ref");
        let bundle = Bundle::new("", |spec| {
            if let Some(value) = annotation {
                spec["annotations"] = json!({ "io.cdirun.slice": value });
            }
            if let Some(path) = path {
                spec["linux"]["cgroupsPath"] = json!(path);
            }
        });
        let config_before = fs::read(bundle.path().join("config.json")).unwrap();
        let out = bundle.create(&id);
        assert!(
            !out.status.success(),
            "{annotation:?} {path:?} was accepted"
        );
        let err = stderr(&out);
        for word in *words {
            assert!(err.contains(word), "{err:?} lacks {word:?}");
        }
        assert!(!bundle.root().join(&id).exists(), "state dir left for {id}");
        assert_eq!(
            fs::read(bundle.path().join("config.json")).unwrap(),
            config_before,
            "bundle rewritten for a refused request"
        );
        let _ = bundle.cdirun(&["delete", "--force", &id]);
    }
    assert_eq!(host.new_dirs(), Vec::<PathBuf>::new());
    let slice_dirs_after: Vec<bool> = hierarchies()
        .iter()
        .map(|m| m.join("workload.slice").exists())
        .collect();
    assert_eq!(slice_dirs_after, slice_dirs_before);
    drop(host);
}

#[test]
fn failed_create_removes_the_scope_in_every_hierarchy() {
    let host = Host::new();
    let id = unique("fail");
    let bundle = Bundle::new("", |spec| {
        spec["linux"]["cgroupsPath"] = json!(format!("/slc-failns/{id}"));
        spec["process"]["args"] = json!(["/bin/slc-no-such-binary"]);
    });
    let out = bundle.create(&id);
    let _ = bundle.cdirun(&["delete", "--force", &id]);
    assert!(
        !out.status.success(),
        "create of a missing binary succeeded"
    );
    assert!(!bundle.root().join(&id).exists());
    let left: Vec<PathBuf> = host
        .new_dirs()
        .into_iter()
        .filter(|d| d.to_string_lossy().contains("slc-fail"))
        .collect();
    assert_eq!(left, Vec::<PathBuf>::new());
    drop(host);
}

/// Two containers never share a cgroup: delete kills whatever is left in a container's scope,
/// so a second container placed in the first one's scope would die with it. The second create
/// is refused by name, leaves nothing, and the first keeps running.
#[test]
fn a_scope_in_use_is_refused_and_its_container_survives() {
    let host = Host::new();
    let scope = format!("workload.slice/{}.scope", unique("shared"));
    let bundle = Bundle::new("", |spec| {
        spec["annotations"] = json!({ "io.cdirun.slice": scope });
    });
    let first = Running {
        bundle: &bundle,
        id: unique("first"),
    };
    let out = bundle.create(&first.id);
    assert!(out.status.success(), "create: {}", stderr(&out));
    let pid = bundle.pid(&first.id);

    let second = unique("second");
    let out = bundle.create(&second);
    assert!(!out.status.success(), "a second container joined {scope}");
    let err = stderr(&out);
    for word in [
        format!("/{scope}"),
        format!("{:?}", first.id),
        "is already the cgroup".into(),
    ] {
        assert!(err.contains(&word), "{err:?} lacks {word:?}");
    }
    assert!(!bundle.root().join(&second).exists(), "state dir left");
    assert!(
        Path::new(&format!("/proc/{pid}")).exists(),
        "the refused create killed the first container"
    );
    assert_placed(pid, &format!("/{scope}"));
    let state: Value =
        serde_json::from_slice(&bundle.cdirun(&["state", &first.id]).stdout).unwrap();
    assert_eq!(state["status"], "created");

    bundle.delete(&first.id);
    assert_gone_everywhere(&format!("/{scope}"));
    drop(first);
    assert_eq!(host.new_dirs(), Vec::<PathBuf>::new());
}

/// `--systemd-cgroup` where systemd does not run is refused as runc refuses it, before anything
/// exists; libcontainer's v1 manager would otherwise make a directory literally named
/// `workload.slice:cdirun:<id>` at the root of every hierarchy, outside every slice.
#[test]
fn systemd_driver_without_systemd_is_refused_and_leaves_nothing() {
    let host = Host::new();
    assert!(
        !Path::new("/run/systemd/system").exists(),
        "this test checks a host without systemd (as this project's test machines are)"
    );
    let bundle = Bundle::new("", |_| {});
    let id = unique("sd");
    let config_before = fs::read(bundle.path().join("config.json")).unwrap();
    let log = bundle.dir.path().join("sd.stderr");
    let status = bundle
        .command(&["--systemd-cgroup", "create", "--bundle"])
        .arg(bundle.path())
        .arg(&id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .status()
        .unwrap();
    let err = fs::read_to_string(&log).unwrap();
    assert!(!status.success(), "--systemd-cgroup create succeeded");
    for word in ["--systemd-cgroup", "systemd is not running", "cgroupfs"] {
        assert!(err.contains(word), "{err:?} lacks {word:?}");
    }
    assert!(!bundle.root().join(&id).exists(), "state dir left");
    assert_eq!(
        fs::read(bundle.path().join("config.json")).unwrap(),
        config_before
    );
    let literal: Vec<PathBuf> = cgroup_dirs()
        .into_iter()
        .filter(|d| d.to_string_lossy().contains(&id))
        .collect();
    assert_eq!(literal, Vec::<PathBuf>::new());
    assert_eq!(host.new_dirs(), Vec::<PathBuf>::new());
}

/// Makes `child` below the container cgroup `scope` in every hierarchy, as a nested runtime,
/// systemd in a container or a privileged workload's `mkdir` would.
fn make_nested(scope: &str, child: &str) {
    for mount in hierarchies() {
        let dir = mount.join(scope.trim_start_matches('/')).join(child);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    }
}

/// Waits (at most 10 s) for `child` to exit; true when it did.
fn exits(child: &mut std::process::Child) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

/// Cgroups made below a container's own (deepest first, with a process in one of them, in
/// v1 and in the cgroup2 mount) go with `delete --force`, as with runc: libcontainer alone
/// rmdirs only the container's cgroup, fails with "could not delete" and leaves the state.
#[test]
fn delete_force_removes_the_cgroups_made_below_the_container_and_their_processes() {
    let host = Host::new();
    let id = unique("nest");
    let scope = format!("/slc-nest/{id}");
    let bundle = Bundle::new("", |spec| {
        spec["linux"]["cgroupsPath"] = json!(scope);
    });
    let out = bundle.create(&id);
    assert!(out.status.success(), "create: {}", stderr(&out));
    let running = Running {
        bundle: &bundle,
        id: id.clone(),
    };
    let out = bundle.cdirun(&["start", &id]);
    assert!(out.status.success(), "start: {}", stderr(&out));
    let init = bundle.pid(&id);
    let scope = format!("/workload.slice{scope}");
    make_nested(&scope, "inner.slice/job.scope");
    make_nested(&scope, "other");
    let mut nested = Command::new("sleep").arg("300").spawn().unwrap();
    for mount in ["pids", "memory", "unified", "systemd"] {
        let procs = Path::new(CGROUP_ROOT)
            .join(mount)
            .join(scope.trim_start_matches('/'))
            .join("inner.slice/job.scope/cgroup.procs");
        fs::write(&procs, nested.id().to_string())
            .unwrap_or_else(|e| panic!("{}: {e}", procs.display()));
    }

    let out = bundle.cdirun(&["delete", "--force", &id]);
    assert!(out.status.success(), "delete --force: {}", stderr(&out));
    assert!(!bundle.root().join(&id).exists(), "state dir left");
    assert_gone_everywhere(&scope);
    assert!(
        exits(&mut nested),
        "the process in the nested cgroup survived"
    );
    // Gone, or a zombie its parent has yet to reap.
    let stat = fs::read_to_string(format!("/proc/{init}/stat")).unwrap_or_default();
    let state = stat.rsplit_once(") ").map(|(_, rest)| &rest[..1]);
    assert!(
        matches!(state, None | Some("Z")),
        "the container's init survived: {stat}"
    );
    drop(running);
    drop(host);
}

/// A create that fails after a hook made cgroups below the container's own (as a nested runtime
/// would) removes them with the container's: libcontainer's delete rmdirs only the container's
/// cgroup and would leave the scope, with its children, in every hierarchy.
#[test]
fn a_failed_create_removes_the_cgroups_a_hook_made_below_the_container() {
    let host = Host::new();
    let id = unique("nestf");
    let scope = format!("/workload.slice/slc-nest/{id}");
    let dirs: Vec<String> = hierarchies()
        .iter()
        .map(|m| format!("{}{scope}/hook/inner", m.display()))
        .collect();
    let bundle = Bundle::new("", |spec| {
        spec["linux"]["cgroupsPath"] = json!(format!("/slc-nest/{id}"));
        spec["hooks"] = json!({"createRuntime": [{
            "path": "/bin/sh",
            "args": ["sh", "-c", format!("mkdir -p {} && exit 7", dirs.join(" "))],
        }]});
    });
    let config_before = fs::read(bundle.path().join("config.json")).unwrap();
    let out = bundle.create(&id);
    assert!(
        !out.status.success(),
        "create with a failing hook succeeded"
    );
    assert!(stderr(&out).contains("createRuntime"), "{}", stderr(&out));
    assert!(!bundle.root().join(&id).exists(), "state dir left");
    assert_gone_everywhere(&scope);
    assert_eq!(
        fs::read(bundle.path().join("config.json")).unwrap(),
        config_before
    );
    assert_eq!(host.new_dirs(), Vec::<PathBuf>::new());
}

/// A stopped container's plain `delete` also takes the cgroups left below its own.
#[test]
fn delete_of_a_stopped_container_removes_the_cgroups_left_below_it() {
    let host = Host::new();
    let id = unique("nestst");
    let scope = format!("/slc-nest/{id}");
    let bundle = Bundle::new("", |spec| {
        spec["linux"]["cgroupsPath"] = json!(scope);
        spec["process"]["args"] = json!(["true"]);
    });
    let out = bundle.create(&id);
    assert!(out.status.success(), "create: {}", stderr(&out));
    let running = Running {
        bundle: &bundle,
        id: id.clone(),
    };
    let scope = format!("/workload.slice{scope}");
    make_nested(&scope, "left/behind");
    let out = bundle.cdirun(&["start", &id]);
    assert!(out.status.success(), "start: {}", stderr(&out));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let state: Value = serde_json::from_slice(&bundle.cdirun(&["state", &id]).stdout).unwrap();
        if state["status"] == "stopped" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never stopped: {state}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }

    let out = bundle.cdirun(&["delete", &id]);
    assert!(out.status.success(), "delete: {}", stderr(&out));
    assert!(!bundle.root().join(&id).exists(), "state dir left");
    assert_gone_everywhere(&scope);
    drop(running);
    drop(host);
}

/// A container's cgroup is never inside or around another live container's, whichever comes
/// first and whatever `--root` each has: delete of the outer one would kill the inner one.
/// The refusal names the other container, comes before anything is made, and the other
/// container keeps running.
#[test]
fn a_cgroup_inside_or_around_another_containers_is_refused_by_name() {
    let host = Host::new();
    let victim_bundle = Bundle::new("", |_| {});
    let victim = Running {
        bundle: &victim_bundle,
        id: unique("victim"),
    };
    let out = victim_bundle.create(&victim.id);
    assert!(out.status.success(), "create: {}", stderr(&out));
    let victim_pid = victim_bundle.pid(&victim.id);
    let victim_scope = format!("/workload.slice/{}", victim.id);

    let refused = |bundle: &Bundle, words: &[&str]| {
        let id = unique("nested");
        let config_before = fs::read(bundle.path().join("config.json")).unwrap();
        let dirs_before = cgroup_dirs();
        let out = bundle.create(&id);
        let err = stderr(&out);
        let _ = bundle.cdirun(&["delete", "--force", &id]);
        assert!(!out.status.success(), "{id} was placed: {words:?}");
        assert_eq!(err.trim().lines().count(), 1, "not one line: {err:?}");
        for word in words {
            assert!(err.contains(word), "{err:?} lacks {word:?}");
        }
        assert!(!bundle.root().join(&id).exists(), "state dir left for {id}");
        assert_eq!(
            fs::read(bundle.path().join("config.json")).unwrap(),
            config_before,
            "bundle rewritten for a refused request"
        );
        assert_eq!(cgroup_dirs(), dirs_before, "cgroup dirs made for {id}");
    };
    // Another --root (each bundle has its own), the annotation and the cgroupsPath ways in.
    let by_annotation = Bundle::new("", |spec| {
        spec["annotations"] = json!({ "io.cdirun.slice": format!("workload.slice/{}", victim.id) });
    });
    refused(
        &by_annotation,
        &[&victim_scope, "inside", &format!("{:?}", victim.id)],
    );
    let by_path = Bundle::new("", |spec| {
        spec["linux"]["cgroupsPath"] = json!(format!("{victim_scope}/inner"));
    });
    refused(
        &by_path,
        &[&victim_scope, "inside", &format!("{:?}", victim.id)],
    );
    // The same cgroup.
    let same = Bundle::new("", |spec| {
        spec["linux"]["cgroupsPath"] = json!(victim_scope);
    });
    refused(
        &same,
        &[&victim_scope, "already", &format!("{:?}", victim.id)],
    );

    // The other order: an inner container first, then one whose cgroup would hold it.
    let outer_path = format!("/slc-outer-{}", victim.id);
    let inner_bundle = Bundle::new("", |spec| {
        spec["linux"]["cgroupsPath"] = json!(format!("{outer_path}/inner"));
    });
    let inner = Running {
        bundle: &inner_bundle,
        id: unique("inner"),
    };
    let out = inner_bundle.create(&inner.id);
    assert!(out.status.success(), "create: {}", stderr(&out));
    let inner_pid = inner_bundle.pid(&inner.id);
    let around = Bundle::new("", |spec| {
        spec["linux"]["cgroupsPath"] = json!(outer_path);
    });
    refused(
        &around,
        &[
            &format!("/workload.slice{outer_path}/inner"),
            "would be around cgroup",
            &format!("{:?}", inner.id),
        ],
    );

    // Both survived every refusal, in their own cgroups.
    assert_placed(victim_pid, &victim_scope);
    assert_placed(inner_pid, &format!("/workload.slice{outer_path}/inner"));
    victim_bundle.delete(&victim.id);
    inner_bundle.delete(&inner.id);
    assert_gone_everywhere(&victim_scope);
    // A deleted container's cgroup is free again.
    let reuse = Bundle::new("", |spec| {
        spec["linux"]["cgroupsPath"] = json!(format!("{victim_scope}/inner"));
    });
    let again = Running {
        bundle: &reuse,
        id: unique("again"),
    };
    let out = reuse.create(&again.id);
    assert!(
        out.status.success(),
        "create after delete: {}",
        stderr(&out)
    );
    reuse.delete(&again.id);
    assert_gone_everywhere(&format!("{victim_scope}/inner"));
    drop((again, inner, victim));
    drop(host);
}

/// A cgroup with processes of its own that no cdirun container holds (another runtime's
/// container) is not a slice either: nesting a container in it is refused, naming its pids.
#[test]
fn a_cgroup_inside_a_foreign_process_cgroup_is_refused() {
    let host = Host::new();
    let foreign = format!("workload.slice/{}", unique("foreign"));
    make_nested("/", &foreign);
    // A new cpuset cgroup has no CPUs and takes no process until it gets its parent's.
    let cpuset = Path::new(CGROUP_ROOT).join("cpuset");
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let parent = fs::read_to_string(cpuset.join("workload.slice").join(file)).unwrap();
        fs::write(cpuset.join(&foreign).join(file), parent.trim()).unwrap();
    }
    /// Killed and reaped even when an assertion fails first (its cgroup can go then).
    struct Sleeper(std::process::Child);
    impl Drop for Sleeper {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut sleeper = Sleeper(Command::new("sleep").arg("300").spawn().unwrap());
    let sleeper_pid = sleeper.0.id();
    for mount in hierarchies() {
        let procs = mount.join(&foreign).join("cgroup.procs");
        fs::write(&procs, sleeper_pid.to_string())
            .unwrap_or_else(|e| panic!("{}: {e}", procs.display()));
    }
    let bundle = Bundle::new("", |spec| {
        spec["annotations"] = json!({ "io.cdirun.slice": foreign });
    });
    let id = unique("nested");
    let out = bundle.create(&id);
    let _ = bundle.cdirun(&["delete", "--force", &id]);
    let _ = sleeper.0.kill();
    let _ = sleeper.0.wait();
    assert!(!out.status.success(), "placed inside {foreign}");
    let err = stderr(&out);
    for word in [
        format!("/{foreign}"),
        sleeper_pid.to_string(),
        "would be inside".into(),
    ] {
        assert!(err.contains(&word), "{err:?} lacks {word:?}");
    }
    assert!(!bundle.root().join(&id).exists(), "state dir left");
    let made: Vec<PathBuf> = cgroup_dirs()
        .into_iter()
        .filter(|d| d.to_string_lossy().contains(&id))
        .collect();
    assert_eq!(made, Vec::<PathBuf>::new());
    drop(sleeper);
    drop(host);
}

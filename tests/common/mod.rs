//! Shared harness for the integration tests: real busybox bundles, a private `--root` per test,
//! the cdirun binary under test, and checks that nothing is left behind.
//!
//! Every test runs real containers and needs root and busybox-static; without them a test fails
//! with a message saying what to install, never passes silently.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fs;
use std::io::Read;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The binary under test: `CDIRUN_BIN` (the release binary the test command builds once), else
/// the one cargo built for this test run.
pub fn cdirun_bin() -> PathBuf {
    match std::env::var_os("CDIRUN_BIN") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(env!("CARGO_BIN_EXE_cdirun")),
    }
}

/// Fails the test unless it runs as root with busybox-static installed.
pub fn require_root_and_busybox() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "these tests run real containers: run them as root"
    );
    assert!(
        Path::new(BUSYBOX).exists(),
        "{BUSYBOX} is missing: apt-get install busybox-static"
    );
}

const BUSYBOX: &str = "/bin/busybox";

/// A container id unique to this process and call, with a readable prefix.
pub fn unique_id(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A bundle: temp dir with a busybox rootfs and a config.json from `cdirun spec`.
pub struct Bundle {
    pub dir: tempfile::TempDir,
}

impl Bundle {
    /// A bundle whose process runs `args`, without a terminal.
    pub fn new(args: &[&str]) -> Self {
        require_root_and_busybox();
        let dir = tempfile::Builder::new()
            .prefix("cdirun-bundle-")
            .tempdir()
            .unwrap();
        make_rootfs(&dir.path().join("rootfs"));
        let out = Command::new(cdirun_bin())
            .args(["spec", "--bundle"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cdirun spec failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let bundle = Bundle { dir };
        bundle.edit(|spec| {
            spec["process"]["terminal"] = Value::Bool(false);
            spec["process"]["args"] = args.iter().map(|a| Value::from(*a)).collect();
        });
        bundle
    }

    /// A bundle whose process runs `args` and whose config carries exactly `annotations`.
    pub fn with_annotations(args: &[&str], annotations: &[(&str, &str)]) -> Self {
        let bundle = Bundle::new(args);
        bundle.edit(|spec| {
            let map: serde_json::Map<String, Value> = annotations
                .iter()
                .map(|(k, v)| (k.to_string(), Value::from(*v)))
                .collect();
            spec["annotations"] = Value::Object(map);
        });
        bundle
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn config(&self) -> Value {
        serde_json::from_slice(&fs::read(self.path().join("config.json")).unwrap()).unwrap()
    }

    pub fn edit(&self, change: impl FnOnce(&mut Value)) {
        let mut spec = self.config();
        change(&mut spec);
        fs::write(
            self.path().join("config.json"),
            serde_json::to_vec_pretty(&spec).unwrap(),
        )
        .unwrap();
    }
}

/// A minimal busybox root filesystem: the static binary and a symlink per applet.
pub fn make_rootfs(rootfs: &Path) {
    for dir in ["bin", "proc", "sys", "dev", "tmp", "etc", "root"] {
        fs::create_dir_all(rootfs.join(dir)).unwrap();
    }
    fs::copy(BUSYBOX, rootfs.join("bin/busybox")).unwrap();
    let list = Command::new(BUSYBOX).arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            let _ = symlink("busybox", rootfs.join("bin").join(applet));
        }
    }
    fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    fs::write(rootfs.join("etc/group"), "root:x:0:\n").unwrap();
}

/// A private `--root` for one test. Dropping it force-deletes whatever it still holds.
pub struct Runtime {
    pub root: tempfile::TempDir,
    pub env: Vec<(String, String)>,
}

impl Runtime {
    pub fn new() -> Self {
        require_root_and_busybox();
        Runtime {
            root: tempfile::Builder::new()
                .prefix("cdirun-root-")
                .tempdir()
                .unwrap(),
            env: Vec::new(),
        }
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// A command for the binary with this runtime's `--root` and environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(cdirun_bin());
        cmd.arg("--root")
            .arg(self.root())
            .args(args)
            .stdin(Stdio::null());
        for (key, value) in &self.env {
            cmd.env(key, value);
        }
        cmd
    }

    /// Runs a verb to completion (bounded by a timeout) and returns its output.
    pub fn run(&self, args: &[&str]) -> Output {
        output_within(self.command(args), Duration::from_secs(30))
    }

    /// Runs a verb that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "cdirun {args:?} failed ({:?}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs a verb that must fail; returns its stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "cdirun {args:?} unexpectedly succeeded"
        );
        String::from_utf8(out.stderr).unwrap()
    }

    /// `create` with the container's stdio in files under the bundle (a detached container keeps
    /// cdirun's stdio, so pipes would stay open as long as it runs). Returns cdirun's exit status
    /// success and the stderr file's text so far.
    pub fn create(&self, bundle: &Bundle, id: &str, extra: &[&str]) -> (bool, String) {
        let bundle_arg = bundle.path().to_str().unwrap();
        let mut args = vec!["create", "--bundle", bundle_arg];
        args.extend_from_slice(extra);
        args.push(id);
        let mut cmd = self.command(&args);
        let out = fs::File::create(bundle.path().join("stdout")).unwrap();
        let err = fs::File::create(bundle.path().join("stderr")).unwrap();
        cmd.stdout(out).stderr(err);
        let mut child = cmd.spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "create {id} hung");
            std::thread::sleep(Duration::from_millis(5));
        };
        (
            status.success(),
            fs::read_to_string(bundle.path().join("stderr")).unwrap(),
        )
    }

    /// Creates a container that must come up in state `created`.
    pub fn created(&self, bundle: &Bundle, id: &str) {
        let (ok, err) = self.create(bundle, id, &[]);
        assert!(ok, "create {id} failed: {err}");
    }

    /// Creates and starts a container that must come up running; returns its init pid.
    pub fn started(&self, bundle: &Bundle, id: &str) -> i64 {
        self.created(bundle, id);
        self.ok(&["start", id]);
        self.state(id)["pid"].as_i64().unwrap()
    }

    pub fn state(&self, id: &str) -> Value {
        serde_json::from_str(&self.ok(&["state", id])).unwrap()
    }

    pub fn status(&self, id: &str) -> String {
        self.state(id)["status"].as_str().unwrap().to_owned()
    }

    /// Polls `state` until the container exists and reaches `status`.
    pub fn wait_status(&self, id: &str, status: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let current = || {
            let out = self.run(&["state", id]);
            let state: Option<Value> = serde_json::from_slice(&out.stdout).ok();
            state.and_then(|s| s["status"].as_str().map(str::to_owned))
        };
        while current().as_deref() != Some(status) {
            assert!(
                Instant::now() < deadline,
                "container {id} never reached {status}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Container ids with a state dir under this root.
    pub fn ids(&self) -> BTreeSet<String> {
        fs::read_dir(self.root())
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Asserts that no trace of `id` is left: no state dir, no cgroup dir in any hierarchy.
    /// libcontainer's per-exec files (`tenant-notify-*`, `tenant-tty-*`) in a container's state
    /// dir: cdirun removes them once an exec has started.
    pub fn exec_leftovers(&self, id: &str) -> Vec<String> {
        fs::read_dir(self.root().join(id))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with("tenant-"))
            .collect()
    }

    pub fn assert_gone(&self, id: &str) {
        assert!(
            !self.root().join(id).exists(),
            "state dir of {id} left in {}",
            self.root().display()
        );
        let left = cgroup_dirs_named(id);
        assert!(left.is_empty(), "cgroup dirs of {id} left: {left:?}");
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        for id in self.ids() {
            let _ = self.run(&["delete", "--force", &id]);
        }
    }
}

/// Runs `cmd`, killing it if it outlives `limit`; a hang fails the test instead of stalling it.
pub fn output_within(mut cmd: Command, limit: Duration) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().expect("cannot spawn cdirun");
    wait_within(child, limit)
}

pub fn wait_within(mut child: Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    // Drain the pipes on threads so a chatty child cannot block on a full pipe.
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let out_thread = std::thread::spawn(move || read_all(stdout.as_mut()));
    let err_thread = std::thread::spawn(move || read_all(stderr.as_mut()));
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("command did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Output {
        status,
        stdout: out_thread.join().unwrap(),
        stderr: err_thread.join().unwrap(),
    }
}

fn read_all(pipe: Option<&mut impl Read>) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Some(pipe) = pipe {
        let _ = pipe.read_to_end(&mut buf);
    }
    buf
}

/// Every cgroup hierarchy mounted on this host.
pub fn hierarchies() -> Vec<PathBuf> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let fstype = right.split_whitespace().next()?;
            (fstype == "cgroup" || fstype == "cgroup2")
                .then(|| PathBuf::from(left.split_whitespace().nth(4).unwrap()))
        })
        .collect()
}

/// Directories named `name` anywhere in any cgroup hierarchy.
pub fn cgroup_dirs_named(name: &str) -> Vec<PathBuf> {
    cgroup_dirs_where(|dir| dir == name)
}

/// Directories anywhere in any cgroup hierarchy whose name passes `wanted`.
pub fn cgroup_dirs_where(wanted: impl Fn(&std::ffi::OsStr) -> bool) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for root in hierarchies() {
        let mut stack = vec![root];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    let path = entry.path();
                    if wanted(&entry.file_name()) {
                        found.push(path.clone());
                    }
                    stack.push(path);
                }
            }
        }
    }
    found
}

/// Text of a process's output streams for assertion messages.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The receiving end of `--console-socket`: a listener that accepts one connection and takes
/// the pty master the runtime passes over it (SCM_RIGHTS), as conmon and the shim do.
pub struct ConsoleSocket {
    pub dir: tempfile::TempDir,
    receiver: Option<std::thread::JoinHandle<std::os::fd::OwnedFd>>,
}

impl ConsoleSocket {
    pub fn listen() -> Self {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        let dir = tempfile::tempdir().unwrap();
        let listener =
            std::os::unix::net::UnixListener::bind(dir.path().join("console.sock")).unwrap();
        let receiver = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut name = [0u8; 256];
            let mut iov = [std::io::IoSliceMut::new(&mut name)];
            let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
            let msg = nix::sys::socket::recvmsg::<()>(
                stream.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                nix::sys::socket::MsgFlags::empty(),
            )
            .unwrap();
            let fd = msg
                .cmsgs()
                .unwrap()
                .find_map(|c| match c {
                    nix::sys::socket::ControlMessageOwned::ScmRights(fds) => fds.first().copied(),
                    _ => None,
                })
                .expect("no fd passed over the console socket");
            // SAFETY: the fd was just received via SCM_RIGHTS and is owned by nobody else.
            unsafe { OwnedFd::from_raw_fd(fd) }
        });
        ConsoleSocket {
            dir,
            receiver: Some(receiver),
        }
    }

    pub fn path(&self) -> String {
        self.dir
            .path()
            .join("console.sock")
            .to_str()
            .unwrap()
            .to_owned()
    }

    /// The pty master, once the runtime has sent it.
    pub fn master(&mut self) -> fs::File {
        fs::File::from(
            self.receiver
                .take()
                .expect("master taken twice")
                .join()
                .unwrap(),
        )
    }
}

/// Reads `master` until its output contains `want` (or it closes, or 10 s pass); returns it all.
pub fn read_pty_until(master: &mut fs::File, want: &str) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    let deadline = Instant::now() + Duration::from_secs(10);
    while !String::from_utf8_lossy(&seen).contains(want) && Instant::now() < deadline {
        match master.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

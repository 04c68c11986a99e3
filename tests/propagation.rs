//! `linux.rootfsPropagation`: every value runc takes runs, the r-variants (podman's `rslave`)
//! included, and the container's `/` gets the propagation runc gives it; a value runc refuses
//! is refused by name before anything exists.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Bundle, Runtime, output_within, text, unique_id};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use serde_json::Value;

/// The rootfs bind-mounted on itself and made shared, as an image store on a shared mount is
/// (podman's, containerd's): only then do slave and shared show in the container. Unmounted
/// when dropped.
struct SharedRootfs(PathBuf);

impl SharedRootfs {
    fn new(rootfs: &Path) -> Self {
        mount(
            Some(rootfs),
            rootfs,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .unwrap();
        let shared = SharedRootfs(rootfs.to_owned());
        mount(
            None::<&str>,
            rootfs,
            None::<&str>,
            MsFlags::MS_SHARED,
            None::<&str>,
        )
        .unwrap();
        shared
    }

    /// The peer group of the mount on the host (`shared:N`).
    fn peer_group(&self) -> String {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let line = mountinfo
            .lines()
            .rfind(|line| line.split(' ').nth(4) == self.0.to_str())
            .expect("the rootfs bind mount is not in mountinfo");
        propagation(line)
            .into_iter()
            .find_map(|tag| tag.strip_prefix("shared:").map(str::to_owned))
            .expect("the rootfs bind mount is not shared")
    }
}

impl Drop for SharedRootfs {
    fn drop(&mut self) {
        let _ = umount2(&self.0, MntFlags::MNT_DETACH);
    }
}

/// The optional fields of a mountinfo line: `shared:N`, `master:N`, `unbindable`...
fn propagation(line: &str) -> Vec<String> {
    line.split(' ')
        .skip(6)
        .take_while(|field| *field != "-")
        .map(str::to_owned)
        .collect()
}

/// The propagation tags of `/` as the container's process sees it.
fn root_tags(stdout: &str) -> Vec<String> {
    let line = stdout
        .lines()
        .find(|line| line.split(' ').nth(4) == Some("/"))
        .unwrap_or_else(|| panic!("no / line in {stdout}"));
    propagation(line)
}

const PRINT_MOUNTINFO: [&str; 2] = ["cat", "/proc/self/mountinfo"];

fn set_propagation(bundle: &Bundle, value: &str) {
    bundle.edit(|spec| spec["linux"]["rootfsPropagation"] = Value::from(value));
}

/// `/`'s tags in a container of `bundle` that cdirun runs.
fn cdirun_root_tags(rt: &Runtime, bundle: &Bundle, value: &str) -> Vec<String> {
    let id = unique_id("prop");
    let out = rt.run(&["run", "--bundle", bundle.path().to_str().unwrap(), &id]);
    assert!(
        out.status.success(),
        "rootfsPropagation {value:?}: run failed: {}",
        text(&out.stderr)
    );
    rt.assert_gone(&id);
    root_tags(&text(&out.stdout))
}

/// `/`'s tags in a container of `bundle` that runc runs, if runc is installed (its own --root
/// in a temp dir; `run` deletes the container when it exits).
fn runc_root_tags(bundle: &Bundle) -> Option<Vec<String>> {
    let runc = Path::new("/usr/sbin/runc");
    if !runc.exists() {
        return None;
    }
    let root = tempfile::tempdir().unwrap();
    let id = unique_id("runc-prop");
    let mut cmd = Command::new(runc);
    cmd.arg("--root")
        .arg(root.path())
        .args(["run", "--bundle"])
        .arg(bundle.path())
        .arg(&id);
    let out = output_within(cmd, Duration::from_secs(30));
    assert!(out.status.success(), "runc run: {}", text(&out.stderr));
    Some(root_tags(&text(&out.stdout)))
}

#[test]
fn every_propagation_runc_takes_runs_and_root_gets_runcs_propagation() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&PRINT_MOUNTINFO);
    let rootfs = SharedRootfs::new(&bundle.path().join("rootfs"));
    let host_group = rootfs.peer_group();
    let slave_of_host = vec![format!("master:{host_group}")];
    let pristine = bundle.config();
    for (value, want) in [
        // runc 1.1.5 gives these very tags on this bundle (compared below where it agrees).
        ("rslave", Some(slave_of_host.clone())),
        ("rprivate", Some(vec![])),
        ("private", Some(vec![])),
        // libcontainer's `slave` is recursive (runc's rslave), and safer than runc's `slave`,
        // which leaves every mount but the host's `/` shared with the host.
        ("slave", Some(slave_of_host.clone())),
        // A peer group of the container's own, as runc gives since 1.2 (runc 1.1 left `/`
        // private: opencontainers/runc#1755).
        ("rshared", None),
        ("shared", None),
        ("unbindable", Some(vec!["unbindable".to_owned()])),
        ("runbindable", Some(vec!["unbindable".to_owned()])),
    ] {
        bundle.edit(|spec| *spec = pristine.clone());
        set_propagation(&bundle, value);
        if matches!(value, "rslave" | "rprivate" | "private") {
            // Before cdirun rewrites config.json with the name libcontainer knows.
            if let Some(runc) = runc_root_tags(&bundle) {
                assert_eq!(runc, want.clone().unwrap(), "runc with {value:?}");
            }
        }
        let got = cdirun_root_tags(&rt, &bundle, value);
        match want {
            Some(want) => assert_eq!(got, want, "rootfsPropagation {value:?}"),
            None => {
                assert_eq!(got.len(), 1, "rootfsPropagation {value:?}: {got:?}");
                let group = got[0].strip_prefix("shared:");
                assert!(
                    group.is_some_and(|g| g != host_group),
                    "rootfsPropagation {value:?}: / is {got:?}, not shared in a group of its own"
                );
            }
        }
    }
    drop(rootfs);
}

#[test]
fn a_propagation_runc_refuses_is_refused_by_name_before_anything_exists() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&PRINT_MOUNTINFO);
    for value in ["rslaves", "Shared", "master"] {
        set_propagation(&bundle, value);
        let before = fs::read(bundle.path().join("config.json")).unwrap();
        let id = unique_id("badprop");
        let (ok, err) = rt.create(&bundle, &id, &[]);
        assert!(!ok, "rootfsPropagation {value:?} was taken");
        assert!(err.contains("linux.rootfsPropagation"), "{err}");
        assert!(err.contains(&format!("{value:?}")), "{err}");
        assert!(!err.contains("failed to prepare rootfs"), "{err}");
        rt.assert_gone(&id);
        assert_eq!(
            fs::read(bundle.path().join("config.json")).unwrap(),
            before,
            "config.json was rewritten"
        );
    }
}

//! What real clients read from cdirun beyond exit statuses: the wording of a command that cannot
//! be run. podman maps runc's "no such file or directory" / "executable file not found in" to exit
//! status 127 and "permission denied" to 126; the checks here pin runc's words and runc's rules
//! (an absolute command needs no PATH; any execute bit will do).

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use common::{Bundle, Runtime, text, unique_id};
use serde_json::Value;

/// Runs a bundle whose process is `args`; returns (exit code, stderr).
fn run(rt: &Runtime, bundle: &Bundle, prefix: &str) -> (Option<i32>, String) {
    let id = unique_id(prefix);
    let out = rt.run(&["run", "--bundle", bundle.path().to_str().unwrap(), &id]);
    rt.assert_gone(&id);
    (out.status.code(), text(&out.stderr))
}

#[test]
fn missing_absolute_command_is_reported_in_runc_words() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["/nonexistent"]);
    let (code, stderr) = run(&rt, &bundle, "enoent");
    assert_ne!(code, Some(0));
    assert!(
        stderr.contains(r#"exec: "/nonexistent": stat /nonexistent: no such file or directory"#),
        "{stderr}"
    );
}

#[test]
fn command_not_in_path_is_reported_in_runc_words() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["no-such-command"]);
    let (code, stderr) = run(&rt, &bundle, "notfound");
    assert_ne!(code, Some(0));
    assert!(
        stderr.contains(r#"exec: "no-such-command": executable file not found in $PATH"#),
        "{stderr}"
    );
}

#[test]
fn non_executable_command_is_permission_denied() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["/etc/passwd"]);
    let (code, stderr) = run(&rt, &bundle, "eacces");
    assert_ne!(code, Some(0));
    assert!(
        stderr.contains(r#"exec: "/etc/passwd": permission denied"#),
        "{stderr}"
    );
}

/// Regression: libcontainer refused every command of a process without PATH (images without an
/// Env, some CRI sandboxes); runc runs an absolute path without one.
#[test]
fn absolute_command_runs_without_path() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["/bin/sh", "-c", "exit 7"]);
    bundle.edit(|spec| {
        spec["process"]["env"] = Value::Array(vec!["TERM=xterm".into()]);
    });
    let (code, stderr) = run(&rt, &bundle, "nopath");
    assert_eq!(code, Some(7), "{stderr}");
}

/// Regression: libcontainer wanted the others-execute bit; runc runs an owner-only executable.
#[test]
fn owner_only_executable_runs() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["/bin/mine"]);
    let script = bundle.path().join("rootfs/bin/mine");
    fs::write(&script, "#!/bin/sh\nexit 6\n").unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o700)).unwrap();
    let (code, stderr) = run(&rt, &bundle, "owner");
    assert_eq!(code, Some(6), "{stderr}");
}

#[test]
fn exec_of_a_missing_command_is_reported_in_runc_words() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["sleep", "60"]);
    let id = unique_id("execmiss");
    rt.started(&bundle, &id);
    let stderr = rt.fails(&["exec", &id, "/nonexistent"]);
    assert!(
        stderr.contains(r#"exec: "/nonexistent": stat /nonexistent: no such file or directory"#),
        "{stderr}"
    );
    let stderr = rt.fails(&["exec", &id, "no-such-command"]);
    assert!(
        stderr.contains("executable file not found in $PATH"),
        "{stderr}"
    );
    rt.ok(&["delete", "--force", &id]);
    rt.assert_gone(&id);
}

/// podman's `--tmpfs` and `--read-only` mounts carry runc's `tmpcopyup` option (libcontainer
/// passed it to the kernel as tmpfs data and failed the create). As with runc, the new tmpfs
/// starts with the image's files at the mount point (modes and owners kept) and with the mode of
/// the directory it covers; a read-only one is read-only once filled; it is a tmpfs, writable.
#[test]
fn tmpcopyup_fills_the_tmpfs_with_the_image_files() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&[
        "sh",
        "-c",
        "grep -q ' /scratch tmpfs ' /proc/mounts && touch /scratch/new && ls -A /scratch; \
         stat -c '%a' /scratch; cat /scratch/sub/file; stat -c '%u:%g %a' /scratch/sub/file; \
         cat /ro/f; touch /ro/x 2>/dev/null || echo ro",
    ]);
    let rootfs = bundle.path().join("rootfs");
    fs::create_dir_all(rootfs.join("scratch/sub")).unwrap();
    fs::write(rootfs.join("scratch/sub/file"), "image\n").unwrap();
    std::os::unix::fs::chown(rootfs.join("scratch/sub/file"), Some(5), Some(6)).unwrap();
    fs::set_permissions(
        rootfs.join("scratch/sub/file"),
        fs::Permissions::from_mode(0o604),
    )
    .unwrap();
    fs::set_permissions(rootfs.join("scratch"), fs::Permissions::from_mode(0o750)).unwrap();
    fs::create_dir_all(rootfs.join("ro")).unwrap();
    fs::write(rootfs.join("ro/f"), "in ro\n").unwrap();
    bundle.edit(|spec| {
        spec["root"]["readonly"] = Value::Bool(true);
        let mounts = spec["mounts"].as_array_mut().unwrap();
        mounts.push(serde_json::json!({
            "destination": "/scratch",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["rw", "rprivate", "nosuid", "nodev", "tmpcopyup"]
        }));
        mounts.push(serde_json::json!({
            "destination": "/ro",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["ro", "tmpcopyup"]
        }));
    });
    let id = unique_id("tmpcopyup");
    let out = rt.run(&["run", "--bundle", bundle.path().to_str().unwrap(), &id]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "new\nsub\n750\nimage\n5:6 604\nin ro\nro\n"
    );
    rt.assert_gone(&id);
}

/// runc brings up `lo` in a network namespace it creates (podman `--network none`, a pod's infra
/// container, a plain `ctr run`); libcontainer left it down, so nothing could use 127.0.0.1.
#[test]
fn loopback_is_up_in_a_new_network_namespace() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["sh", "-c", "ip -o link show lo | grep -o '<[^>]*>'"]);
    let namespaces = bundle.config()["linux"]["namespaces"].clone();
    assert!(
        namespaces
            .as_array()
            .unwrap()
            .iter()
            .any(|ns| ns["type"] == "network"),
        "the bundle must ask for a network namespace: {namespaces}"
    );
    let id = unique_id("loopback");
    let out = rt.run(&["run", "--bundle", bundle.path().to_str().unwrap(), &id]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "<LOOPBACK,UP,LOWER_UP>\n");
    rt.assert_gone(&id);
}

/// The `type: cgroup` mount of every client's config asks for `ro,nosuid,nodev,noexec`, and runc
/// mounts each hierarchy so; libcontainer mounted them read-write, and a container could raise
/// its own pids.max (or memory limit) from inside.
#[test]
fn cgroup_mounts_get_their_options_and_limits_stay_out_of_reach() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&[
        "sh",
        "-c",
        "awk '$3 == \"cgroup\" && $4 !~ /^ro,nosuid,nodev,noexec/ {print \"writable:\", $2}' /proc/mounts; \
         grep -c ' cgroup ro,nosuid,nodev,noexec' /proc/mounts; \
         echo max > /sys/fs/cgroup/pids/pids.max 2>/dev/null && echo raised || echo refused",
    ]);
    let cgroup_mount = bundle.config()["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["type"] == "cgroup")
        .cloned()
        .expect("the bundle's config has a cgroup mount");
    assert_eq!(
        cgroup_mount["options"],
        serde_json::json!(["nosuid", "noexec", "nodev", "relatime", "ro"])
    );
    let id = unique_id("cgroupro");
    let out = rt.run(&["run", "--bundle", bundle.path().to_str().unwrap(), &id]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        matches!(lines[..], [count, "refused"] if count.parse::<u32>().is_ok_and(|n| n >= 4)),
        "{stdout}"
    );
    rt.assert_gone(&id);
}

/// Regression: `ctr run --mount type=tmpfs,dst=/scratch` sends a mount without `source`, which
/// runc mounts and libcontainer refused ("failed to prepare rootfs").
#[test]
fn tmpfs_without_source_is_mounted() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&[
        "sh",
        "-c",
        "awk '$2 == \"/scratch\" {print $3}' /proc/mounts",
    ]);
    bundle.edit(|spec| {
        spec["mounts"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({
                "destination": "/scratch",
                "type": "tmpfs",
                "options": ["size=1m"]
            }));
    });
    let id = unique_id("nosource");
    let out = rt.run(&["run", "--bundle", bundle.path().to_str().unwrap(), &id]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "tmpfs\n");
    rt.assert_gone(&id);
}

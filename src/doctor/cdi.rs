//! The CDI checks: every spec dir and spec file, and the host device nodes, mount sources and
//! hook programs the specs name, which a create asking for their devices needs.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{Check, fail, ok, warn};
use crate::cdi::Registry;
use crate::cdi::registry::LoadProblem;
use crate::cdi::spec::{DeviceNode, Spec};

/// Every spec dir and spec file, with its verdict.
pub(super) fn specs(registry: &Registry) -> Vec<Check> {
    let mut checks = Vec::new();
    for dir in &registry.dirs {
        match std::fs::read_dir(dir) {
            Ok(_) => checks.push(ok("cdi", format!("spec dir {} readable", dir.display()))),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => checks.push(ok(
                "cdi",
                format!("spec dir {} absent (no specs there)", dir.display()),
            )),
            Err(err) => checks.push(fail(
                "cdi",
                format!("cannot list spec dir {}: {err}", dir.display()),
                "make it readable by root",
            )),
        }
    }
    for loaded in &registry.specs {
        checks.push(ok(
            "cdi",
            format!(
                "{}: {} devices of kind {}",
                loaded.path.display(),
                loaded.spec.devices.len(),
                loaded.spec.kind
            ),
        ));
    }
    // One line per pair of files in conflict, not per device: generators write dozens.
    let mut conflicts: BTreeMap<Vec<PathBuf>, Vec<&str>> = BTreeMap::new();
    for problem in &registry.problems {
        let fix = match problem {
            LoadProblem::Conflict { device, paths } => {
                conflicts.entry(paths.clone()).or_default().push(device);
                continue;
            }
            LoadProblem::Spec(err) => match err {
                crate::cdi::spec::SpecError::Read { path, .. }
                | crate::cdi::spec::SpecError::Extension { path }
                | crate::cdi::spec::SpecError::Parse { path, .. }
                | crate::cdi::spec::SpecError::Invalid { path, .. } => format!(
                    "see cdirun cdi validate {}; regenerate it (cdirun cdi generate) or fix it",
                    path.display()
                ),
            },
            LoadProblem::NotAFile(_) => "remove or rename it".to_owned(),
            LoadProblem::Dir { .. } => "make the dir readable by root".to_owned(),
        };
        checks.push(fail("cdi", problem.to_string(), fix));
    }
    for (paths, devices) in conflicts {
        let paths: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        checks.push(fail(
            "cdi",
            format!(
                "{} and {} both define {}: at the same priority neither definition is used",
                paths[..paths.len() - 1].join(", "),
                paths[paths.len() - 1],
                devices.join(", ")
            ),
            "remove one of the files (two generators wrote the same devices?)",
        ));
    }
    if registry.devices.is_empty()
        && !registry
            .problems
            .iter()
            .any(|p| matches!(p, LoadProblem::Spec(_)))
    {
        checks.push(warn(
            "cdi",
            "no CDI devices in any spec dir: containers can ask for none",
            "cdirun cdi generate -o /etc/cdi",
        ));
    }
    checks
}

/// The host node a spec's device node stands for, and why it does not match when it does not.
fn node_problem(node: &DeviceNode) -> Option<String> {
    let host = node
        .host_path
        .as_deref()
        .filter(|p| !p.is_empty())
        .unwrap_or(&node.path);
    let metadata = match std::fs::metadata(host) {
        Ok(metadata) => metadata,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Some(format!("{host} is missing on the host"));
        }
        Err(err) => return Some(format!("{host}: {err}")),
    };
    let kind = if metadata.file_type().is_char_device() {
        "c"
    } else if metadata.file_type().is_block_device() {
        "b"
    } else if metadata.file_type().is_fifo() {
        "p"
    } else {
        return Some(format!("{host} is no device node"));
    };
    let rdev = metadata.rdev();
    let (major, minor) = (i64::from(libc::major(rdev)), i64::from(libc::minor(rdev)));
    let mut wrong = Vec::new();
    if let Some(typ) = node.typ.as_deref().filter(|t| !t.is_empty() && *t != "u") {
        if typ != kind {
            wrong.push(format!("type {typ} in the spec, {kind} on the host"));
        }
    }
    // A negative number is read as absent when the node is injected.
    if let Some(want) = node.major.filter(|m| *m >= 0) {
        if want != major {
            wrong.push(format!("major {want} in the spec, {major} on the host"));
        }
    }
    if let Some(want) = node.minor.filter(|m| *m >= 0) {
        if want != minor {
            wrong.push(format!("minor {want} in the spec, {minor} on the host"));
        }
    }
    (!wrong.is_empty()).then(|| format!("{host}: {}", wrong.join(", ")))
}

fn spec_nodes(spec: &Spec) -> Vec<(String, &DeviceNode)> {
    let mut nodes = Vec::new();
    if let Some(edits) = &spec.container_edits {
        nodes.extend(
            edits
                .device_nodes
                .iter()
                .map(|n| ("spec-level edits".to_owned(), n)),
        );
    }
    for device in &spec.devices {
        let name = format!("{}={}", spec.kind, device.name);
        nodes.extend(
            device
                .container_edits
                .device_nodes
                .iter()
                .map(|n| (name.clone(), n)),
        );
    }
    nodes
}

/// Host nodes, mounts and hook programs each spec names: what create would fail on.
pub(super) fn devices(registry: &Registry) -> Vec<Check> {
    let mut checks = Vec::new();
    for loaded in &registry.specs {
        let file = loaded.path.display();
        let mut problems: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let nodes = spec_nodes(&loaded.spec);
        for (device, node) in &nodes {
            if let Some(problem) = node_problem(node) {
                problems.entry(problem).or_default().insert(device.clone());
            }
        }
        let mut edits: Vec<&crate::cdi::spec::ContainerEdits> =
            loaded.spec.container_edits.iter().collect();
        edits.extend(loaded.spec.devices.iter().map(|d| &d.container_edits));
        let mut files = 0;
        for edit in &edits {
            for mount in &edit.mounts {
                files += 1;
                if !Path::new(&mount.host_path).exists() {
                    problems
                        .entry(format!(
                            "mount source {} is missing on the host",
                            mount.host_path
                        ))
                        .or_default();
                }
            }
            for hook in &edit.hooks {
                files += 1;
                let executable = std::fs::metadata(&hook.path)
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
                if !executable {
                    problems
                        .entry(format!(
                            "hook program {} is missing or not executable",
                            hook.path
                        ))
                        .or_default();
                }
            }
        }
        if problems.is_empty() {
            checks.push(ok(
                "devices",
                format!(
                    "{file}: {} device nodes, {files} mounts and hooks present on the host",
                    nodes.len()
                ),
            ));
            continue;
        }
        for (problem, devices) in problems {
            let whose = if devices.is_empty() {
                String::new()
            } else {
                format!(
                    " (for {})",
                    devices.into_iter().collect::<Vec<_>>().join(", ")
                )
            };
            checks.push(fail(
                "devices",
                format!("{file}: {problem}{whose}"),
                "a create asking for these devices fails: regenerate the spec (cdirun cdi generate) or restore the host files",
            ));
        }
    }
    checks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_whose_numbers_differ_from_the_host_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let node = |typ: Option<&str>, path: &Path| DeviceNode {
            path: "/dev/x".into(),
            host_path: Some(path.display().to_string()),
            typ: typ.map(str::to_owned),
            ..DeviceNode::default()
        };
        assert_eq!(node_problem(&node(Some("p"), &fifo)), None);
        assert_eq!(
            node_problem(&node(Some("c"), &fifo)),
            Some(format!(
                "{}: type c in the spec, p on the host",
                fifo.display()
            ))
        );
        let missing = dir.path().join("gone");
        assert_eq!(
            node_problem(&node(None, &missing)),
            Some(format!("{} is missing on the host", missing.display()))
        );
        let plain = dir.path().join("plain");
        std::fs::write(&plain, "").unwrap();
        assert!(
            node_problem(&node(None, &plain))
                .unwrap()
                .ends_with("is no device node")
        );
        // /dev/null is 1:3 on every Linux.
        let null = DeviceNode {
            major: Some(1),
            minor: Some(5),
            ..node(Some("c"), Path::new("/dev/null"))
        };
        assert_eq!(
            node_problem(&null),
            Some("/dev/null: minor 5 in the spec, 3 on the host".to_owned())
        );
    }
}

//! The client check: the containerd, podman and docker configurations under the host root,
//! and whether they name cdirun.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{Check, ok, warn};
use crate::cdi::generate::Host;

/// Client configurations under the host root and whether they name cdirun.
pub(super) fn clients(host: &Host) -> Vec<Check> {
    let mut candidates: Vec<(&'static str, PathBuf)> = vec![
        (
            "containerd",
            host.root_path(Path::new("/etc/containerd/config.toml")),
        ),
        (
            "podman",
            host.root_path(Path::new("/etc/containers/containers.conf")),
        ),
        (
            "docker",
            host.root_path(Path::new("/etc/docker/daemon.json")),
        ),
    ];
    for dir in [
        "/etc/containerd/conf.d",
        "/etc/containers/containers.conf.d",
    ] {
        let client = if dir.contains("containerd") {
            "containerd"
        } else {
            "podman"
        };
        if let Ok(entries) = std::fs::read_dir(host.root_path(Path::new(dir))) {
            let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
            paths.sort();
            candidates.extend(paths.into_iter().map(|p| (client, p)));
        }
    }
    let mut found: BTreeMap<&'static str, Vec<(PathBuf, bool)>> = BTreeMap::new();
    for (client, path) in candidates {
        if let Ok(text) = std::fs::read_to_string(&path) {
            found
                .entry(client)
                .or_default()
                .push((path, text.contains("cdirun")));
        }
    }
    if found.is_empty() {
        return vec![warn(
            "clients",
            "no containerd, podman or docker configuration found",
            "see /usr/share/doc/cdirun/examples for containerd and podman snippets",
        )];
    }
    let mut checks = Vec::new();
    for (client, files) in found {
        let naming: Vec<String> = files
            .iter()
            .filter(|(_, n)| *n)
            .map(|(p, _)| p.display().to_string())
            .collect();
        if naming.is_empty() {
            let all: Vec<String> = files.iter().map(|(p, _)| p.display().to_string()).collect();
            checks.push(warn(
                "clients",
                format!("{client}: {} does not name cdirun", all.join(", ")),
                "add cdirun as a runtime (examples in /usr/share/doc/cdirun/examples)",
            ));
        } else {
            checks.push(ok(
                "clients",
                format!("{client}: {} names cdirun", naming.join(", ")),
            ));
        }
    }
    checks
}

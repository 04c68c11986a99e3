//! The cgroup checks: the layout and driver, and the slice the owner acts in with its limits.

use std::path::Path;

use super::{Check, fail, ok};
use crate::cdi::generate::Host;
use crate::cgroup::{CgroupPath, Hierarchies, Layout, Owners};
use crate::config::Config;

/// cgroup layout and driver, and the owned slice with its limits.
pub(super) fn cgroups(host: &Host, systemd_cgroup: bool, config: &Config) -> Vec<Check> {
    let mut checks = Vec::new();
    let mountinfo_path = host.procfs.join("self/mountinfo");
    let hierarchies = match std::fs::read_to_string(&mountinfo_path) {
        Ok(text) => Hierarchies(crate::cgroup::parse_mountinfo(&text)),
        Err(err) => {
            checks.push(fail(
                "cgroup",
                format!("cannot read {}: {err}", mountinfo_path.display()),
                "mount procfs",
            ));
            return checks;
        }
    };
    let layout = hierarchies.layout();
    let v2 = hierarchies
        .iter()
        .find(|h| h.is_v2())
        .map(|h| h.mount.clone());
    let systemd = host.root_path(Path::new("/run/systemd/system")).is_dir();
    let driver = if systemd_cgroup {
        "systemd"
    } else {
        "cgroupfs"
    };
    match layout {
        None => checks.push(fail(
            "cgroup",
            format!("no cgroup filesystem in {}", mountinfo_path.display()),
            "mount cgroup2 at /sys/fs/cgroup",
        )),
        Some(layout) => {
            let words = match layout {
                Layout::V1 => "v1".to_owned(),
                Layout::Hybrid => format!(
                    "hybrid (v1 controllers, cgroup2 at {})",
                    v2.as_deref().unwrap_or(Path::new("?")).display()
                ),
                Layout::V2 => format!(
                    "v2 at {}",
                    v2.as_deref().unwrap_or(Path::new("?")).display()
                ),
            };
            let message = format!("layout {words}, {driver} driver");
            if systemd_cgroup && !systemd {
                checks.push(fail(
                    "cgroup",
                    format!("{message}, but systemd is not running (no /run/systemd/system)"),
                    "drop --systemd-cgroup (and SystemdCgroup/cgroup_manager in the client) on this node",
                ));
            } else {
                checks.push(ok("cgroup", message));
            }
        }
    }
    let owners = match Owners::from_table(&config.slices.owners) {
        Ok(owners) => owners,
        Err(err) => {
            checks.push(fail(
                "slice",
                format!("[slices.owners]: {err}"),
                "fix the owner table in the config file",
            ));
            return checks;
        }
    };
    let slice = match CgroupPath::parse_slice(&config.slices.default) {
        Ok(slice) => slice,
        Err(err) => {
            checks.push(fail(
                "slice",
                format!("[slices] default: {err}"),
                "fix [slices] default",
            ));
            return checks;
        }
    };
    if owners.owner_of(&slice) != Some(config.owner.as_str()) {
        checks.push(fail(
            "slice",
            format!(
                "[slices] default {slice} is not owned by {:?} (owners: {})",
                config.owner,
                owners.describe()
            ),
            "set [slices] default to a slice under one of the owner's roots",
        ));
        return checks;
    }
    let limits = config
        .slices
        .limits
        .iter()
        .map(|(name, l)| format!("{name}: {l:?}"))
        .collect::<Vec<_>>();
    let limits = if limits.is_empty() {
        "no limits configured".to_owned()
    } else {
        format!("limits {}", limits.join("; "))
    };
    let exists = hierarchies
        .iter()
        .next()
        .map(|h| h.dir(&slice))
        .filter(|dir| dir.is_dir());
    checks.push(ok(
        "slice",
        match exists {
            Some(dir) => format!(
                "owner {:?} acts in {slice} ({} exists), {limits}",
                config.owner,
                dir.display()
            ),
            None => format!(
                "owner {:?} acts in {slice} (made at the first container), {limits}",
                config.owner
            ),
        },
    ));
    checks
}

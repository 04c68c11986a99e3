//! `events`: a container's cgroup statistics as runc's event lines, once (`--stats`) or every
//! `--interval` (a Go duration, as runc takes it) while it runs.
//!
//! `data` is libcgroups' statistics object plus `scope`: the container's cgroup path and the
//! figures cdirun reads itself in every layout (memory current and max, CPU usage, process
//! count), so a client gets them the same way on v1, hybrid and v2 hosts.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use libcgroups::common::CgroupManager;
use libcontainer::container::{Container, ContainerStatus};
use serde::Serialize;

use super::Globals;
use crate::cgroup;

/// runc's event envelope: `{"type":"stats","id":"<id>","data":{...}}`.
#[derive(Serialize)]
struct Event<'a, T: Serialize> {
    #[serde(rename = "type")]
    kind: &'a str,
    id: &'a str,
    data: T,
}

pub fn events(args: liboci_cli::Events, globals: &Globals) -> Result<()> {
    let id = &args.container_id;
    let mut container = crate::engine::load(&globals.root, id)?;
    let manager = crate::engine::cgroup_manager(&container)?;
    let scope = scope_path(&container)?;
    let hierarchies = cgroup::Hierarchies::discover()
        .context("cannot read the cgroup mounts from /proc/self/mountinfo")?;
    loop {
        if !matches!(
            container.status(),
            ContainerStatus::Running | ContainerStatus::Paused | ContainerStatus::Created
        ) {
            bail!("container {id:?} is not running");
        }
        let stats = manager
            .stats()
            .with_context(|| format!("cannot read statistics of container {id:?}"))?;
        let mut data = serde_json::to_value(stats)?;
        if let (Some(path), Some(object)) = (&scope, data.as_object_mut()) {
            let metrics = cgroup::Scope::new(&hierarchies, path.clone())
                .metrics()
                .with_context(|| format!("cannot read the metrics of cgroup {path}"))?;
            object.insert("scope".into(), serde_json::to_value(metrics)?);
        }
        let event = serde_json::to_string(&Event {
            kind: "stats",
            id,
            data,
        })?;
        super::print(&format!("{event}\n"))?;
        if args.stats {
            return Ok(());
        }
        // `interval` holds milliseconds (see `cli::parse_interval_ms`).
        std::thread::sleep(Duration::from_millis(u64::from(args.interval.max(1))));
        container.refresh_status()?;
    }
}

/// The container's cgroupfs path as recorded at create; `None` with the systemd driver, whose
/// `slice:prefix:name` form names a unit, not a directory.
fn scope_path(container: &Container) -> Result<Option<cgroup::CgroupPath>> {
    if container.systemd() {
        return Ok(None);
    }
    let config = container.spec().with_context(|| {
        format!(
            "cannot read the recorded config of container {:?}",
            container.id()
        )
    })?;
    let text = config.cgroup_path.to_string_lossy();
    Ok(Some(cgroup::CgroupPath::parse(&text)?))
}

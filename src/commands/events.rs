//! `events`: a container's cgroup statistics as runc's event lines, once (`--stats`) or every
//! `--interval` seconds while it runs.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use libcgroups::common::CgroupManager;
use libcontainer::container::ContainerStatus;
use serde::Serialize;

use super::Globals;

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
    let mut container = super::load_container(globals, id)?;
    let manager = super::cgroup_manager(&container)?;
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
        println!(
            "{}",
            serde_json::to_string(&Event {
                kind: "stats",
                id,
                data: stats
            })?
        );
        if args.stats {
            return Ok(());
        }
        std::thread::sleep(Duration::from_secs(u64::from(args.interval.max(1))));
        container.refresh_status()?;
    }
}

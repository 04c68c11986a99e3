//! `update`: change a running container's cgroup limits from `--resources FILE|-` (OCI
//! LinuxResources JSON) or from runc's individual flags.

use std::io::Read;

use anyhow::{Context, Result, bail};
use libcgroups::common::{AnyCgroupManager, CgroupManager, ControllerOpt};
use libcontainer::container::ContainerStatus;
use libcontainer::oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxPids, LinuxResources, Spec,
};

use super::Globals;
use crate::claims::Record;

pub fn update(args: liboci_cli::Update, globals: &Globals) -> Result<()> {
    let id = args.container_id.clone();
    let container = crate::engine::load(&globals.root, &id)?;
    if container.status() == ContainerStatus::Stopped {
        bail!("cannot update container {id:?}: container not running");
    }
    let resources = match &args.resources {
        Some(path) => read_resources(path)?,
        None => from_flags(&args),
    };
    let mut resources = resources;
    let manager = crate::engine::cgroup_manager(&container)?;
    // On cgroup v2 libcgroups rebuilds the eBPF device program from the resources it is given:
    // without the container's own rules it would take away every device the spec allows (a
    // GPU). runc's update also keeps the devices of the container's config. (v1 keeps its
    // devices.list; systemd's driver sets only the limits.)
    if matches!(manager, AnyCgroupManager::V2(_)) {
        let config = container.bundle().join("config.json");
        let spec = Spec::load(&config).with_context(|| {
            format!(
                "cannot read the device rules of {id:?} from {}",
                config.display()
            )
        })?;
        resources.set_devices(Some(crate::engine::cgroups::device_rules(&spec)));
    }
    manager
        .apply(&ControllerOpt {
            resources: &resources,
            disable_oom_killer: false,
            oom_score_adj: None,
            freezer_state: None,
        })
        .with_context(|| format!("cannot update resources of container {id:?}"))?;
    // A systemd scope cdirun registered on a v1 host (see cgroup::unit): systemd re-applying it
    // would put the old limits back.
    let record = Record::load(&globals.container_dir(&id))?;
    if let Some(unit) = record.as_ref().and_then(|r| r.claims.unit()) {
        unit.update_limits(&resources)
            .with_context(|| format!("cannot update the systemd unit of container {id:?}"))?;
    }
    Ok(())
}

/// Reads LinuxResources JSON from a file, or from stdin for `-`.
fn read_resources(path: &std::path::Path) -> Result<LinuxResources> {
    let (name, text) = if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read resources from stdin")?;
        ("stdin".to_owned(), text)
    } else {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        (path.display().to_string(), text)
    };
    serde_json::from_str(&text).with_context(|| format!("{name}: invalid resources JSON"))
}

/// runc's flags as OCI resources. `-1` (unlimited) reaches the `u64` fields as `u64::MAX` (see
/// `cli::runc_update_values`); `as i64` makes it -1 again.
fn from_flags(args: &liboci_cli::Update) -> LinuxResources {
    let mut resources = LinuxResources::default();
    if args.memory.is_some() || args.memory_reservation.is_some() || args.memory_swap.is_some() {
        let mut memory = LinuxMemory::default();
        memory
            .set_limit(args.memory.map(|v| v as i64))
            .set_reservation(args.memory_reservation.map(|v| v as i64))
            .set_swap(args.memory_swap);
        resources.set_memory(Some(memory));
    }
    let cpu_flags = [
        args.cpu_period,
        args.cpu_quota,
        args.cpu_rt_period,
        args.cpu_rt_runtime,
        args.cpu_share,
    ];
    if cpu_flags.iter().any(Option::is_some)
        || args.cpuset_cpus.is_some()
        || args.cpuset_mems.is_some()
    {
        let mut cpu = LinuxCpu::default();
        cpu.set_period(args.cpu_period)
            .set_quota(args.cpu_quota.map(|v| v as i64))
            .set_realtime_period(args.cpu_rt_period)
            .set_realtime_runtime(args.cpu_rt_runtime.map(|v| v as i64))
            .set_shares(args.cpu_share)
            .set_cpus(args.cpuset_cpus.clone())
            .set_mems(args.cpuset_mems.clone());
        resources.set_cpu(Some(cpu));
    }
    if let Some(limit) = args.pids_limit {
        let mut pids = LinuxPids::default();
        pids.set_limit(limit);
        resources.set_pids(Some(pids));
    }
    if let Some(weight) = args.blkio_weight {
        let mut blkio = LinuxBlockIo::default();
        blkio.set_weight(Some(weight.min(u64::from(u16::MAX)) as u16));
        resources.set_block_io(Some(blkio));
    }
    resources
}

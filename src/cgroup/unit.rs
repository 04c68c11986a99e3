//! The systemd scope unit of a container on a v1 or hybrid host under `--systemd-cgroup`
//! ([`Driver::SystemdLayout`](super::Driver::SystemdLayout)). libcontainer 0.7 has no systemd
//! driver for v1, so cdirun lays the cgroup out where systemd puts the unit; without a unit,
//! systemd does not know the container (`systemctl status` finds nothing) and may move or kill
//! processes it does not account for. As runc does, cdirun registers a transient scope holding
//! the init, with `Delegate=yes`, the container's limits as properties (systemd writes a unit's
//! attributes when it starts or re-applies it: without them it would reset cpu.shares, pids.max
//! and memory.limit_in_bytes to its defaults) and the device policy of [`super::devices`] (with
//! none, systemd re-applying the unit writes `devices.allow a`). The call goes through `busctl`,
//! systemd's own D-Bus client.

use std::process::Command;

use libcontainer::oci_spec::runtime::LinuxResources;

use super::devices::UnitPolicy;

#[derive(Debug, thiserror::Error)]
pub enum UnitError {
    #[error("cannot run {program} for systemd unit {unit}: {cause}")]
    Spawn {
        program: String,
        unit: String,
        cause: std::io::Error,
    },
    #[error("systemd refused unit {unit}: {stderr}")]
    Refused { unit: String, stderr: String },
}

const BUSCTL: &str = "busctl";
const SYSTEMCTL: &str = "systemctl";
/// `systemctl`'s exit status for a unit that is not loaded (already gone).
const NOT_LOADED: i32 = 5;

/// A container's transient scope unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit<'a> {
    /// `<prefix>-<name>.scope`.
    pub name: &'a str,
    /// The slice unit it goes in, `workload.slice` for `/workload.slice/<name>`.
    pub slice: &'a str,
}

impl Unit<'_> {
    /// Starts the scope with `pid` in it (already placed there, at the same path, by cdirun).
    pub fn register(
        &self,
        pid: i32,
        resources: Option<&LinuxResources>,
        proc_devices: &str,
    ) -> Result<(), UnitError> {
        run(
            BUSCTL,
            self.name,
            &self.start_args(pid, resources, proc_devices),
        )
    }

    /// Gives the unit the limits `update` set, so that systemd re-applying the unit keeps them
    /// (runc's update sets the unit's properties too). Only the limits `resources` holds.
    pub fn update_limits(&self, resources: &LinuxResources) -> Result<(), UnitError> {
        let props = limit_properties(Some(resources), Unset::Omit);
        if props.is_empty() {
            return Ok(());
        }
        let mut args: Vec<String> = [
            "call",
            "--quiet",
            "org.freedesktop.systemd1",
            "/org/freedesktop/systemd1",
            "org.freedesktop.systemd1.Manager",
            "SetUnitProperties",
            "sba(sv)",
            self.name,
            "true", // runtime only, as the unit itself
        ]
        .map(str::to_owned)
        .into();
        args.push(props.len().to_string());
        args.extend(props.into_iter().flatten());
        run(BUSCTL, self.name, &args)
    }

    /// Stops the scope (its processes are gone by now); a unit systemd already dropped (it
    /// drops an empty scope by itself) is not an error.
    pub fn stop(&self) -> Result<(), UnitError> {
        let output = Command::new(SYSTEMCTL)
            .args(["stop", "--no-block", "--", self.name])
            .output()
            .map_err(|cause| UnitError::Spawn {
                program: SYSTEMCTL.to_owned(),
                unit: self.name.to_owned(),
                cause,
            })?;
        match output.status.code() {
            Some(0) | Some(NOT_LOADED) => Ok(()),
            _ => Err(UnitError::Refused {
                unit: self.name.to_owned(),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            }),
        }
    }

    /// `busctl call ... StartTransientUnit` arguments: the unit, the job mode and its
    /// properties, each as name, D-Bus signature and values.
    fn start_args(
        &self,
        pid: i32,
        resources: Option<&LinuxResources>,
        proc_devices: &str,
    ) -> Vec<String> {
        let mut props: Vec<Vec<String>> = vec![
            prop(
                "Description",
                "s",
                [format!("cdirun container {}", self.name)],
            ),
            prop("Slice", "s", [self.slice.to_owned()]),
            prop("Delegate", "b", ["true".to_owned()]),
            prop("PIDs", "au", ["1".to_owned(), pid.to_string()]),
        ];
        let devices = resources
            .and_then(|r| r.devices().clone())
            .unwrap_or_default();
        let policy = UnitPolicy::for_rules(&devices, proc_devices);
        props.push(prop("DevicePolicy", "s", [policy.policy.to_owned()]));
        let mut allow = vec![policy.allow.len().to_string()];
        for (node, access) in &policy.allow {
            allow.extend([node.clone(), access.clone()]);
        }
        props.push(prop("DeviceAllow", "a(ss)", allow));
        props.extend(limit_properties(resources, Unset::NoLimit));

        let mut args: Vec<String> = [
            "call",
            "--quiet",
            "org.freedesktop.systemd1",
            "/org/freedesktop/systemd1",
            "org.freedesktop.systemd1.Manager",
            "StartTransientUnit",
            "ssa(sv)a(sa(sv))",
            self.name,
            "fail",
        ]
        .map(str::to_owned)
        .into();
        args.push(props.len().to_string());
        args.extend(props.into_iter().flatten());
        args.push("0".to_owned()); // no auxiliary units
        args
    }
}

/// One property as busctl takes it: name, signature, values.
fn prop(name: &str, signature: &str, values: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut prop = vec![name.to_owned(), signature.to_owned()];
    prop.extend(values);
    prop
}

/// What [`limit_properties`] gives an unset pids limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unset {
    /// At start: `infinity`, the spec's "no limit" (as with the cgroupfs driver), not systemd's
    /// DefaultTasksMax.
    NoLimit,
    /// At update: nothing, the unit keeps what it has.
    Omit,
}

/// The v1 limit properties systemd writes when it applies the unit, from the spec's resources
/// as libcontainer wrote them, so that systemd writes the same values.
fn limit_properties(resources: Option<&LinuxResources>, unset: Unset) -> Vec<Vec<String>> {
    let mut props = Vec::new();
    let memory = resources.and_then(|r| r.memory().as_ref());
    if let Some(limit) = memory.and_then(|m| m.limit()).filter(|&l| l > 0) {
        props.push(prop("MemoryLimit", "t", [limit.to_string()]));
    }
    let cpu = resources.and_then(|r| r.cpu().as_ref());
    if let Some(shares) = cpu.and_then(|c| c.shares()).filter(|&s| s > 0) {
        props.push(prop("CPUShares", "t", [shares.to_string()]));
    }
    let quota = cpu.and_then(|c| c.quota()).filter(|&q| q > 0);
    let period = cpu
        .and_then(|c| c.period())
        .filter(|&p| p > 0)
        .unwrap_or(100_000);
    if let Some(quota) = quota {
        // systemd keeps CPUQuotaPerSecUSec in whole percent of a CPU (10 ms per second): round
        // up, so the cgroup's cfs_quota_us is never below the spec's.
        let per_sec = (quota as u64 * 1_000_000).div_ceil(period);
        let per_sec = per_sec.div_ceil(10_000) * 10_000;
        props.push(prop("CPUQuotaPerSecUSec", "t", [per_sec.to_string()]));
        props.push(prop("CPUQuotaPeriodUSec", "t", [period.to_string()]));
    }
    // -1 is the spec's "no limit".
    let pids = resources.and_then(|r| r.pids().as_ref()).map(|p| p.limit());
    let tasks_max = match (pids, unset) {
        (Some(limit), _) if limit > 0 => Some(limit as u64),
        (Some(_), _) | (None, Unset::NoLimit) => Some(u64::MAX),
        (None, Unset::Omit) => None,
    };
    if let Some(tasks_max) = tasks_max {
        props.push(prop("TasksMax", "t", [tasks_max.to_string()]));
    }
    if let Some(weight) = resources
        .and_then(|r| r.block_io().as_ref())
        .and_then(|b| b.weight())
    {
        props.push(prop("BlockIOWeight", "t", [weight.to_string()]));
    }
    props
}

fn run(program: &str, unit: &str, args: &[String]) -> Result<(), UnitError> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|cause| UnitError::Spawn {
            program: program.to_owned(),
            unit: unit.to_owned(),
            cause,
        })?;
    if output.status.success() {
        return Ok(());
    }
    Err(UnitError::Refused {
        unit: unit.to_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use libcontainer::oci_spec::runtime::{LinuxCpu, LinuxDeviceCgroup, LinuxMemory, LinuxPids};

    use super::*;

    fn resources() -> LinuxResources {
        let mut gpu = LinuxDeviceCgroup::default();
        gpu.set_allow(true)
            .set_typ(Some(libcontainer::oci_spec::runtime::LinuxDeviceType::C))
            .set_major(Some(195))
            .set_minor(Some(0))
            .set_access(Some("rw".into()));
        let mut deny = LinuxDeviceCgroup::default();
        deny.set_allow(false).set_access(Some("rwm".into()));
        let mut memory = LinuxMemory::default();
        memory.set_limit(Some(64 << 20));
        let mut cpu = LinuxCpu::default();
        cpu.set_shares(Some(512))
            .set_quota(Some(50_001))
            .set_period(Some(100_000));
        let mut pids = LinuxPids::default();
        pids.set_limit(100);
        let mut resources = LinuxResources::default();
        resources
            .set_devices(Some(vec![deny, gpu]))
            .set_memory(Some(memory))
            .set_cpu(Some(cpu))
            .set_pids(Some(pids));
        resources
    }

    #[test]
    fn start_carries_delegation_the_pid_the_limits_and_the_device_policy() {
        let unit = Unit {
            name: "cdirun-c1.scope",
            slice: "workload.slice",
        };
        let args = unit.start_args(42, Some(&resources()), "Character devices:\n136 pts\n");
        let text = args.join(" ");
        let policy = UnitPolicy::for_rules(
            resources().devices().as_ref().unwrap(),
            "Character devices:\n136 pts\n",
        );
        let mut want = String::from(
            "call --quiet org.freedesktop.systemd1 /org/freedesktop/systemd1 \
             org.freedesktop.systemd1.Manager StartTransientUnit ssa(sv)a(sa(sv)) \
             cdirun-c1.scope fail 11 Description s cdirun container cdirun-c1.scope \
             Slice s workload.slice Delegate b true PIDs au 1 42 DevicePolicy s strict ",
        );
        want += &format!("DeviceAllow a(ss) {}", policy.allow.len());
        for (node, access) in &policy.allow {
            want += &format!(" {node} {access}");
        }
        // 50001/100000 of a CPU is 500010 us a second, rounded up to whole percent.
        want += " MemoryLimit t 67108864 CPUShares t 512 CPUQuotaPerSecUSec t 510000 \
                 CPUQuotaPeriodUSec t 100000 TasksMax t 100 0";
        assert!(text.contains("/dev/char/195:0 rw"), "{text}");
        assert_eq!(text, want);
    }

    #[test]
    fn update_sets_only_the_limits_it_was_given() {
        let mut pids = LinuxPids::default();
        pids.set_limit(200);
        let mut resources = LinuxResources::default();
        resources.set_pids(Some(pids));
        assert_eq!(
            limit_properties(Some(&resources), Unset::Omit),
            [["TasksMax", "t", "200"].map(str::to_owned).to_vec()]
        );
        assert!(limit_properties(Some(&LinuxResources::default()), Unset::Omit).is_empty());
    }

    #[test]
    fn no_limits_means_no_pids_limit_and_systemd_defaults_elsewhere() {
        let unit = Unit {
            name: "x-c1.scope",
            slice: "-.slice",
        };
        let text = unit.start_args(7, None, "").join(" ");
        assert!(
            text.ends_with(&format!("TasksMax t {} 0", u64::MAX)),
            "{text}"
        );
        assert!(
            !text.contains("MemoryLimit") && !text.contains("CPUShares"),
            "{text}"
        );
        assert!(text.contains("DevicePolicy s strict"), "{text}");
    }
}

//! Where libcontainer 0.7 leaves a container's cgroups other than runc does, and what cdirun
//! does about it once the scope is chosen ([`Cgroups`]):
//!
//! - Hierarchies it does not manage: on a hybrid host its v1 manager joins only the v1
//!   controllers it knows, so the init would stay in the root of the cgroup2 mount and of named
//!   hierarchies such as name=systemd, where clients that read /proc/PID/cgroup (containerd's
//!   shim, podman) would not find it in its slice, and a private cgroup namespace would show
//!   host paths there. cdirun stands in the scope while libcontainer forks ([`Cgroups::stay`])
//!   and places the init there after the build ([`Cgroups::place_init`]). Goes when
//!   libcontainer places the init in every hierarchy.
//! - `linux.resources.memory.disableOOMKiller`: never applied (libcontainer hard-codes the
//!   setting off when it creates the cgroup). Goes when it applies it.
//! - Device rules under `--systemd-cgroup` on cgroup v2: its systemd driver enforces none (see
//!   [`crate::cgroup::devices`]). Goes when the driver attaches the device program.
//! - A cgroup with children: its delete cannot remove one (a hook may have made some), so a
//!   failed create removes them first ([`Cgroups::remove_nested`]). Goes when it removes a
//!   cgroup tree.

use std::path::Path;

use anyhow::{Context, Result, anyhow};
use libcontainer::oci_spec::runtime::{LinuxDeviceCgroup, Spec};

use crate::cgroup::{self, CgroupPath, Hierarchies};

/// The cgroups of one container being created: the host's hierarchies and the container's
/// scope (cgroupfs driver only; `None` when cdirun places nothing).
pub struct Cgroups<'a> {
    pub hierarchies: &'a Hierarchies,
    pub scope: Option<&'a CgroupPath>,
    pub systemd: bool,
    pub rootless: bool,
}

impl Cgroups<'_> {
    /// Stands cdirun in the scope where libcontainer does not place the init, until it forks
    /// the init: see [`cgroup::Stay`]. Not rootless, where cdirun may not move itself there.
    pub fn stay(&self) -> Result<Option<cgroup::Stay>> {
        let Some(scope) = self.scope.filter(|_| !self.rootless) else {
            return Ok(None);
        };
        let targets = self.hierarchies.not_managed_by_libcontainer();
        if targets.is_empty() {
            return Ok(None);
        }
        let stay = cgroup::Stay::enter(&targets, scope)
            .with_context(|| format!("cannot enter cgroup {scope} to start the init there"))?;
        Ok(Some(stay.until_fork()))
    }

    /// Puts the init process in the scope in the hierarchies libcontainer leaves alone. Before
    /// `start` the init is the container's only process, so moving it moves the whole
    /// container. The scope claim's release removes these directories again at delete.
    /// Usually the init was born there already ([`Self::stay`]).
    ///
    /// Rootless, a hierarchy the init cannot be moved in is left as it is (cgroup v2 lets only
    /// a writer of the common ancestor's `cgroup.procs` move a process, which a delegated
    /// slice alone does not give), as runc ignores such errors rootless.
    pub fn place_init(&self, pid: i32) -> Result<()> {
        let Some(scope) = self.scope else {
            return Ok(());
        };
        let targets = self.hierarchies.not_managed_by_libcontainer();
        let ops = cgroup::Scope::new(self.hierarchies, scope.clone());
        if self.rootless {
            for target in targets {
                if let Err(err) = ops.add_process(pid, &[target]) {
                    tracing::warn!("rootless: init {pid} stays out of {scope} there: {err}");
                }
            }
            return Ok(());
        }
        ops.add_process(pid, &targets)
            .with_context(|| format!("cannot place the init process {pid} in cgroup {scope}"))
    }

    /// Sets `disableOOMKiller` in the container's memory cgroup (cgroupfs paths only: with
    /// systemd, the unit's cgroup is not a path to write to).
    pub fn disable_oom_killer(&self, spec: &Spec) -> Result<()> {
        let Some(linux) = spec.linux() else {
            return Ok(());
        };
        let disabled = linux
            .resources()
            .as_ref()
            .and_then(|r| r.memory().as_ref())
            .and_then(|m| m.disable_oom_killer())
            .unwrap_or(false);
        let path = match (disabled, self.scope, linux.cgroups_path()) {
            (false, _, _) => return Ok(()),
            (true, Some(scope), _) => scope.clone(),
            (true, None, Some(path)) if path.is_absolute() => cgroup_path(path)?,
            (true, None, _) => return Ok(()),
        };
        cgroup::Scope::new(self.hierarchies, path.clone())
            .disable_oom_killer()
            .with_context(|| format!("cannot disable the OOM killer of cgroup {path}"))
    }

    /// Under `--systemd-cgroup` on cgroup v2: attaches the device program and gives the unit
    /// its device policy, before `start` lets the container's process run.
    pub fn enforce_unit_devices(&self, pid: i32, spec: &Spec) -> Result<()> {
        if !self.systemd {
            return Ok(());
        }
        let v2 = self
            .hierarchies
            .iter()
            .find(|h| h.is_v2())
            .context("--systemd-cgroup on cgroup v2, but no cgroup2 mount is in mountinfo")?;
        cgroup::devices::enforce_for_unit(
            pid,
            &v2.mount,
            &device_rules(spec),
            Path::new("systemctl"),
        )
        .context("cannot enforce the container's device rules")
    }

    /// For a failed create: kills what runs in cgroups made below the scope (by a hook, or
    /// from the host) and removes them, deepest first, so that the scope itself can go. The
    /// scope's own processes are left to libcontainer's delete: one of them may be another
    /// container's.
    pub fn remove_nested(&self) {
        let Some(scope) = self.scope else {
            return;
        };
        if let Err(err) = cgroup::Scope::new(self.hierarchies, scope.clone()).remove_descendants() {
            tracing::warn!("cannot remove the cgroups below {scope}: {err}");
        }
    }
}

/// The spec's `linux.resources.devices`, in order.
pub fn device_rules(spec: &Spec) -> Vec<LinuxDeviceCgroup> {
    spec.linux()
        .as_ref()
        .and_then(|linux| linux.resources().as_ref())
        .and_then(|resources| resources.devices().clone())
        .unwrap_or_default()
}

/// A cgroup path from the spec, checked.
pub fn cgroup_path(path: &Path) -> Result<CgroupPath> {
    let text = path
        .to_str()
        .ok_or_else(|| anyhow!("cgroup path {} is not UTF-8", path.display()))?;
    Ok(CgroupPath::parse(text)?)
}

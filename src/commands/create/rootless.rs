//! Rootless without a delegated slice: cdirun places nothing and leaves cgroups alone, as runc
//! and crun do, and gives libcontainer a cgroupsPath it will not try to write on the host.

use std::path::Path;

use anyhow::{Context, Result, bail};
use libcontainer::oci_spec::runtime::Spec;

use crate::config::Config;
use crate::{cgroup, edit};

/// Gives libcontainer an absolute cgroupsPath for a container cdirun does not place (see
/// [`skip_cgroups`]) and, with the host's cgroups hidden, makes it in the private tmpfs.
pub fn unplaced(hierarchies: &cgroup::Hierarchies, spec: &mut Spec, id: &str) -> Result<()> {
    let path = absolute_cgroups_path(spec, id)?;
    if crate::rootless::cgroups_hidden() {
        crate::rootless::fake_cgroup(hierarchies, &path)
            .with_context(|| format!("cannot make cgroup {path} in the private cgroup tmpfs"))?;
    }
    Ok(())
}

/// Rootless: whether the container's slice (`io.cdirun.slice` or `[slices] default`) is not
/// delegated to the caller, so that cdirun places nothing and leaves cgroups alone, as runc and
/// crun do. On a cgroup v1 or hybrid host libcontainer would still write the host's cgroups:
/// refused unless they are hidden from it (see [`crate::rootless::hide_cgroups`]).
pub fn skip_cgroups(
    hierarchies: &cgroup::Hierarchies,
    spec: &Spec,
    config: &Config,
) -> Result<bool> {
    let annotation = spec
        .annotations()
        .as_ref()
        .and_then(|a| a.get(edit::slice::SLICE_ANNOTATION));
    let text = annotation.map_or(config.slices.default.as_str(), |a| a.trim());
    let slice = cgroup::CgroupPath::parse_slice(text)?;
    if crate::rootless::delegated(hierarchies, &slice) {
        return Ok(false);
    }
    let v1 = !matches!(hierarchies.layout(), None | Some(cgroup::Layout::V2));
    if v1 && !crate::rootless::cgroups_hidden() {
        bail!(
            "rootless: slice {slice} is not delegated to uid {} (not writable in every cgroup hierarchy), and on this cgroup v1 host libcontainer needs a writable cgroup; delegate it (mkdir and chown it in every hierarchy) or run cdirun in a user namespace, as podman rootless does",
            nix::unistd::geteuid()
        );
    }
    Ok(true)
}

/// Rootless without a delegated cgroup: the container's cgroupsPath, made absolute
/// (`/cdirun/<id>` when the client sent none or a systemd one). With a user namespace in the
/// spec libcontainer asks systemd for a relative path, over the user's session bus, which a
/// rootless runtime without delegation may not have; an absolute path takes its cgroupfs
/// manager, which on cgroup v2 skips what a rootless caller may not write.
fn absolute_cgroups_path(spec: &mut Spec, id: &str) -> Result<cgroup::CgroupPath> {
    let linux = spec
        .linux_mut()
        .as_mut()
        .context("config.json has no \"linux\" section; cdirun runs Linux containers only")?;
    Ok(
        match linux.cgroups_path().as_deref().and_then(Path::to_str) {
            Some(text) if text.starts_with('/') => cgroup::CgroupPath::parse(text)?,
            _ => {
                let path = cgroup::CgroupPath::parse(&format!("/cdirun/{id}"))?;
                linux.set_cgroups_path(Some(path.absolute()));
                path
            }
        },
    )
}

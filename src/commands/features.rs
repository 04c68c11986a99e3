//! `features`: what this runtime supports, in the OCI features JSON runc prints.

use std::collections::HashMap;

use anyhow::Result;
use libcontainer::oci_spec::runtime::{
    Apparmor, Cgroup, Features, IDMap, IntelRdt, LinuxFeature, LinuxNamespaceType, MountExtensions,
    Seccomp, Selinux, VERSION,
};
use libcontainer::syscall::linux::MountOption;

pub fn features() -> Result<()> {
    let text = serde_json::to_string_pretty(&document())?;
    super::print(&format!("{text}\n"))?;
    Ok(())
}

pub fn document() -> Features {
    let mut cgroup = Cgroup::default();
    cgroup
        .set_v1(Some(true))
        .set_v2(Some(true))
        .set_systemd(Some(true))
        .set_systemd_user(Some(true))
        .set_rdma(Some(false));
    let mut seccomp = Seccomp::default();
    seccomp.set_enabled(Some(true));
    let mut apparmor = Apparmor::default();
    apparmor.set_enabled(Some(true));
    let mut selinux = Selinux::default();
    selinux.set_enabled(Some(false));
    let mut intel_rdt = IntelRdt::default();
    intel_rdt.set_enabled(Some(true));
    let mut idmap = IDMap::default();
    idmap.set_enabled(Some(false));
    let mut mounts = MountExtensions::default();
    mounts.set_idmap(Some(idmap));

    let mut linux = LinuxFeature::default();
    linux
        .set_namespaces(Some(vec![
            LinuxNamespaceType::Cgroup,
            LinuxNamespaceType::Ipc,
            LinuxNamespaceType::Mount,
            LinuxNamespaceType::Network,
            LinuxNamespaceType::Pid,
            LinuxNamespaceType::User,
            LinuxNamespaceType::Uts,
            LinuxNamespaceType::Time,
        ]))
        .set_capabilities(Some(
            caps::all().iter().map(|cap| cap.to_string()).collect(),
        ))
        .set_cgroup(Some(cgroup))
        .set_seccomp(Some(seccomp))
        .set_apparmor(Some(apparmor))
        .set_selinux(Some(selinux))
        .set_intel_rdt(Some(intel_rdt))
        .set_mount_extensions(Some(mounts));

    let mut features = Features::default();
    features
        .set_oci_version_min("1.0.0".to_owned())
        .set_oci_version_max(VERSION.to_owned())
        .set_hooks(Some(
            crate::engine::hook_stage::HOOK_STAGES
                .map(str::to_owned)
                .to_vec(),
        ))
        .set_mount_options(Some(MountOption::known_options()))
        .set_linux(Some(linux))
        .set_annotations(Some(HashMap::from([(
            "io.cdirun.version".to_owned(),
            env!("CARGO_PKG_VERSION").to_owned(),
        )])));
    features
}

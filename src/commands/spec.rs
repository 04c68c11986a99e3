//! `spec`: write a default config.json (runc's template) into the bundle or current directory.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use libcontainer::oci_spec::runtime::{
    LinuxDeviceCgroup, LinuxIdMapping, LinuxIdMappingBuilder, LinuxNamespace, LinuxNamespaceType,
    Mount, Spec,
};

use crate::bundle::CONFIG_FILE;

pub fn spec(args: liboci_cli::Spec) -> Result<()> {
    let spec = if args.rootless {
        rootless()?
    } else {
        default_spec()
    };
    let path = args
        .bundle
        .unwrap_or_else(|| PathBuf::from("."))
        .join(CONFIG_FILE);
    let mut file = match std::fs::File::create_new(&path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
            bail!("file {} exists: remove it first", path.display())
        }
        Err(err) => return Err(err).with_context(|| format!("cannot create {}", path.display())),
    };
    serde_json::to_writer_pretty(&mut file, &spec)?;
    file.write_all(b"\n")?;
    Ok(())
}

/// runc's template: oci-spec's default with a deny-all device rule, no inheritable or ambient
/// capabilities, and the hostname naming this runtime.
pub fn default_spec() -> Spec {
    let mut spec = Spec::default();
    spec.set_hostname(Some("cdirun".to_owned()));
    if let Some(process) = spec.process_mut() {
        if let Some(mut caps) = process.capabilities().clone() {
            caps.set_inheritable(None).set_ambient(None);
            process.set_capabilities(Some(caps));
        }
    }
    if let Some(linux) = spec.linux_mut() {
        if let Some(resources) = linux.resources_mut() {
            let mut deny_all = LinuxDeviceCgroup::default();
            deny_all.set_allow(false).set_access(Some("rwm".to_owned()));
            resources.set_devices(Some(vec![deny_all]));
        }
    }
    spec
}

/// The rootless template: a user namespace mapping the caller to root, no network namespace.
fn rootless() -> Result<Spec> {
    let mut spec = default_spec();
    let uid = nix::unistd::geteuid().as_raw();
    let gid = nix::unistd::getegid().as_raw();
    let linux = spec
        .linux_mut()
        .as_mut()
        .context("default spec has no linux section")?;
    let mut namespaces: Vec<LinuxNamespace> = linux
        .namespaces()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|ns| {
            !matches!(
                ns.typ(),
                LinuxNamespaceType::Network | LinuxNamespaceType::User
            )
        })
        .collect();
    let mut user = LinuxNamespace::default();
    user.set_typ(LinuxNamespaceType::User);
    namespaces.push(user);
    let mapping = |host: u32| -> Result<LinuxIdMapping> {
        Ok(LinuxIdMappingBuilder::default()
            .host_id(host)
            .container_id(0u32)
            .size(1u32)
            .build()?)
    };
    linux
        .set_namespaces(Some(namespaces))
        .set_uid_mappings(Some(vec![mapping(uid)?]))
        .set_gid_mappings(Some(vec![mapping(gid)?]))
        .set_resources(None);
    let mounts = spec
        .mounts()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(rootless_mount)
        .collect();
    spec.set_mounts(Some(mounts));
    Ok(spec)
}

/// As runc's rootless template has them: sysfs cannot be mounted without a network namespace of
/// the user namespace's own, so /sys is bound from the host, read-only; and `gid=5` (tty) names
/// a group the single-id mapping does not hold.
fn rootless_mount(mut mount: Mount) -> Mount {
    if mount.destination() == Path::new("/sys") {
        mount
            .set_typ(Some("none".to_owned()))
            .set_source(Some(PathBuf::from("/sys")))
            .set_options(Some(
                ["rbind", "nosuid", "noexec", "nodev", "ro"]
                    .map(str::to_owned)
                    .to_vec(),
            ));
    }
    if let Some(options) = mount.options().clone() {
        mount.set_options(Some(options.into_iter().filter(|o| o != "gid=5").collect()));
    }
    mount
}

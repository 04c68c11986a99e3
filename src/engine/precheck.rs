//! What libcontainer would refuse only late, or without naming the thing: checked before
//! anything is made, so the error names the file, limit or capability and nothing is left to
//! undo. Each check mirrors one refusal libcontainer (or the kernel under it) makes for certain.

use std::path::Path;

use anyhow::{Context, Result, bail};
use caps::{CapSet, Capability};
use libcontainer::oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::config::serde_name;

/// The checks `create` makes on the bundle's own config.json.
pub fn spec(bundle: &Path, spec: &Spec) -> Result<()> {
    rootfs(bundle, spec)?;
    namespaces(spec)?;
    rlimits(spec)?;
    capabilities(spec)
}

/// The root must be a directory. libcontainer reports a missing one as "io operation failed: No
/// such file or directory", naming nothing; runc says "invalid rootfs" and names the path.
fn rootfs(bundle: &Path, spec: &Spec) -> Result<()> {
    let Some(root) = spec.root() else {
        bail!("config.json has no root: set root.path to the container's root filesystem");
    };
    let path = bundle.join(root.path());
    match std::fs::metadata(&path) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => bail!(
            "invalid rootfs {}: not a directory (root.path in config.json)",
            path.display()
        ),
        Err(err) => Err(err).with_context(|| {
            format!(
                "invalid rootfs {} (root.path in config.json)",
                path.display()
            )
        }),
    }
}

/// runtime-spec (config-linux.md, namespaces): a namespace type given twice MUST be an error.
/// libcontainer takes the last one; runc refuses ("duplicated ns").
fn namespaces(spec: &Spec) -> Result<()> {
    let listed = spec.linux().as_ref().and_then(|l| l.namespaces().as_ref());
    let mut seen = Vec::new();
    for namespace in listed.into_iter().flatten() {
        let typ = namespace.typ();
        if seen.contains(&typ) {
            let name = serde_name(&typ).unwrap_or_else(|| format!("{typ:?}"));
            bail!("linux.namespaces: the {name} namespace is listed twice");
        }
        seen.push(typ);
    }
    Ok(())
}

/// A capability the init is to hold (effective, permitted, inheritable or ambient) has to be in
/// cdirun's own permitted set, or capset(2) fails in the init and libcontainer reports "failed
/// syscall". A host or a service that runs cdirun without a capability (CAP_SYS_RESOURCE is a
/// common one) meets this with `--privileged`. A container with a user namespace of its own
/// holds every capability in it, so it is not checked.
fn capabilities(spec: &Spec) -> Result<()> {
    let own_user_namespace = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|ns| ns.iter().any(|n| n.typ() == LinuxNamespaceType::User));
    let Some(wanted) = spec
        .process()
        .as_ref()
        .and_then(|p| p.capabilities().as_ref())
    else {
        return Ok(());
    };
    if own_user_namespace {
        return Ok(());
    }
    let sets = [
        wanted.effective(),
        wanted.permitted(),
        wanted.inheritable(),
        wanted.ambient(),
    ];
    let Ok(own) = caps::read(None, CapSet::Permitted) else {
        return Ok(());
    };
    // A capability this kernel does not know is left to libcontainer, as before.
    let known = caps::runtime::thread_all_supported();
    let mut missing: Vec<Capability> = sets
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(to_caps)
        .filter(|cap| known.contains(cap) && !own.contains(cap))
        .collect();
    // In the kernel's order, as /proc/PID/status lists them.
    missing.sort_by_key(|cap| cap.index());
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    let missing: Vec<String> = missing.iter().map(Capability::to_string).collect();
    bail!(
        "unable to apply caps: cdirun itself does not hold {} (the host or the service running \
         cdirun lacks it): drop it from process.capabilities",
        missing.join(", ")
    )
}

/// The caps crate's name for an oci-spec capability; `None` for one this caps version lacks.
fn to_caps(cap: &libcontainer::oci_spec::runtime::Capability) -> Option<Capability> {
    serde_name(cap)?.parse().ok()
}

/// An exec's cwd must be a directory in the container. libcontainer's init reports a missing
/// one as "failed to unix syscall"; runc names the directory. The path is resolved as the
/// container sees it, under its root and through its mounts, except that a symlink into the
/// container's /proc may name a process only the container sees: `exec` asks this only once
/// libcontainer failed.
pub fn exec_cwd(init_pid: i32, cwd: &str) -> Result<()> {
    use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
    let root = format!("/proc/{init_pid}/root");
    let Ok(dir) = std::fs::File::open(&root) else {
        // A container that is gone by now fails later with the usual status error.
        return Ok(());
    };
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT);
    match openat2(std::os::fd::AsRawFd::as_raw_fd(&dir), cwd, how) {
        Ok(fd) => {
            let _ = nix::unistd::close(fd);
            Ok(())
        }
        Err(errno @ (nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR)) => bail!(
            "chdir to cwd ({cwd:?}) set in the exec process failed: {}",
            errno.desc().to_lowercase()
        ),
        // Anything else (a permission the process's user lacks) is for the init to find.
        Err(_) => Ok(()),
    }
}

/// Refuses `process.rlimits` the container's init could not set, naming the limit. libcontainer
/// sets them in its intermediate process and reports only "intermediate process error EPERM";
/// runc names the limit. Raising a hard limit above cdirun's own needs CAP_SYS_RESOURCE, which a
/// root inside an unprivileged container host (or a restricted service) may lack.
fn rlimits(spec: &Spec) -> Result<()> {
    let rlimits = spec.process().as_ref().and_then(|p| p.rlimits().as_ref());
    let mut may_raise = None;
    for rlimit in rlimits.into_iter().flatten() {
        // Named only for an error: "RLIMIT_NOFILE", as config.json spells it.
        let name = || serde_name(&rlimit.typ()).unwrap_or_else(|| format!("{:?}", rlimit.typ()));
        let (soft, hard) = (rlimit.soft(), rlimit.hard());
        if soft > hard {
            bail!(
                "process.rlimits: {} soft limit {soft} is above its hard limit {hard}",
                name()
            );
        }
        let mut own = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes only `own`; the oci-spec enum's values are the kernel's
        // resource numbers (libcontainer passes them to setrlimit the same way).
        if unsafe { libc::getrlimit(rlimit.typ() as _, &mut own) } != 0 {
            bail!(
                "process.rlimits: {} is not a limit this kernel knows",
                name()
            );
        }
        if hard > own.rlim_max
            && !*may_raise.get_or_insert_with(|| {
                caps::has_cap(None, CapSet::Effective, Capability::CAP_SYS_RESOURCE)
                    .unwrap_or(false)
            })
        {
            bail!(
                "process.rlimits: cannot raise the hard limit of {} to {hard} (cdirun's is {}) \
                 without CAP_SYS_RESOURCE",
                name(),
                own.rlim_max
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use caps::CapsHashSet;

    fn spec_with_caps(caps: &[&str], user_namespace: bool) -> Spec {
        let mut value = serde_json::to_value(Spec::default()).unwrap();
        let caps: Vec<_> = caps.iter().map(|c| serde_json::json!(c)).collect();
        for set in ["effective", "permitted", "bounding"] {
            value["process"]["capabilities"][set] = serde_json::json!(caps);
        }
        if user_namespace {
            value["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .push(serde_json::json!({"type": "user"}));
        }
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_capability_cdirun_lacks_is_named() {
        let own = caps::read(None, CapSet::Permitted).unwrap();
        let Some(lacking) = caps::all().into_iter().find(|c| !own.contains(c)) else {
            // Every capability is held: the refusal cannot happen here, and the check passes.
            assert!(capabilities(&spec_with_caps(&["CAP_SYS_RESOURCE"], false)).is_ok());
            return;
        };
        let name = lacking.to_string();
        let err = capabilities(&spec_with_caps(&["CAP_CHOWN", &name], false)).unwrap_err();
        assert!(err.to_string().contains(&name), "{err}");
        assert!(!err.to_string().contains("CAP_CHOWN"), "{err}");
        // In a user namespace of its own the init holds it.
        assert!(capabilities(&spec_with_caps(&[&name], true)).is_ok());
    }

    #[test]
    fn held_capabilities_pass() {
        let own: CapsHashSet = caps::read(None, CapSet::Permitted).unwrap();
        let names: Vec<String> = own.iter().map(|c| c.to_string()).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        assert!(capabilities(&spec_with_caps(&names, false)).is_ok());
    }

    #[test]
    fn a_namespace_listed_twice_is_refused() {
        let mut value = serde_json::to_value(Spec::default()).unwrap();
        let listed = value["linux"]["namespaces"].as_array_mut().unwrap();
        listed.retain(|ns| ns["type"] != "cgroup");
        listed.push(serde_json::json!({"type": "cgroup"}));
        let once: Spec = serde_json::from_value(value.clone()).unwrap();
        assert!(namespaces(&once).is_ok());
        value["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"type": "cgroup", "path": "/proc/1/ns/cgroup"}));
        let twice: Spec = serde_json::from_value(value).unwrap();
        let err = namespaces(&twice).unwrap_err().to_string();
        assert_eq!(
            err,
            "linux.namespaces: the cgroup namespace is listed twice"
        );
    }

    #[test]
    fn a_missing_rootfs_is_named() {
        let bundle = tempfile::tempdir().unwrap();
        let spec = Spec::default();
        let err = rootfs(bundle.path(), &spec).unwrap_err();
        let line = format!("{err:#}");
        assert!(
            line.contains(&bundle.path().join("rootfs").display().to_string()),
            "{line}"
        );
        assert!(line.contains("No such file or directory"), "{line}");
        std::fs::write(bundle.path().join("rootfs"), "").unwrap();
        let line = format!("{:#}", rootfs(bundle.path(), &spec).unwrap_err());
        assert!(line.contains("not a directory"), "{line}");
        std::fs::remove_file(bundle.path().join("rootfs")).unwrap();
        std::fs::create_dir(bundle.path().join("rootfs")).unwrap();
        assert!(rootfs(bundle.path(), &spec).is_ok());
    }
}

//! `exec` through libcontainer: a process started in a running container by libcontainer's
//! tenant builder ([`exec`]), with what that builder leaves undone or does unlike runc:
//!
//! - The user namespace: libcontainer 0.7 joins every namespace of the container but that one
//!   ([`refuse_own_user_namespace`]). Goes when its tenant builder joins it.
//! - Seccomp: the container's filter is applied to the process (see
//!   [`super::executor::seccomp_for_exec`]). Goes when libcontainer applies it to execs.
//! - Hierarchies it does not manage (hybrid host): the process is forked from the container's
//!   cgroup there and joined to it after (`Unmanaged`). Goes when libcontainer joins every
//!   hierarchy.
//! - Per-exec files it leaves in the state dir (`TenantFiles`). Goes when it removes them.
//! - HOME looked up through the image's NSS modules (see [`super::nss`]).
//! - A missing cwd, which its init reports only as a failed syscall (`missing_cwd`). Goes
//!   when its error names the directory.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use libcontainer::container::Container;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::oci_spec::runtime::Spec;
use libcontainer::syscall::syscall::SyscallType;
use nix::unistd::Pid;
use serde_json::Value;

use crate::cgroup;

/// One exec, as the flags ask for it.
pub struct Tenant<'a> {
    /// `--root`.
    pub root: &'a Path,
    pub console_socket: Option<&'a Path>,
    /// Absolute.
    pub pid_file: Option<PathBuf>,
    pub preserve_fds: i32,
    pub detach: bool,
    pub ignore_paused: bool,
    /// `--cgroup`: a sub-cgroup of the container's to run in.
    pub sub_cgroup: Option<String>,
    pub rootless: bool,
}

/// Starts `process` (an OCI process object, already checked) in `container`, whose config is
/// `spec`, and returns its pid.
pub fn exec(tenant: &Tenant, container: &Container, spec: &Spec, process: &Value) -> Result<Pid> {
    let id = container.id();
    if let Some(profile) = spec.linux().as_ref().and_then(|l| l.seccomp().clone()) {
        super::executor::seccomp_for_exec(profile);
    }
    let container_dir = tenant.root.join(id);
    if crate::rootless::cgroups_hidden() {
        // libcontainer adds the exec'd process to the container's cgroup: in this process's
        // private tmpfs (see crate::rootless::hide_cgroups) that must exist first.
        let config = libcontainer::config::YoukiConfig::load(&container_dir)
            .with_context(|| format!("cannot read the recorded config of container {id:?}"))?;
        let text = config.cgroup_path.to_string_lossy().into_owned();
        let path = cgroup::CgroupPath::parse(&text)?;
        let hierarchies = cgroup::Hierarchies::discover()
            .context("cannot read the cgroup mounts from /proc/self/mountinfo")?;
        crate::rootless::fake_cgroup(&hierarchies, &path)
            .with_context(|| format!("cannot make cgroup {path} in the private cgroup tmpfs"))?;
    }
    super::nss::files_only();
    let tenants = TenantFiles::lock(&container_dir)?;
    let process_file = ProcessFile::write(&container_dir, process)?;
    // Read once for the stay and the join. Rootless, cdirun may not move itself: the process
    // is only placed after its start, and a failure to find where is a warning, as the join's.
    let unmanaged = match Unmanaged::of(container) {
        Ok(unmanaged) => unmanaged,
        Err(err) if tenant.rootless => {
            tracing::warn!("{err:#}");
            None
        }
        Err(err) => return Err(err),
    };
    let targets = unmanaged
        .as_ref()
        .map(Unmanaged::targets)
        .unwrap_or_default();
    let stay = match (&unmanaged, tenant.rootless) {
        (Some(unmanaged), false) => unmanaged.stay(&targets)?,
        _ => None,
    };
    let built = ContainerBuilder::new(id.to_owned(), SyscallType::default())
        .with_executor(super::executor::RuncExecutor)
        .with_root_path(tenant.root)?
        .with_console_socket(tenant.console_socket)
        .with_pid_file(tenant.pid_file.clone())?
        .with_preserved_fds(tenant.preserve_fds)
        .validate_id()?
        .as_tenant()
        .with_detach(tenant.detach)
        .with_process(Some(&process_file.path))
        .with_ignore_paused(tenant.ignore_paused)
        .with_sub_cgroup(tenant.sub_cgroup.clone())
        .build();
    // The process runs by now: failing the exec would tell the client it did not.
    if let Err(err) = stay.map(cgroup::Stay::leave).transpose() {
        tracing::warn!("cannot leave the cgroup of container {id:?}: {err}");
    }
    drop(process_file);
    tenants.remove();
    let pid = built.map_err(|err| missing_cwd(container, process).unwrap_or_else(|| err.into()))?;
    if let Some(unmanaged) = &unmanaged {
        if let Err(err) = unmanaged.join(&targets, pid) {
            tracing::warn!("{err:#}");
        }
    }
    Ok(pid)
}

/// The reason a failed exec failed when it is the process's cwd, which libcontainer's init
/// reports as "failed to unix syscall". Looked at only after the failure: a directory reached
/// through a symlink into the container's /proc may resolve only for the container itself.
fn missing_cwd(container: &Container, process: &Value) -> Option<anyhow::Error> {
    let cwd = process.get("cwd").and_then(Value::as_str)?;
    let pid = container.pid()?;
    crate::engine::precheck::exec_cwd(pid.as_raw(), cwd).err()
}

/// libcontainer 0.7 joins an exec'd process to every namespace of the container except its user
/// namespace (its tenant builder lists no "user"): in a container with a user namespace of its
/// own the process would run as the host's root inside the container's mounts, where the
/// container's root is an unprivileged host uid. runc joins the user namespace first; until
/// libcontainer can, cdirun refuses such an exec.
pub fn refuse_own_user_namespace(container: &Container) -> Result<()> {
    let Some(pid) = container.pid() else {
        return Ok(());
    };
    let ours =
        std::fs::read_link("/proc/self/ns/user").context("cannot read /proc/self/ns/user")?;
    let theirs = std::fs::read_link(format!("/proc/{pid}/ns/user"));
    match theirs {
        Ok(theirs) if theirs != ours => bail!(
            "cannot exec in container {:?}: it runs in a user namespace of its own, which cdirun cannot join for exec yet (libcontainer 0.7); the process would run as the host's root",
            container.id()
        ),
        // A container that is gone by now fails below with the usual status error.
        _ => Ok(()),
    }
}

/// libcontainer leaves the notify socket of every exec, and the console socket link of a
/// `--tty` one, in the container's state dir until the container is deleted: a container probed
/// by exec every few seconds would collect thousands. The names are random, so an exec cannot
/// tell its own from those of an exec still starting. Execs into one container therefore hold
/// an exclusive lock on its state dir while libcontainer starts their process; once it returns,
/// every such file there belongs to a finished start and is removed.
struct TenantFiles {
    dir: nix::fcntl::Flock<std::fs::File>,
}

/// The name prefixes of libcontainer's per-exec files (container/tenant_builder.rs).
const TENANT_FILE_PREFIXES: [&str; 2] = ["tenant-notify-", "tenant-tty-"];

impl TenantFiles {
    fn lock(container_dir: &Path) -> Result<Self> {
        let dir = std::fs::File::open(container_dir)
            .with_context(|| format!("cannot open {}", container_dir.display()))?;
        let dir = nix::fcntl::Flock::lock(dir, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, errno)| errno)
            .with_context(|| format!("cannot lock {}", container_dir.display()))?;
        Ok(TenantFiles { dir })
    }

    /// Removes the finished starts' files (a failure only costs a stale file) and unlocks.
    fn remove(self) {
        use std::os::fd::AsRawFd;
        let dir_fd = self.dir.as_raw_fd();
        let Ok(entries) = nix::dir::Dir::openat(
            Some(dir_fd),
            ".",
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY,
            nix::sys::stat::Mode::empty(),
        ) else {
            return;
        };
        for entry in entries.into_iter().flatten() {
            let name = entry.file_name();
            let is_tenant = name
                .to_str()
                .is_ok_and(|n| TENANT_FILE_PREFIXES.iter().any(|p| n.starts_with(p)));
            if is_tenant {
                let _ = nix::unistd::unlinkat(
                    Some(dir_fd),
                    name,
                    nix::unistd::UnlinkatFlags::NoRemoveDir,
                );
            }
        }
    }
}

/// The process for libcontainer, written into the container's state dir (readable by root only:
/// it carries the environment) and removed once the process started.
struct ProcessFile {
    path: PathBuf,
}

impl ProcessFile {
    fn write(container_dir: &Path, process: &Value) -> Result<Self> {
        let path = container_dir.join(format!("exec-{}.json", std::process::id()));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        let file_guard = Self { path };
        serde_json::to_writer(&mut file, process)?;
        file.flush()?;
        Ok(file_guard)
    }
}

impl Drop for ProcessFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Where `create`, not libcontainer, placed the container: the hierarchies libcontainer leaves
/// alone (the cgroup2 mount and named v1 hierarchies of a hybrid host) and the container's
/// cgroup path there. `None` under systemd, whose unit holds the container.
struct Unmanaged {
    hierarchies: cgroup::Hierarchies,
    path: cgroup::CgroupPath,
}

impl Unmanaged {
    fn of(container: &Container) -> Result<Option<Self>> {
        if container.systemd() {
            return Ok(None);
        }
        let config = container
            .spec()
            .context("cannot read the recorded config")?;
        let path = cgroup::CgroupPath::parse(&config.cgroup_path.to_string_lossy())?;
        let hierarchies = cgroup::Hierarchies::discover()
            .context("cannot read the cgroup mounts from /proc/self/mountinfo")?;
        Ok(Some(Self { hierarchies, path }))
    }

    /// The hierarchies where create placed the init: a missing scope is not exec's to create.
    fn targets(&self) -> Vec<&cgroup::Hierarchy> {
        self.hierarchies
            .not_managed_by_libcontainer()
            .into_iter()
            .filter(|h| h.dir(&self.path).is_dir())
            .collect()
    }

    /// cdirun stands in the container's cgroup in `targets` while libcontainer forks the
    /// process, so that the process joins the container's cgroup namespace from there and
    /// sees `/` (see [`cgroup::Stay`]); [`Self::join`] then finds it in place.
    fn stay(&self, targets: &[&cgroup::Hierarchy]) -> Result<Option<cgroup::Stay>> {
        if targets.is_empty() {
            return Ok(None);
        }
        let stay = cgroup::Stay::enter(targets, &self.path).with_context(|| {
            format!(
                "cannot enter cgroup {} to start the exec process there",
                self.path
            )
        })?;
        Ok(Some(stay))
    }

    /// libcontainer joins an exec'd process to the v1 controllers only, so on a hybrid host it
    /// would stay in cdirun's own cgroup in `targets`, outside the container's scope that
    /// `create` put the init in. This moves it there too (where it was not born there). It
    /// runs after the process started: children it forked before this point stay behind,
    /// which is why a failure here is a warning, not an error.
    fn join(&self, targets: &[&cgroup::Hierarchy], pid: Pid) -> Result<()> {
        cgroup::Scope::new(&self.hierarchies, self.path.clone())
            .add_process(pid.as_raw(), targets)
            .with_context(|| format!("cannot move exec process {pid} into cgroup {}", self.path))
    }
}

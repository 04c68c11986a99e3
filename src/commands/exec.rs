//! `exec`: run a process inside a running container (`--process FILE` or argv), in the
//! foreground (its exit status is ours) or with `--detach`.

use anyhow::{Context, Result};
use libcontainer::container::Container;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use nix::unistd::Pid;

use super::Globals;
use crate::cgroup;

pub fn exec(args: liboci_cli::Exec, globals: &Globals) -> Result<i32> {
    let id = &args.container_id;
    // Refuse early with runc's message rather than libcontainer's state-file error.
    let container = super::load_container(globals, id)?;
    let pid_file = args.pid_file.as_deref().map(super::absolute).transpose()?;
    let (user, group) = match args.user {
        Some((uid, gid)) => (Some(uid), gid),
        None => (None, None),
    };
    let pid = ContainerBuilder::new(id.clone(), SyscallType::default())
        .with_executor(super::executor::RuncExecutor)
        .with_root_path(&globals.root)?
        .with_console_socket(args.console_socket.as_ref())
        .with_pid_file(pid_file)?
        .with_preserved_fds(args.preserve_fds)
        .validate_id()?
        .as_tenant()
        .with_detach(args.detach)
        .with_cwd(args.cwd.as_ref())
        .with_env(args.env.into_iter().collect())
        .with_process(args.process.as_ref())
        .with_no_new_privs(args.no_new_privs)
        .with_container_args(args.command)
        .with_additional_gids(args.additional_gids)
        .with_user(user)
        .with_group(group)
        .with_capabilities(args.cap)
        .with_ignore_paused(args.ignore_paused)
        .with_sub_cgroup(args.cgroup)
        .with_process_label(args.process_label)
        .with_apparmor(args.apparmor)
        .build()
        .with_context(|| format!("cannot exec in container {id:?}"))?;
    if let Err(err) = join_unmanaged(&container, pid) {
        tracing::warn!("{err:#}");
    }
    if args.detach {
        return Ok(0);
    }
    super::run::wait_forwarding(pid)
}

/// libcontainer joins an exec'd process to the v1 controllers only, so on a hybrid host it would
/// stay in cdirun's own cgroup in the cgroup2 mount (and named v1 hierarchies), outside the
/// container's scope that `create` put the init in. This moves it there too. It runs after the
/// process started: children it forked before this point stay behind, which is why a failure
/// here is a warning, not an error.
fn join_unmanaged(container: &Container, pid: Pid) -> Result<()> {
    if container.systemd() {
        return Ok(());
    }
    let config = container
        .spec()
        .context("cannot read the recorded config")?;
    let path = cgroup::CgroupPath::parse(&config.cgroup_path.to_string_lossy())?;
    let hierarchies = cgroup::Hierarchies::discover()
        .context("cannot read the cgroup mounts from /proc/self/mountinfo")?;
    // Only where create placed the init: a missing scope is not ours to create here.
    let targets: Vec<_> = hierarchies
        .not_managed_by_libcontainer()
        .into_iter()
        .filter(|h| h.dir(&path).is_dir())
        .collect();
    cgroup::Scope::new(&hierarchies, path.clone())
        .add_process(pid.as_raw(), &targets)
        .with_context(|| format!("cannot move exec process {pid} into cgroup {path}"))
}

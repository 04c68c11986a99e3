//! `exec`: run a process inside a running container (`--process FILE` or argv), in the
//! foreground (its exit status is ours) or with `--detach`.

use anyhow::{Context, Result};
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::default::DefaultExecutor;

use super::Globals;

pub fn exec(args: liboci_cli::Exec, globals: &Globals) -> Result<i32> {
    let id = &args.container_id;
    // Refuse early with runc's message rather than libcontainer's state-file error.
    super::load_container(globals, id)?;
    let pid_file = args.pid_file.as_deref().map(super::absolute).transpose()?;
    let (user, group) = match args.user {
        Some((uid, gid)) => (Some(uid), gid),
        None => (None, None),
    };
    let pid = ContainerBuilder::new(id.clone(), SyscallType::default())
        .with_executor(DefaultExecutor {})
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
    if args.detach {
        return Ok(0);
    }
    super::run::wait_forwarding(pid)
}

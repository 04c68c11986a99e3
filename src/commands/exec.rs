//! `exec`: run a process inside a running container (`--process FILE` or argv), in the
//! foreground (its exit status is ours) or with `--detach`.
//!
//! The process is always handed to libcontainer as a file. With argv it is built as runc builds
//! it: the container's own process (user, cwd, capabilities, rlimits, ...) with the command and
//! the flags laid over it. libcontainer's own argv mode starts from an empty process instead, so
//! an exec in a container that runs as `nobody` would run as root in `/` and ignore `--tty`.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use libcontainer::container::Container;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::oci_spec::runtime::Spec;
use libcontainer::syscall::syscall::SyscallType;
use nix::unistd::Pid;
use serde_json::{Map, Value, json};

use super::Globals;
use crate::cgroup;

pub fn exec(args: liboci_cli::Exec, globals: &Globals) -> Result<i32> {
    let id = &args.container_id;
    // Refuse early with runc's message rather than libcontainer's state-file error.
    let container = super::load_container(globals, id)?;
    refuse_own_user_namespace(&container)?;
    let spec = crate::bundle::load(container.bundle())?;
    let process = match &args.process {
        Some(path) => from_file(path)?,
        None => from_flags(&args, &spec)?,
    };
    if let Some(profile) = spec.linux().as_ref().and_then(|l| l.seccomp().clone()) {
        crate::engine::executor::seccomp_for_exec(profile);
    }
    check(&process)?;
    if process.get("terminal") == Some(&Value::Bool(true))
        && args.detach
        && args.console_socket.is_none()
    {
        bail!("a detached exec with a terminal needs --console-socket to send the terminal to");
    }
    let container_dir = globals.container_dir(id);
    if crate::rootless::cgroups_hidden() {
        // libcontainer adds the exec'd process to the container's cgroup: in this process's
        // private tmpfs (see crate::rootless::hide_cgroups) that must exist first.
        let config = libcontainer::config::YoukiConfig::load(&container_dir)
            .with_context(|| format!("cannot read the recorded config of container {id:?}"))?;
        let text = config.cgroup_path.to_string_lossy().into_owned();
        let path = crate::cgroup::CgroupPath::parse(&text)?;
        let hierarchies = crate::cgroup::Hierarchies::discover()
            .context("cannot read the cgroup mounts from /proc/self/mountinfo")?;
        crate::rootless::fake_cgroup(&hierarchies, &path)
            .with_context(|| format!("cannot make cgroup {path} in the private cgroup tmpfs"))?;
    }
    let tenants = TenantFiles::lock(&container_dir)?;
    let process_file = ProcessFile::write(&container_dir, &process)?;
    let pid_file = args.pid_file.as_deref().map(super::absolute).transpose()?;
    // Read once for the stay and the join. Rootless, cdirun may not move itself: the process
    // is only placed after its start, and a failure to find where is a warning, as the join's.
    let unmanaged = match Unmanaged::of(&container) {
        Ok(unmanaged) => unmanaged,
        Err(err) if globals.rootless => {
            tracing::warn!("{err:#}");
            None
        }
        Err(err) => return Err(err),
    };
    let targets = unmanaged
        .as_ref()
        .map(Unmanaged::targets)
        .unwrap_or_default();
    let stay = match (&unmanaged, globals.rootless) {
        (Some(unmanaged), false) => unmanaged.stay(&targets)?,
        _ => None,
    };
    let built = ContainerBuilder::new(id.clone(), SyscallType::default())
        .with_executor(crate::engine::executor::RuncExecutor)
        .with_root_path(&globals.root)?
        .with_console_socket(args.console_socket.as_ref())
        .with_pid_file(pid_file)?
        .with_preserved_fds(args.preserve_fds)
        .validate_id()?
        .as_tenant()
        .with_detach(args.detach)
        .with_process(Some(&process_file.path))
        .with_ignore_paused(args.ignore_paused)
        .with_sub_cgroup(args.cgroup)
        .build();
    // The process runs by now: failing the exec would tell the client it did not.
    if let Err(err) = stay.map(cgroup::Stay::leave).transpose() {
        tracing::warn!("cannot leave the cgroup of container {id:?}: {err}");
    }
    drop(process_file);
    tenants.remove();
    let pid = built
        .map_err(|err| missing_cwd(&container, &process).unwrap_or_else(|| err.into()))
        .with_context(|| format!("cannot exec in container {id:?}"))?;
    if let Some(unmanaged) = &unmanaged {
        if let Err(err) = unmanaged.join(&targets, pid) {
            tracing::warn!("{err:#}");
        }
    }
    if args.detach {
        return Ok(0);
    }
    super::run::wait_forwarding(pid)
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
fn refuse_own_user_namespace(container: &Container) -> Result<()> {
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

/// `--process FILE`: the file as it is (runc ignores the other process flags then), with runc's
/// zero value for a missing `user`, which libcontainer would refuse.
fn from_file(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read process file {}", path.display()))?;
    let mut process: Value = serde_json::from_str(&text)
        .with_context(|| format!("{}: invalid process JSON", path.display()))?;
    let Some(fields) = process.as_object_mut() else {
        bail!("{}: a process must be a JSON object", path.display());
    };
    fields
        .entry("user")
        .or_insert_with(|| json!({"uid": 0, "gid": 0}));
    Ok(process)
}

/// argv and flags: the container's process from its config.json, with the command, `--tty`,
/// `--env` (replacing a variable of the same name), `--cwd`, `--user`, `--additional-gids`,
/// `--cap`, `--no-new-privs`, `--apparmor` and `--process-label` laid over it as runc does.
fn from_flags(args: &liboci_cli::Exec, spec: &Spec) -> Result<Value> {
    let mut process = match serde_json::to_value(spec.process())? {
        Value::Object(fields) => fields,
        _ => Map::new(),
    };
    process.insert("args".into(), json!(args.command));
    process.insert("terminal".into(), Value::Bool(args.tty));
    set_env(&mut process, &args.env);
    if let Some(cwd) = &args.cwd {
        process.insert("cwd".into(), json!(cwd));
    }
    if args.no_new_privs {
        process.insert("noNewPrivileges".into(), Value::Bool(true));
    }
    if let Some(profile) = &args.apparmor {
        process.insert("apparmorProfile".into(), json!(profile));
    }
    if let Some(label) = &args.process_label {
        process.insert("selinuxLabel".into(), json!(label));
    }
    set_user(&mut process, args.user, &args.additional_gids);
    add_caps(&mut process, &args.cap);
    Ok(Value::Object(process))
}

fn set_env(process: &mut Map<String, Value>, overrides: &[(String, String)]) {
    let mut env: Vec<String> = process
        .get("env")
        .and_then(Value::as_array)
        .map(|entries| {
            entries
                .iter()
                .filter_map(|e| e.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    for (key, value) in overrides {
        env.retain(|entry| entry.split('=').next() != Some(key.as_str()));
        env.push(format!("{key}={value}"));
    }
    process.insert("env".into(), json!(env));
}

/// `--user uid[:gid]` replaces the ids; `--additional-gids` adds to the container's own.
fn set_user(process: &mut Map<String, Value>, user: Option<(u32, Option<u32>)>, gids: &[u32]) {
    let entry = process.entry("user").or_insert_with(|| json!({}));
    if !entry.is_object() {
        *entry = json!({});
    }
    let Value::Object(fields) = entry else {
        return;
    };
    if let Some((uid, gid)) = user {
        fields.insert("uid".into(), json!(uid));
        if let Some(gid) = gid {
            fields.insert("gid".into(), json!(gid));
        }
    }
    fields.entry("uid").or_insert(json!(0));
    fields.entry("gid").or_insert(json!(0));
    if !gids.is_empty() {
        let list = fields.entry("additionalGids").or_insert_with(|| json!([]));
        if let Value::Array(list) = list {
            list.extend(gids.iter().map(|gid| json!(gid)));
        }
    }
}

/// `--cap` joins the bounding, effective and permitted sets, and the ambient one only when the
/// container has inheritable capabilities (without them ambient ones cannot be raised).
fn add_caps(process: &mut Map<String, Value>, caps: &[String]) {
    if caps.is_empty() {
        return;
    }
    let entry = process.entry("capabilities").or_insert_with(|| json!({}));
    let Value::Object(sets) = entry else {
        return;
    };
    let mut targets = vec!["bounding", "effective", "permitted"];
    if sets.get("inheritable").is_some_and(|v| !v.is_null()) {
        targets.push("ambient");
    }
    for set in targets {
        let list = sets.entry(set).or_insert_with(|| json!([]));
        if let Value::Array(list) = list {
            for cap in caps {
                if !list.iter().any(|c| c.as_str() == Some(cap)) {
                    list.push(json!(cap));
                }
            }
        }
    }
}

/// runc's checks of an exec process, in its words, before anything starts.
fn check(process: &Value) -> Result<()> {
    let has_args = process
        .get("args")
        .and_then(Value::as_array)
        .is_some_and(|args| !args.is_empty());
    if !has_args {
        bail!("process args cannot be empty: name a command after the container id");
    }
    match process.get("cwd").and_then(Value::as_str) {
        None | Some("") => bail!("process cwd cannot be empty"),
        Some(cwd) if !cwd.starts_with('/') => {
            bail!("cwd {cwd:?} must be an absolute path")
        }
        Some(_) => Ok(()),
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

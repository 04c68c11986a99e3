//! `create` through libcontainer: the edited config made into one libcontainer takes, saved into
//! the bundle (libcontainer reads it from there), built into an init that waits for `start`, then
//! placed and finished as runc would leave it. [`create`] is the one call; what it returns is
//! kept with [`Created::keep`] or undone with [`Created::discard`].

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use libcontainer::container::Container;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::oci_spec::runtime::{LinuxNamespaceType, Spec};
use libcontainer::syscall::syscall::SyscallType;

use super::cgroups::Cgroups;
use super::creation::pause_at;
use super::{finish, hook_failure, hook_output, mounts};
use crate::bundle;

/// One container's init, as `create` and `run` ask for it.
pub struct Init<'a> {
    pub id: &'a str,
    /// `--root`: libcontainer's state dir is `<root>/<id>`.
    pub root: &'a Path,
    /// The bundle directory, absolute.
    pub bundle: &'a Path,
    /// Absolute.
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<&'a Path>,
    pub preserve_fds: i32,
    pub no_pivot: bool,
    /// `false` only for a foreground `run`: the container keeps cdirun's stdio.
    pub detach: bool,
    /// `--systemd-cgroup`: libcontainer's systemd driver.
    pub systemd: bool,
    pub rootless: bool,
    /// cdirun's state-dir, where the ID mapping helpers of a rootless create live.
    pub state_dir: &'a Path,
}

/// Saves `spec` (the edited config) as the bundle's config.json and creates the container,
/// placed in `cgroups` and finished. On failure everything libcontainer made is gone again,
/// and config.json is left to the caller (see [`bundle::Config::restore`]).
pub fn create(
    init: &Init,
    on_disk: &bundle::Config,
    mut spec: Spec,
    cgroups: &Cgroups,
) -> Result<Created> {
    mounts::fix(&mut spec)?;
    super::nss::files_only();
    let rootfs = rootfs_of(init.bundle, &spec);
    let mut finish = finish::Finish::prepare(&mut spec, &on_disk.source, &rootfs);
    let own_userns = has_user_namespace(&spec);
    if init.rootless && own_userns {
        finish.skip_cgroup_mounts();
    }
    let helpers = match own_userns {
        true => crate::rootless::IdMapHelpers::install(init.state_dir).unwrap_or_else(|err| {
            tracing::warn!("cannot install the ID mapping helpers: {err}");
            None
        }),
        false => None,
    };
    let built = build_in_scope(init, on_disk, &spec, cgroups);
    if let Some(helpers) = helpers {
        helpers.remove();
    }
    let created = Created {
        container: built.inspect_err(|_| cgroups.remove_nested())?,
        spec,
    };
    pause_at("built");
    let finished = created.pid().and_then(|pid| {
        cgroups.place_init(pid)?;
        cgroups.disable_oom_killer(&created.spec)?;
        cgroups.enforce_unit_devices(pid, &created.spec)?;
        finish.apply(pid, &rootfs)
    });
    match finished {
        Ok(()) => Ok(created),
        Err(err) => {
            created.discard(cgroups);
            Err(err)
        }
    }
}

/// A created container whose init waits for `start`, and the config it was created from.
pub struct Created {
    container: Container,
    spec: Spec,
}

impl Created {
    pub fn container(&self) -> &Container {
        &self.container
    }

    /// The config as saved into the bundle.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// The init's pid.
    pub fn pid(&self) -> Result<i32> {
        let pid = self
            .container
            .pid()
            .context("container has no init pid after create")?;
        Ok(pid.as_raw())
    }

    pub fn keep(self) -> Container {
        self.container
    }

    /// Kills the waiting init and removes what libcontainer made: its state dir and cgroups.
    /// libcontainer cannot remove a cgroup with children (a hook may have made some), so those
    /// go first.
    pub fn discard(mut self, cgroups: &Cgroups) {
        cgroups.remove_nested();
        delete_half_created(&mut self.container);
    }
}

/// Kills a built container's init and removes its state dir and cgroup; a failure only warns,
/// as the create fails anyway.
fn delete_half_created(container: &mut Container) {
    if let Err(err) = container.delete(true) {
        tracing::warn!("cannot delete half-created container: {err}");
    }
}

/// The build, with cdirun standing in the container's scope while libcontainer forks (see
/// [`Cgroups::stay`]). Leaving the scope fails only when cdirun cannot move itself back: the
/// built init goes with the create then, as on every failure after the build.
fn build_in_scope(
    init: &Init,
    on_disk: &bundle::Config,
    spec: &Spec,
    cgroups: &Cgroups,
) -> Result<Container> {
    let stay = cgroups.stay()?;
    let built = save_and_build(init, on_disk, spec);
    match (built, stay.map(crate::cgroup::Stay::leave).transpose()) {
        (Ok(mut container), Err(err)) => {
            delete_half_created(&mut container);
            Err(anyhow!(err).context("cannot return to cdirun's own cgroup"))
        }
        (built, left) => {
            if let Err(err) = left {
                tracing::warn!("cannot return to cdirun's own cgroup: {err}");
            }
            built
        }
    }
}

fn save_and_build(init: &Init, on_disk: &bundle::Config, spec: &Spec) -> Result<Container> {
    on_disk.save(init.bundle, spec)?;
    pause_at("saved");
    std::fs::create_dir_all(init.root)
        .with_context(|| format!("cannot create root directory {}", init.root.display()))?;
    let output = capture_hook_output(spec, init.root)?;
    let built = ContainerBuilder::new(init.id.to_owned(), SyscallType::default())
        .with_executor(super::executor::RuncExecutor)
        .with_root_path(init.root)?
        .with_pid_file(init.pid_file.clone())?
        .with_console_socket(init.console_socket)
        .with_preserved_fds(init.preserve_fds)
        .validate_id()?
        .as_init(init.bundle)
        .with_systemd(init.systemd)
        .with_detach(init.detach)
        .with_no_pivot(init.no_pivot)
        .build();
    let container_dir = init.root.join(init.id);
    let stderr = output
        .map(|o| o.end(built.is_ok().then_some(container_dir.as_path())))
        .unwrap_or_default();
    built.map_err(|err| build_error(err, spec, &stderr))
}

/// Sends the output of the hooks libcontainer runs during the build to the log (see
/// [`hook_output`]), when the config has any.
fn capture_hook_output(spec: &Spec, root: &Path) -> Result<Option<hook_output::Capture>> {
    let Some(hooks) = spec.hooks() else {
        return Ok(None);
    };
    let some = |list: &Option<Vec<_>>| list.as_ref().is_some_and(|l| !l.is_empty());
    #[allow(deprecated)] // prestart is deprecated in the runtime spec but still run
    let any = some(hooks.prestart())
        || some(hooks.create_runtime())
        || some(hooks.create_container())
        || some(hooks.start_container());
    if !any {
        return Ok(None);
    }
    let mark = some(hooks.start_container()).then_some(root);
    Ok(Some(hook_output::Capture::begin(mark)?))
}

/// libcontainer's error, or for a failed hook an error that names it (libcontainer's does not).
fn build_error(
    err: libcontainer::error::LibcontainerError,
    spec: &Spec,
    stderr: &str,
) -> anyhow::Error {
    let hooks = spec.hooks().as_ref();
    match hooks.and_then(|hooks| hook_failure::explain(&err, hooks)) {
        Some(failed) => failed.with_stderr(stderr).into(),
        None => err.into(),
    }
}

/// The host path of the container's root: config.json's `root.path`, relative to the bundle.
fn rootfs_of(bundle: &Path, spec: &Spec) -> PathBuf {
    let path = spec
        .root()
        .as_ref()
        .map(|root| root.path().clone())
        .unwrap_or_else(|| PathBuf::from("rootfs"));
    bundle.join(path)
}

pub fn has_user_namespace(spec: &Spec) -> bool {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|ns| ns.iter().any(|n| n.typ() == LinuxNamespaceType::User))
}

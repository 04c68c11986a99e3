//! `create`: run the edit pipeline over config.json, then create the container (init waits for
//! `start`). A failed create leaves nothing behind: no state dir, no cgroup dir, no claim.
//!
//! Test-only: `CDIRUN_TEST_PAUSE_AT=<stage>` makes create stop at one named point (see
//! [`PAUSE_STAGES`]), say so on stderr and sleep, so the crash tests can SIGKILL it there and
//! check that `delete --force` still cleans up. It only ever delays; nothing sets it in use.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use libcontainer::container::Container;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;

use super::Globals;
use crate::claims::{Claim, Claims, Holder, Record};
use crate::config::Config;
use crate::{bundle, cgroup, edit};

pub fn create(args: liboci_cli::Create, globals: &Globals) -> Result<()> {
    let init = Init {
        id: &args.container_id,
        bundle: &args.bundle,
        pid_file: args.pid_file.as_deref(),
        console_socket: args.console_socket.as_deref(),
        preserve_fds: args.preserve_fds,
        no_pivot: args.no_pivot,
        detach: true,
    };
    init.create(globals).map(drop)
}

/// What `create` and `run` share: everything needed to create one container's init process.
pub struct Init<'a> {
    pub id: &'a str,
    pub bundle: &'a Path,
    pub pid_file: Option<&'a Path>,
    pub console_socket: Option<&'a Path>,
    pub preserve_fds: i32,
    pub no_pivot: bool,
    /// `false` only for a foreground `run`: the container keeps cdirun's stdio.
    pub detach: bool,
}

impl Init<'_> {
    /// Edits the bundle's config.json and creates the container, or undoes everything it did.
    pub fn create(&self, globals: &Globals) -> Result<Container> {
        let id = self.id;
        let container_dir = globals.container_dir(id);
        // Checked before the bundle is touched, so a duplicate id never rewrites the config of a
        // live container's bundle.
        if container_dir.exists() {
            bail!("container {id:?} already exists");
        }
        let bundle = super::absolute(self.bundle)?;
        let loaded = globals.load_config()?;

        let on_disk = bundle::Config::load(&bundle)?;
        crate::engine::precheck::spec(&bundle, &on_disk.source)?;
        crate::engine::seccomp::check(&on_disk.source)?;
        // Refused before any edit takes a claim; the mount edit maps the value.
        edit::mounts::root_propagation(&on_disk.source)?;
        let hierarchies = cgroup::Hierarchies::discover()
            .context("cannot read the cgroup mounts from /proc/self/mountinfo")?;
        let cgroup_driver = cgroup::Driver::for_host(globals.systemd_cgroup, &hierarchies)?;
        let skip_cgroups = globals.rootless
            && skip_rootless_cgroups(&hierarchies, &on_disk.source, &loaded.config)?;
        let mut spec = on_disk.source.clone();
        let ctx = edit::Context {
            cgroup_driver,
            rootless: globals.rootless,
            skip_cgroups,
            ..edit::Context::new(id, &loaded.config, &globals.root)
        };
        let claims = match edit::apply_all(&mut spec, &ctx) {
            Ok(claims) => claims,
            Err((err, taken)) => {
                release(&taken, &loaded.config);
                return Err(anyhow!(err).context(format!("cannot prepare container {id:?}")));
            }
        };
        if skip_cgroups {
            let path = absolute_cgroups_path(&mut spec, id)?;
            if crate::rootless::cgroups_hidden() {
                fake_placement(&path)?;
            }
        }
        pause_at("edited");
        let rootfs = rootfs_of(&bundle, &spec);
        let mut finish =
            crate::engine::finish::Finish::prepare(&mut spec, &on_disk.source, &rootfs);
        if globals.rootless && has_user_namespace(&spec) {
            finish.skip_cgroup_mounts();
        }
        let mut record = Record {
            config: loaded.path.clone(),
            state_dir: loaded.config.state_dir.clone(),
            claims,
            no_cgroups: skip_cgroups,
        };

        let holder = Holder::current(&globals.root, id);
        let placement =
            match Placement::prepare(hierarchies, &record.claims, &loaded.config, &holder) {
                Ok(placement) => placement,
                Err(err) => {
                    release(&record.claims.without_scopes(), &loaded.config);
                    return Err(err.context(format!("cannot create container {id:?}")));
                }
            };
        if let Some(scope) = &placement.scope {
            // First, so that it is given back last, after the scope is gone.
            record.claims.0.insert(
                0,
                Claim::Cgroup {
                    path: scope.absolute(),
                    holder,
                },
            );
        }
        let mark = match crate::engine::creation::Mark::take(&globals.root, id) {
            Ok(mark) => mark,
            Err(err) => {
                release(&record.claims.without_scopes(), &loaded.config);
                return Err(anyhow!(err).context(format!(
                    "cannot create container {id:?}: cannot write its mark under {}",
                    globals.root.display()
                )));
            }
        };
        let leftovers = placement.dirs_to_create();
        let helpers = match has_user_namespace(&spec) {
            true => crate::rootless::IdMapHelpers::install(&loaded.config.state_dir)
                .unwrap_or_else(|err| {
                    tracing::warn!("cannot install the ID mapping helpers: {err}");
                    None
                }),
            false => None,
        };
        let built = placement
            .stay_in_scope(globals.rootless)
            .and_then(|stay| {
                let built = self.save_and_build(&bundle, &on_disk, &spec, globals, cgroup_driver);
                match (built, stay.map(cgroup::Stay::leave).transpose()) {
                    // The init exists and waits: it goes with the create, as on every failure
                    // after the build.
                    (Ok(mut container), Err(err)) => {
                        if let Err(delete_err) = container.delete(true) {
                            tracing::warn!("cannot delete half-created container: {delete_err}");
                        }
                        Err(anyhow!(err).context("cannot return to cdirun's own cgroup"))
                    }
                    (built, left) => {
                        if let Err(err) = left {
                            tracing::warn!("cannot return to cdirun's own cgroup: {err}");
                        }
                        built
                    }
                }
            })
            .and_then(|mut container| {
                pause_at("built");
                let finished = placement
                    .place_init(&container, globals.rootless)
                    .and_then(|()| {
                        placement.check_alone(&container)?;
                        pause_at("placed");
                        placement.apply_oom_setting(&spec)?;
                        if cgroup_driver.is_systemd() {
                            placement.enforce_unit_devices(&container, &spec)?;
                        }
                        if let Some(unit) = record.claims.unit() {
                            register_unit(&unit, &container, &spec)?;
                        }
                        let pid = container
                            .pid()
                            .context("container has no init pid after create")?;
                        finish.apply(pid.as_raw(), &rootfs)?;
                        record.save(&container_dir)?;
                        pause_at("recorded");
                        Ok(())
                    });
                match finished {
                    Ok(()) => Ok(container),
                    Err(err) => {
                        // The init process exists and waits for `start`: kill it and drop what
                        // libcontainer made before undoing the rest. libcontainer cannot remove
                        // a cgroup with children (a hook may have made some).
                        placement.remove_nested();
                        if let Err(delete_err) = container.delete(true) {
                            tracing::warn!("cannot delete half-created container: {delete_err}");
                        }
                        Err(err)
                    }
                }
            });
        if let Some(helpers) = helpers {
            helpers.remove();
        }
        match built {
            Ok(container) => {
                mark.finish();
                Ok(container)
            }
            Err(err) => {
                mark.finish();
                placement.remove_nested();
                undo(&container_dir, &leftovers);
                if let Err(restore_err) = on_disk.restore(&bundle) {
                    tracing::warn!("cannot restore the bundle's config.json: {restore_err}");
                }
                // The scope's directories are among `leftovers`: exactly the ones this create
                // made. Releasing the scope claim would also kill whatever else is in it.
                release(&record.claims.without_scopes(), &loaded.config);
                Err(err.context(format!("cannot create container {id:?}")))
            }
        }
    }

    fn save_and_build(
        &self,
        bundle: &Path,
        on_disk: &bundle::Config,
        spec: &libcontainer::oci_spec::runtime::Spec,
        globals: &Globals,
        cgroup_driver: cgroup::Driver,
    ) -> Result<Container> {
        on_disk.save(bundle, spec)?;
        pause_at("saved");
        std::fs::create_dir_all(&globals.root)
            .with_context(|| format!("cannot create root directory {}", globals.root.display()))?;
        let pid_file = self.pid_file.map(super::absolute).transpose()?;
        let output = capture_hook_output(spec, &globals.root)?;
        let built = ContainerBuilder::new(self.id.to_owned(), SyscallType::default())
            .with_executor(crate::engine::executor::RuncExecutor)
            .with_root_path(&globals.root)?
            .with_pid_file(pid_file)?
            .with_console_socket(self.console_socket)
            .with_preserved_fds(self.preserve_fds)
            .validate_id()?
            .as_init(bundle)
            .with_systemd(cgroup_driver.is_systemd())
            .with_detach(self.detach)
            .with_no_pivot(self.no_pivot)
            .build();
        let container_dir = globals.container_dir(self.id);
        let stderr = output
            .map(|o| o.end(built.is_ok().then_some(container_dir.as_path())))
            .unwrap_or_default();
        built.map_err(|err| build_error(err, spec, &stderr))
    }
}

/// Rootless: whether the container's slice (`io.cdirun.slice` or `[slices] default`) is not
/// delegated to the caller, so that cdirun places nothing and leaves cgroups alone, as runc and
/// crun do. On a cgroup v1 or hybrid host libcontainer would still write the host's cgroups:
/// refused unless they are hidden from it (see [`crate::rootless::hide_cgroups`]).
fn skip_rootless_cgroups(
    hierarchies: &cgroup::Hierarchies,
    spec: &libcontainer::oci_spec::runtime::Spec,
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

fn has_user_namespace(spec: &libcontainer::oci_spec::runtime::Spec) -> bool {
    use libcontainer::oci_spec::runtime::LinuxNamespaceType;
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|ns| ns.iter().any(|n| n.typ() == LinuxNamespaceType::User))
}

/// Rootless without a delegated cgroup: the container's cgroupsPath, made absolute
/// (`/cdirun/<id>` when the client sent none or a systemd one). With a user namespace in the
/// spec libcontainer asks systemd for a relative path, over the user's session bus, which a
/// rootless runtime without delegation may not have; an absolute path takes its cgroupfs
/// manager, which on cgroup v2 skips what a rootless caller may not write.
fn absolute_cgroups_path(
    spec: &mut libcontainer::oci_spec::runtime::Spec,
    id: &str,
) -> Result<cgroup::CgroupPath> {
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

/// Rootless with the host's cgroups hidden: makes the container's cgroup in the private
/// tmpfs, where libcontainer's v1 manager will "place" the init.
fn fake_placement(path: &cgroup::CgroupPath) -> Result<()> {
    let hierarchies = cgroup::Hierarchies::discover()
        .context("cannot read the cgroup mounts from /proc/self/mountinfo")?;
    crate::rootless::fake_cgroup(&hierarchies, path)
        .with_context(|| format!("cannot make cgroup {path} in the private cgroup tmpfs"))
}

/// Sends the output of the hooks libcontainer runs during the build to the log (see
/// crate::engine::hook_output), when the config has any.
fn capture_hook_output(
    spec: &libcontainer::oci_spec::runtime::Spec,
    root: &Path,
) -> Result<Option<crate::engine::hook_output::Capture>> {
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
    Ok(Some(crate::engine::hook_output::Capture::begin(mark)?))
}

/// libcontainer's error, or for a failed hook an error that names it (libcontainer's does not).
fn build_error(
    err: libcontainer::error::LibcontainerError,
    spec: &libcontainer::oci_spec::runtime::Spec,
    stderr: &str,
) -> anyhow::Error {
    let hooks = spec.hooks().as_ref();
    match hooks.and_then(|hooks| crate::engine::hook_failure::explain(&err, hooks)) {
        Some(failed) => failed.with_stderr(stderr).into(),
        None => err.into(),
    }
}

/// The host path of the container's root: config.json's `root.path`, relative to the bundle.
fn rootfs_of(bundle: &Path, spec: &libcontainer::oci_spec::runtime::Spec) -> PathBuf {
    let path = spec
        .root()
        .as_ref()
        .map(|root| root.path().clone())
        .unwrap_or_else(|| PathBuf::from("rootfs"));
    bundle.join(path)
}

/// The points of create where `CDIRUN_TEST_PAUSE_AT` can stop it, in order: after the edits
/// took their claims; after config.json was rewritten; after libcontainer made the state dir
/// and the waiting init; after the init was placed in every hierarchy; after cdirun.json.
pub const PAUSE_STAGES: [&str; 5] = ["edited", "saved", "built", "placed", "recorded"];

/// Test-only crash point: when `CDIRUN_TEST_PAUSE_AT` names `stage`, prints
/// `cdirun: paused at <stage>` on stderr and sleeps (a minute at most, then goes on).
fn pause_at(stage: &str) {
    if std::env::var_os("CDIRUN_TEST_PAUSE_AT").is_some_and(|at| at == stage) {
        super::print_err(&format!("cdirun: paused at {stage}"));
        std::thread::sleep(std::time::Duration::from_secs(60));
    }
}

/// The cgroup work the slice edit's scope claim asks for (cgroupfs driver only; with systemd
/// the unit's slice is systemd's to create).
struct Placement {
    hierarchies: cgroup::Hierarchies,
    scope: Option<cgroup::CgroupPath>,
}

impl Placement {
    /// Creates the acting owner's slices (idempotent; they outlive containers) and the slice
    /// the scope nests in. Runs after the edits, so a refused request has created nothing.
    /// Refuses a scope that already holds processes: see [`Placement::check_alone`].
    ///
    /// The scope is first taken in the node-wide cgroup ledger, which refuses it when it is,
    /// lies in or holds another live container's cgroup, naming that container; a failure
    /// after that gives the entry back.
    fn prepare(
        hierarchies: cgroup::Hierarchies,
        claims: &Claims,
        config: &Config,
        holder: &Holder,
    ) -> Result<Self> {
        let Some((scope, slice)) = claims.scope() else {
            return Ok(Self {
                hierarchies,
                scope: None,
            });
        };
        let scope = cgroup_path(scope)?;
        crate::claims::cgroups::hold(&config.state_dir, &scope, holder)?;
        let prepared = Self::prepare_held(hierarchies, scope, slice, config);
        if prepared.is_err() {
            if let Err(err) =
                crate::claims::cgroups::release(&config.state_dir, &holder.root, &holder.id)
            {
                tracing::warn!("cannot release the cgroup ledger entry: {err}");
            }
        }
        prepared
    }

    fn prepare_held(
        hierarchies: cgroup::Hierarchies,
        scope: cgroup::CgroupPath,
        slice: Option<&Path>,
        config: &Config,
    ) -> Result<Self> {
        let pids = cgroup::Scope::new(&hierarchies, scope.clone()).pids()?;
        if !pids.is_empty() {
            bail!(in_use(&scope, &pids));
        }
        // A cgroup above the scope with processes of its own is some container's (another
        // runtime's, or one whose ledger entry is gone): the scope would be inside it.
        for ancestor in scope.ancestors() {
            let pids = cgroup::Scope::new(&hierarchies, ancestor.clone()).own_pids()?;
            if !pids.is_empty() {
                bail!(nested_in_use(&scope, &ancestor, &pids));
            }
        }
        let owners = cgroup::Owners::from_table(&config.slices.owners)?;
        let mut slices = owners.hierarchy_of(&config.owner)?;
        if let Some(slice) = slice {
            let slice = cgroup_path(slice)?;
            // Usually the owner's root slice itself, already in the list.
            if !slices.contains(&slice) {
                slices.push(slice);
            }
        }
        for slice in &slices {
            cgroup::Scope::new(&hierarchies, slice.clone())
                .create()
                .with_context(|| format!("cannot create slice {slice}"))?;
        }
        for (name, limits) in &config.slices.limits {
            let slice = cgroup::CgroupPath::parse_slice(name)?;
            match owners.owner_of(&slice) {
                Some(owner) if owner == config.owner => {}
                Some(_) => continue,
                None => bail!(
                    "config [slices.limits] names {slice}, which no owner holds in [slices.owners]"
                ),
            }
            let scope = cgroup::Scope::new(&hierarchies, slice.clone());
            scope
                .create()
                .and_then(|()| scope.apply_limits(limits))
                .with_context(|| format!("cannot set the limits of slice {slice}"))?;
        }
        Ok(Self {
            scope: Some(scope),
            hierarchies,
        })
    }

    /// A container's cgroup is its own. delete (and a failed create) kill everything left in
    /// the scope, so a second container in it would die with the first; runc warns about a
    /// non-empty cgroup and goes on. [`Placement::prepare`] refuses a scope in use; this check,
    /// after the init is placed, catches a concurrent create that chose the same scope (the
    /// same id and cgroupsPath under another --root): both then see the other's process.
    fn check_alone(&self, container: &Container) -> Result<()> {
        let Some(scope) = &self.scope else {
            return Ok(());
        };
        let init = container
            .pid()
            .context("container has no init pid after create")?;
        let mut pids = cgroup::Scope::new(&self.hierarchies, scope.clone()).pids()?;
        pids.retain(|&pid| pid != init.as_raw());
        if pids.is_empty() {
            Ok(())
        } else {
            bail!(in_use(scope, &pids))
        }
    }

    /// The scope's directories that do not exist yet, in every hierarchy: taken before the
    /// create, exactly what a failed create must remove.
    fn dirs_to_create(&self) -> Vec<PathBuf> {
        match &self.scope {
            Some(scope) => cgroup::missing_dirs(&self.hierarchies.mounts(), &scope.absolute()),
            None => Vec::new(),
        }
    }

    /// For a failed create: kills what runs in cgroups made below the scope (by a hook, or
    /// from the host) and removes them, deepest first, so that the scope itself can go. The
    /// scope's own processes are left to libcontainer's delete: if `check_alone` failed, one
    /// of them is another container's.
    fn remove_nested(&self) {
        let Some(scope) = &self.scope else {
            return;
        };
        if let Err(err) = cgroup::Scope::new(&self.hierarchies, scope.clone()).remove_descendants()
        {
            tracing::warn!("cannot remove the cgroups below {scope}: {err}");
        }
    }

    /// Stands cdirun in the scope where libcontainer does not place the init, while it forks
    /// the init: see [`cgroup::Stay`]. Not rootless, where cdirun may not move itself there.
    fn stay_in_scope(&self, rootless: bool) -> Result<Option<cgroup::Stay>> {
        let Some(scope) = self.scope.as_ref().filter(|_| !rootless) else {
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

    /// Puts the init process in the scope in the hierarchies libcontainer leaves alone. On a
    /// hybrid host libcontainer's v1 manager joins only the v1 controllers it knows, so without
    /// this the process stays in the root of the cgroup2 mount (`0::/` in /proc/PID/cgroup) and
    /// of named hierarchies such as name=systemd, where clients that read /proc/PID/cgroup
    /// (containerd's shim, podman) would not find it in its slice. Before `start` the init is
    /// the container's only process, so moving it moves the whole container. The scope
    /// claim's release removes these directories again at delete. Usually the init was born
    /// there already ([`Self::stay_in_scope`]).
    ///
    /// Rootless, a hierarchy the init cannot be moved in is left as it is (cgroup v2 lets only
    /// a writer of the common ancestor's `cgroup.procs` move a process, which a delegated
    /// slice alone does not give), as runc ignores such errors rootless.
    fn place_init(&self, container: &Container, rootless: bool) -> Result<()> {
        let Some(scope) = &self.scope else {
            return Ok(());
        };
        let pid = container
            .pid()
            .context("container has no init pid after create")?;
        let targets = self.hierarchies.not_managed_by_libcontainer();
        if rootless {
            let scope_ops = cgroup::Scope::new(&self.hierarchies, scope.clone());
            for target in targets {
                if let Err(err) = scope_ops.add_process(pid.as_raw(), &[target]) {
                    tracing::warn!("rootless: init {pid} stays out of {scope} there: {err}");
                }
            }
            return Ok(());
        }
        cgroup::Scope::new(&self.hierarchies, scope.clone())
            .add_process(pid.as_raw(), &targets)
            .with_context(|| format!("cannot place the init process {pid} in cgroup {scope}"))
    }
}

impl Placement {
    /// libcontainer 0.7 never applies `linux.resources.memory.disableOOMKiller` (it hard-codes the
    /// setting off when it creates the cgroup), so cdirun sets it after the build.
    fn apply_oom_setting(&self, spec: &libcontainer::oci_spec::runtime::Spec) -> Result<()> {
        let Some(linux) = spec.linux() else {
            return Ok(());
        };
        let disabled = linux
            .resources()
            .as_ref()
            .and_then(|r| r.memory().as_ref())
            .and_then(|m| m.disable_oom_killer())
            .unwrap_or(false);
        let path = match (disabled, &self.scope, linux.cgroups_path()) {
            (false, _, _) => return Ok(()),
            (true, Some(scope), _) => scope.clone(),
            // cgroupfs paths only: with systemd, the unit's cgroup is not a path to write to.
            (true, None, Some(path)) if path.is_absolute() => cgroup_path(path)?,
            (true, None, _) => return Ok(()),
        };
        cgroup::Scope::new(&self.hierarchies, path.clone())
            .disable_oom_killer()
            .with_context(|| format!("cannot disable the OOM killer of cgroup {path}"))
    }
}

impl Placement {
    /// libcontainer's systemd driver enforces no device rule on cgroup v2 (see
    /// [`cgroup::devices`]): attach the program and give the unit its device policy, before
    /// `start` lets the container's process run.
    fn enforce_unit_devices(
        &self,
        container: &Container,
        spec: &libcontainer::oci_spec::runtime::Spec,
    ) -> Result<()> {
        let rules = device_rules(spec);
        let v2 = self
            .hierarchies
            .iter()
            .find(|h| h.is_v2())
            .context("--systemd-cgroup on cgroup v2, but no cgroup2 mount is in mountinfo")?;
        let pid = container
            .pid()
            .context("container has no init pid after create")?;
        cgroup::devices::enforce_for_unit(pid.as_raw(), &v2.mount, &rules, Path::new("systemctl"))
            .context("cannot enforce the container's device rules")
    }
}

/// Registers the systemd scope of a cgroup laid out at systemd's path (see
/// [`cgroup::unit`]), with the init already in it.
fn register_unit(
    unit: &cgroup::unit::Unit,
    container: &Container,
    spec: &libcontainer::oci_spec::runtime::Spec,
) -> Result<()> {
    let pid = container
        .pid()
        .context("container has no init pid after create")?;
    let resources = spec.linux().as_ref().and_then(|l| l.resources().as_ref());
    let proc_devices = std::fs::read_to_string("/proc/devices").unwrap_or_default();
    unit.register(pid.as_raw(), resources, &proc_devices)
        .with_context(|| format!("cannot register systemd unit {}", unit.name))
}

/// The spec's `linux.resources.devices`, in order.
pub fn device_rules(
    spec: &libcontainer::oci_spec::runtime::Spec,
) -> Vec<libcontainer::oci_spec::runtime::LinuxDeviceCgroup> {
    spec.linux()
        .as_ref()
        .and_then(|linux| linux.resources().as_ref())
        .and_then(|resources| resources.devices().clone())
        .unwrap_or_default()
}

fn in_use(scope: &cgroup::CgroupPath, pids: &[i32]) -> String {
    let pids: Vec<String> = pids.iter().map(i32::to_string).collect();
    format!(
        "cgroup {scope} already holds processes ({}) of another container; every container needs a cgroup of its own",
        pids.join(" ")
    )
}

fn nested_in_use(scope: &cgroup::CgroupPath, parent: &cgroup::CgroupPath, pids: &[i32]) -> String {
    let pids: Vec<String> = pids.iter().map(i32::to_string).collect();
    format!(
        "cgroup {scope} would be inside cgroup {parent}, which holds processes ({}) of another container; every container needs a cgroup of its own, outside every other container's",
        pids.join(" ")
    )
}

fn cgroup_path(path: &Path) -> Result<cgroup::CgroupPath> {
    let text = path
        .to_str()
        .ok_or_else(|| anyhow!("cgroup path {} is not UTF-8", path.display()))?;
    Ok(cgroup::CgroupPath::parse(text)?)
}

/// Removes what a failed create may have left: the state dir and the cgroup dirs it made.
fn undo(container_dir: &Path, cgroup_dirs: &[PathBuf]) {
    if container_dir.exists() {
        if let Err(err) = std::fs::remove_dir_all(container_dir) {
            tracing::warn!("cannot remove {}: {err}", container_dir.display());
        }
    }
    for (dir, err) in cgroup::remove_dirs(cgroup_dirs) {
        tracing::warn!("cannot remove cgroup {}: {err}", dir.display());
    }
}

fn release(claims: &Claims, config: &Config) {
    if let Err(err) = claims.release(&config.state_dir) {
        tracing::warn!("cannot release claims: {err}");
    }
}

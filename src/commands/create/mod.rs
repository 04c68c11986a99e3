//! `create`: run the edit pipeline over config.json, then create the container (init waits for
//! `start`). The steps, in order: load the bundle and the config, check what libcontainer would
//! refuse late, edit (the request is read inside the pipeline), place (the slices and the
//! scope), build through [`crate::engine`], record. A failed create leaves nothing behind: no
//! state dir, no cgroup dir, no claim, and config.json as the client wrote it.

mod placement;
mod rootless;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use libcontainer::container::Container;
use libcontainer::oci_spec::runtime::Spec;

use super::Globals;
use crate::claims::{Claim, Claims, Holder, Record};
use crate::config::{Config, Loaded};
use crate::engine::creation::{Mark, pause_at};
use crate::engine::{self, Cgroups};
use crate::{bundle, cgroup, edit};
use placement::Placement;

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
        // Checked before the bundle is touched, so a duplicate id never rewrites the config of a
        // live container's bundle.
        if globals.container_dir(id).exists() {
            bail!("container {id:?} already exists");
        }
        let bundle = super::absolute(self.bundle)?;
        let loaded = globals.load_config()?;
        let on_disk = bundle::Config::load(&bundle)?;
        engine::check(&bundle, &on_disk.source)?;
        let hierarchies = cgroup::Hierarchies::discover()
            .context("cannot read the cgroup mounts from /proc/self/mountinfo")?;
        let driver = cgroup::Driver::for_host(globals.systemd_cgroup, &hierarchies)?;
        let (spec, record) = edit(id, &on_disk.source, &hierarchies, driver, &loaded, globals)?;
        pause_at("edited");
        let taken = Taken {
            id,
            globals,
            loaded: &loaded,
            bundle: &bundle,
            on_disk: &on_disk,
        };
        taken.build(self, hierarchies, driver, spec, record)
    }
}

/// Runs the edit pipeline over the client's config; a refused edit gives back what the edits
/// before it took. Rootless without a delegated slice, nothing is placed.
fn edit(
    id: &str,
    source: &Spec,
    hierarchies: &cgroup::Hierarchies,
    driver: cgroup::Driver,
    loaded: &Loaded,
    globals: &Globals,
) -> Result<(Spec, Record)> {
    let config = &loaded.config;
    let skip_cgroups = globals.rootless && rootless::skip_cgroups(hierarchies, source, config)?;
    let mut spec = source.clone();
    let ctx = edit::Context {
        cgroup_driver: driver,
        rootless: globals.rootless,
        skip_cgroups,
        ..edit::Context::new(id, config, &globals.root)
    };
    let claims = edit::apply_all(&mut spec, &ctx).map_err(|(err, taken)| {
        release(&taken, config);
        anyhow!(err).context(format!("cannot prepare container {id:?}"))
    })?;
    if skip_cgroups {
        if let Err(err) = rootless::unplaced(hierarchies, &mut spec, id) {
            release(&claims, config);
            return Err(err.context(format!("cannot prepare container {id:?}")));
        }
    }
    let record = Record {
        config: loaded.path.clone(),
        state_dir: config.state_dir.clone(),
        claims,
        no_cgroups: skip_cgroups,
    };
    Ok((spec, record))
}

/// A create after its edits took their claims: from here every failure gives them back.
struct Taken<'a> {
    id: &'a str,
    globals: &'a Globals,
    loaded: &'a Loaded,
    bundle: &'a Path,
    on_disk: &'a bundle::Config,
}

impl Taken<'_> {
    /// Places, builds through the engine and records; on failure undoes all of it.
    fn build(
        &self,
        init: &Init,
        hierarchies: cgroup::Hierarchies,
        driver: cgroup::Driver,
        spec: Spec,
        mut record: Record,
    ) -> Result<Container> {
        let (id, globals, config) = (self.id, self.globals, &self.loaded.config);
        let holder = Holder::current(&globals.root, id);
        let placement = Placement::prepare(hierarchies, &record.claims, config, &holder)
            .map_err(|err| self.give_back(&record.claims, err))?;
        if let Some(scope) = &placement.scope {
            // First, so that it is given back last, after the scope is gone.
            let path = scope.absolute();
            record.claims.0.insert(0, Claim::Cgroup { path, holder });
        }
        let mark = Mark::take(&globals.root, id).map_err(|err| {
            let at = globals.root.display();
            let err = anyhow!(err).context(format!("cannot write its mark under {at}"));
            self.give_back(&record.claims, err)
        })?;
        let leftovers = placement.dirs_to_create();
        let cgroups = Cgroups {
            hierarchies: &placement.hierarchies,
            scope: placement.scope.as_ref(),
            systemd: driver.is_systemd(),
            rootless: globals.rootless,
        };
        let built = self
            .engine_init(init, driver)
            .and_then(|engine_init| engine::create(&engine_init, self.on_disk, spec, &cgroups))
            .and_then(
                |created| match record_created(&created, &placement, &record, self) {
                    Ok(()) => Ok(created.keep()),
                    Err(err) => {
                        created.discard(&cgroups);
                        Err(err)
                    }
                },
            );
        mark.finish();
        built.map_err(|err| {
            undo(&globals.container_dir(id), &leftovers);
            if let Err(restore_err) = self.on_disk.restore(self.bundle) {
                tracing::warn!("cannot restore the bundle's config.json: {restore_err}");
            }
            self.give_back(&record.claims, err)
        })
    }

    fn engine_init<'a>(
        &'a self,
        init: &'a Init,
        driver: cgroup::Driver,
    ) -> Result<engine::Init<'a>> {
        Ok(engine::Init {
            id: self.id,
            root: &self.globals.root,
            bundle: self.bundle,
            pid_file: init.pid_file.map(super::absolute).transpose()?,
            console_socket: init.console_socket,
            preserve_fds: init.preserve_fds,
            no_pivot: init.no_pivot,
            detach: init.detach,
            systemd: driver.is_systemd(),
            rootless: self.globals.rootless,
            state_dir: &self.loaded.config.state_dir,
        })
    }

    /// Releases the claims (not the scope: its directories are among the leftovers, exactly
    /// the ones this create made, and releasing it would also kill whatever else is in it)
    /// and names the container in the error.
    fn give_back(&self, claims: &Claims, err: anyhow::Error) -> anyhow::Error {
        release(&claims.without_scopes(), &self.loaded.config);
        err.context(format!("cannot create container {:?}", self.id))
    }
}

/// cdirun's own work on a built container: it is alone in its scope, its systemd unit (when
/// laid out as one) is registered, and its record is saved.
fn record_created(
    created: &engine::Created,
    placement: &Placement,
    record: &Record,
    taken: &Taken,
) -> Result<()> {
    placement.check_alone(created.container())?;
    pause_at("placed");
    if let Some(unit) = record.claims.unit() {
        let resources = created.spec().linux().as_ref();
        let resources = resources.and_then(|l| l.resources().as_ref());
        let proc_devices = std::fs::read_to_string("/proc/devices").unwrap_or_default();
        unit.register(created.pid()?, resources, &proc_devices)
            .with_context(|| format!("cannot register systemd unit {}", unit.name))?;
    }
    record.save(&taken.globals.container_dir(taken.id))?;
    pause_at("recorded");
    Ok(())
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

//! `create`: run the edit pipeline over config.json, then create the container (init waits for
//! `start`). A failed create leaves nothing behind: no state dir, no cgroup dir, no claim.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use libcontainer::container::Container;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::default::DefaultExecutor;

use super::Globals;
use crate::claims::{Claims, Record};
use crate::config::{self, Config};
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
        let loaded = Config::load(std::env::var_os(config::ENV_VAR).as_deref())?;

        let mut spec = bundle::load(&bundle)?;
        let original = spec.clone();
        let ctx = edit::Context {
            container_id: id,
            systemd_cgroup: globals.systemd_cgroup,
            config: &loaded.config,
        };
        let claims = match edit::apply_all(&mut spec, &ctx) {
            Ok(claims) => claims,
            Err((err, taken)) => {
                release(&taken, &loaded.config);
                return Err(anyhow!(err).context(format!("cannot prepare container {id:?}")));
            }
        };
        let record = Record {
            config: loaded.path.clone(),
            state_dir: loaded.config.state_dir.clone(),
            claims,
        };

        let leftovers = self.cgroup_dirs_to_create(&spec, globals);
        let built = self
            .save_and_build(&bundle, &spec, spec != original, globals)
            .and_then(|container| {
                record.save(&container_dir)?;
                Ok(container)
            });
        match built {
            Ok(container) => Ok(container),
            Err(err) => {
                undo(&container_dir, &leftovers);
                release(&record.claims, &loaded.config);
                Err(err.context(format!("cannot create container {id:?}")))
            }
        }
    }

    fn save_and_build(
        &self,
        bundle: &Path,
        spec: &libcontainer::oci_spec::runtime::Spec,
        changed: bool,
        globals: &Globals,
    ) -> Result<Container> {
        if changed {
            bundle::save(bundle, spec)?;
        }
        std::fs::create_dir_all(&globals.root)
            .with_context(|| format!("cannot create root directory {}", globals.root.display()))?;
        let pid_file = self.pid_file.map(super::absolute).transpose()?;
        let container = ContainerBuilder::new(self.id.to_owned(), SyscallType::default())
            .with_executor(DefaultExecutor {})
            .with_root_path(&globals.root)?
            .with_pid_file(pid_file)?
            .with_console_socket(self.console_socket)
            .with_preserved_fds(self.preserve_fds)
            .validate_id()?
            .as_init(bundle)
            .with_systemd(globals.systemd_cgroup)
            .with_detach(self.detach)
            .with_no_pivot(self.no_pivot)
            .build()?;
        Ok(container)
    }

    /// The cgroup directories this container's cgroupsPath will create (cgroupfs driver only:
    /// with systemd, the unit's removal cleans up).
    fn cgroup_dirs_to_create(
        &self,
        spec: &libcontainer::oci_spec::runtime::Spec,
        globals: &Globals,
    ) -> Vec<PathBuf> {
        let path = spec
            .linux()
            .as_ref()
            .and_then(|linux| linux.cgroups_path().clone());
        match (globals.systemd_cgroup, path, cgroup::mounted_hierarchies()) {
            (false, Some(path), Ok(hierarchies)) => cgroup::missing_dirs(&hierarchies, &path),
            _ => Vec::new(),
        }
    }
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

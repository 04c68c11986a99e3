//! `delete`: remove a container and give back everything its create took.

use std::path::Path;

use anyhow::{Context, Result};
use libcontainer::config::YoukiConfig;
use libcontainer::container::state::State;
use libcontainer::container::{Container, ContainerStatus};

use super::Globals;
use crate::claims::{self, Record};
use crate::config::{self, Config};

pub fn delete(args: liboci_cli::Delete, globals: &Globals) -> Result<()> {
    let id = &args.container_id;
    let dir = globals.container_dir(id);
    if !State::file_path(&dir).exists() {
        if args.force {
            // Gone already (containerd's second delete), or a create killed before it wrote its
            // state: then whatever it left in the root goes now.
            return remove_partial(&dir, &globals.root, id);
        }
        anyhow::bail!("container {id:?} does not exist");
    }
    let mut container = super::load_container(globals, id)?;
    if !args.force {
        refuse_unstopped(&container)?;
    }
    delete_container(&mut container, &dir, args.force)
}

/// runtime-spec (runtime.md, delete): deleting a container that is not `stopped` MUST fail and
/// leave it as it is. libcontainer 0.7 kills and deletes a `created` one anyway (as runc does);
/// containerd and podman pass `--force` for those, so only a plain delete is refused. The status
/// is current: loading the container just refreshed it.
fn refuse_unstopped(container: &Container) -> Result<()> {
    let status = container.status();
    if status != ContainerStatus::Stopped {
        anyhow::bail!(
            "cannot delete container {:?}: it is {}, not stopped (use delete --force to kill it)",
            container.id(),
            super::status_word(status)
        );
    }
    Ok(())
}

/// Deletes a loaded container, then releases the claims its record lists, or, without a
/// record (a create killed after libcontainer built the container), what it may hold.
pub fn delete_container(container: &mut Container, dir: &Path, force: bool) -> Result<()> {
    let record = Record::load(dir)?;
    // Read before libcontainer removes the state dir.
    let cgroup_path = match (&record, container.systemd()) {
        (None, false) => YoukiConfig::load(dir).ok().map(|c| c.cgroup_path),
        _ => None,
    };
    crate::late_hooks::delete(container, force)
        .with_context(|| format!("cannot delete container {:?}", container.id()))?;
    match record {
        Some(record) => record.claims.release(&record.state_dir)?,
        None => {
            let root = dir.parent().unwrap_or(dir);
            release_unrecorded(root, container.id(), cgroup_path.as_deref())?;
        }
    }
    Ok(())
}

/// `delete --force` of an id without a state file: a second delete, or a create killed before
/// libcontainer wrote its state, whose claims and state dir go now.
fn remove_partial(dir: &Path, root: &Path, id: &str) -> Result<()> {
    match Record::load(dir)? {
        Some(record) => record.claims.release(&record.state_dir)?,
        None => release_unrecorded(root, id, None)?,
    }
    if !dir.exists() {
        return Ok(());
    }
    std::fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))
}

/// Without a record the create's config is unknown: the current one (`CDIRUN_CONFIG` or the
/// default) names the state-dir to clean, as it did for the create in all but odd cases.
fn release_unrecorded(root: &Path, id: &str, cgroup_path: Option<&Path>) -> Result<()> {
    let loaded = Config::load(std::env::var_os(config::ENV_VAR).as_deref())?;
    claims::release_unrecorded(&loaded.config, root, id, cgroup_path)
        .with_context(|| format!("cannot release what container {id:?} holds"))
}

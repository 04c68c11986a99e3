//! `delete`: remove a container and give back everything its create took.

use std::path::Path;

use anyhow::{Context, Result};
use libcontainer::container::state::State;
use libcontainer::container::{Container, ContainerStatus};

use super::Globals;
use crate::claims::Record;

pub fn delete(args: liboci_cli::Delete, globals: &Globals) -> Result<()> {
    let id = &args.container_id;
    let dir = globals.container_dir(id);
    if !State::file_path(&dir).exists() {
        if args.force {
            // Gone already (containerd's second delete), or a create killed before it wrote its
            // state: then whatever it left in the root goes now.
            return remove_partial(&dir);
        }
        anyhow::bail!("container {id:?} does not exist");
    }
    let mut container = super::load_container(globals, id)?;
    if !args.force {
        refuse_created(&mut container)?;
    }
    delete_container(&mut container, &dir, args.force)
}

/// runtime-spec (runtime.md, delete): deleting a container that is not `stopped` MUST fail and
/// leave it as it is. libcontainer 0.7 kills and deletes a `created` one anyway (as runc does);
/// containerd and podman pass `--force` for those, so only a plain delete is refused.
fn refuse_created(container: &mut Container) -> Result<()> {
    container
        .refresh_status()
        .with_context(|| format!("cannot read the status of container {:?}", container.id()))?;
    if container.status() == ContainerStatus::Created {
        anyhow::bail!(
            "cannot delete container {:?}: it is created, not stopped (start it, or use delete --force)",
            container.id()
        );
    }
    Ok(())
}

/// Deletes a loaded container, then releases the claims its record lists.
pub fn delete_container(container: &mut Container, dir: &Path, force: bool) -> Result<()> {
    let record = Record::load(dir)?;
    crate::late_hooks::delete(container, force)
        .with_context(|| format!("cannot delete container {:?}", container.id()))?;
    if let Some(record) = record {
        record.claims.release(&record.state_dir)?;
    }
    Ok(())
}

fn remove_partial(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    if let Some(record) = Record::load(dir)? {
        record.claims.release(&record.state_dir)?;
    }
    std::fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))
}

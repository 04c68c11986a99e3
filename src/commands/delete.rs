//! `delete`: remove a container and give back everything its create took.

use std::path::Path;

use anyhow::{Context, Result};
use libcontainer::container::Container;
use libcontainer::container::state::State;

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
    delete_container(&mut container, &dir, args.force)
}

/// Deletes a loaded container, then releases the claims its record lists.
pub fn delete_container(container: &mut Container, dir: &Path, force: bool) -> Result<()> {
    let record = Record::load(dir)?;
    container
        .delete(force)
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

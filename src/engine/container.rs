//! The containers libcontainer keeps under `--root`, and their cgroup managers: how every verb
//! other than create and exec gets the libcontainer objects it works on.

use std::path::Path;

use anyhow::{Context, Result, bail};
use libcgroups::common::{AnyCgroupManager, CgroupConfig};
use libcontainer::container::Container;
use libcontainer::container::state::State;

/// Loads a container's state, with runc's message when there is none.
pub fn load(root: &Path, id: &str) -> Result<Container> {
    let dir = root.join(id);
    if !State::file_path(&dir).exists() {
        bail!("container {id:?} does not exist");
    }
    Container::load(dir).with_context(|| format!("cannot load state of container {id:?}"))
}

/// The cgroup manager for a container's cgroup, as recorded at create.
pub fn cgroup_manager(container: &Container) -> Result<AnyCgroupManager> {
    let config = container.spec().with_context(|| {
        format!(
            "cannot read the recorded config of container {:?}",
            container.id()
        )
    })?;
    libcgroups::common::create_cgroup_manager(CgroupConfig {
        cgroup_path: config.cgroup_path,
        systemd_cgroup: container.systemd(),
        container_name: container.id().to_owned(),
    })
    .with_context(|| format!("cannot open the cgroup of container {:?}", container.id()))
}

/// Loads every container with a state file, sorted by id; unreadable ones are logged and skipped.
pub fn load_all(root: &Path) -> Vec<Container> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut containers: Vec<Container> = entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|dir| State::file_path(dir).exists())
        .filter_map(|dir| match Container::load(dir.clone()) {
            Ok(container) => Some(container),
            Err(err) => {
                tracing::warn!("skipping {}: {err}", dir.display());
                None
            }
        })
        .collect();
    containers.sort_by(|a, b| a.id().cmp(b.id()));
    containers
}

//! The cgroup work the slice edit's scope claim asks for (cgroupfs driver only; with systemd
//! the unit's slice is systemd's to create): the scope taken in the node-wide ledger, refused
//! when another container is in, around or inside it, and the owner's slices made with their
//! limits. What libcontainer leaves undone in the scope is `crate::engine::cgroups`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use libcontainer::container::Container;

use crate::cgroup;
use crate::claims::{Claims, Holder};
use crate::config::Config;
use crate::engine::cgroups::cgroup_path;

pub struct Placement {
    pub hierarchies: cgroup::Hierarchies,
    pub scope: Option<cgroup::CgroupPath>,
}

impl Placement {
    /// Creates the acting owner's slices (idempotent; they outlive containers) and the slice
    /// the scope nests in. Runs after the edits, so a refused request has created nothing.
    /// Refuses a scope that already holds processes: see [`Placement::check_alone`].
    ///
    /// The scope is first taken in the node-wide cgroup ledger, which refuses it when it is,
    /// lies in or holds another live container's cgroup, naming that container; a failure
    /// after that gives the entry back.
    pub fn prepare(
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
    pub fn check_alone(&self, container: &Container) -> Result<()> {
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
    pub fn dirs_to_create(&self) -> Vec<PathBuf> {
        match &self.scope {
            Some(scope) => cgroup::missing_dirs(&self.hierarchies.mounts(), &scope.absolute()),
            None => Vec::new(),
        }
    }
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

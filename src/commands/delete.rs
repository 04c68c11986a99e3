//! `delete`: remove a container and give back everything its create took.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use libcontainer::config::YoukiConfig;
use libcontainer::container::state::State;
use libcontainer::container::{Container, ContainerStatus};

use super::Globals;
use crate::cgroup;
use crate::claims::{self, Record};

pub fn delete(args: liboci_cli::Delete, globals: &Globals) -> Result<()> {
    let id = &args.container_id;
    let dir = globals.container_dir(id);
    if !State::file_path(&dir).exists() {
        if args.force {
            // Gone already (containerd's second delete), or a create killed before it wrote its
            // state: then whatever it left in the root goes now.
            return remove_partial(&dir, globals, id);
        }
        anyhow::bail!("container {id:?} does not exist");
    }
    let mut container = match crate::engine::load(&globals.root, id) {
        Ok(container) => container,
        // libcontainer writes state.json in place: a create killed mid-write leaves it empty or
        // cut short, and only the partial removal can clean up after it.
        Err(err) if args.force && !state_is_json(&dir) => {
            tracing::warn!("{err:#}; removing what the create left");
            return remove_partial(&dir, globals, id);
        }
        Err(err) => return Err(err),
    };
    if !args.force {
        refuse_unstopped(&container)?;
    }
    delete_container(&mut container, &dir, args.force, globals)
}

/// Whether the container's state file holds a JSON document (whatever libcontainer makes of it).
fn state_is_json(dir: &Path) -> bool {
    std::fs::read(State::file_path(dir))
        .is_ok_and(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).is_ok())
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
pub fn delete_container(
    container: &mut Container,
    dir: &Path,
    force: bool,
    globals: &Globals,
) -> Result<()> {
    let record = Record::load(dir)?;
    let root = dir.parent().unwrap_or(dir);
    let id = container.id().to_owned();
    // A create that died before its record may have left its intermediate and init running,
    // perhaps outside every cgroup still: they go first, so that none of them can make the
    // cgroup again after it is removed.
    crate::engine::creation::kill_holders(root, &id)
        .with_context(|| format!("cannot delete container {id:?}"))?;
    // Read before libcontainer removes the state dir. With the systemd driver the cgroup is the
    // unit's, which systemd removes with everything below it. A create killed before
    // libcontainer wrote its config left the scope in the cgroup ledger.
    if record.as_ref().is_some_and(|r| r.no_cgroups) {
        // No cgroup holds the container's processes: its init goes, and with it its pid
        // namespace; libcontainer then sees it stopped and kills nothing through a cgroup.
        if let Some(init) = container.pid() {
            let _ = nix::sys::signal::kill(init, nix::sys::signal::Signal::SIGKILL);
            wait_until_dead(init.as_raw());
        }
    }
    let cgroup_path = match container.systemd() {
        false => YoukiConfig::load(dir)
            .ok()
            .map(|c| c.cgroup_path)
            .or_else(|| ledger_scope(record.as_ref(), globals, root, &id)),
        true => None,
    };
    if let Some(path) = &cgroup_path {
        remove_cgroup(path)
            .with_context(|| format!("cannot delete container {:?}", container.id()))?;
        if let Some(init) = container.pid() {
            wait_until_dead(init.as_raw());
        }
    }
    crate::engine::late_hooks::delete(container, force)
        .with_context(|| format!("cannot delete container {:?}", container.id()))?;
    match record {
        // The scope claim names the cgroup removed above: releasing it again would only walk
        // every hierarchy a second time.
        Some(record) if cgroup_path.is_some() => {
            record.claims.without_scopes().release(&record.state_dir)?
        }
        Some(record) => record.claims.release(&record.state_dir)?,
        None => release_unrecorded(globals, root, &id)?,
    }
    Ok(())
}

/// The cgroup the ledger names for a container, in the recorded state-dir or, without a
/// record, the current config's.
fn ledger_scope(
    record: Option<&Record>,
    globals: &Globals,
    root: &Path,
    id: &str,
) -> Option<std::path::PathBuf> {
    let state_dir = match record {
        Some(record) => record.state_dir.clone(),
        None => globals.load_config().ok()?.config.state_dir,
    };
    match claims::cgroups::held_by(&state_dir, root, id) {
        Ok(path) => path,
        Err(err) => {
            tracing::warn!("{err}");
            None
        }
    }
}

/// Kills everything in the container's cgroup and removes it in every hierarchy, the cgroups
/// its processes made below it first (a nested runtime, systemd, a privileged workload's
/// `mkdir`), deepest first, as runc does. libcontainer 0.7 kills only the processes of the
/// container's own cgroup and rmdirs only that directory, which fails with children ("could
/// not delete", and the state stays); after this its removal finds nothing left to do, and
/// an error names the directory and the errno. The container's init is gone afterwards, so
/// libcontainer sees it stopped and kills nothing itself.
fn remove_cgroup(path: &Path) -> Result<()> {
    let text = path
        .to_str()
        .with_context(|| format!("cgroup path {} is not UTF-8", path.display()))?;
    let path = cgroup::CgroupPath::parse(text)?;
    if path.is_root() {
        // libcontainer reads an empty path as its own cgroup: never the whole host's to kill.
        return Ok(());
    }
    let hierarchies = cgroup::Hierarchies::discover()
        .context("cannot read the cgroup mounts from /proc/self/mountinfo")?;
    Ok(cgroup::Scope::new(&hierarchies, path).remove()?)
}

/// How long delete waits for the killed init to finish exiting.
const EXIT_WAIT: Duration = Duration::from_secs(2);

/// Waits (at most EXIT_WAIT) until `pid` is a zombie or gone. A killed process leaves its
/// cgroup before it becomes a zombie, so an empty cgroup does not yet mean libcontainer sees
/// the init stopped; seeing it running, libcontainer would try to kill it through the removed
/// cgroup and fail.
fn wait_until_dead(pid: i32) {
    let deadline = Instant::now() + EXIT_WAIT;
    while Instant::now() < deadline {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return;
        };
        // "<pid> (<comm>) <state> ...": comm may hold spaces and parentheses.
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next());
        if matches!(state, Some('Z' | 'X') | None) {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    tracing::warn!("container init {pid} did not exit within {EXIT_WAIT:?} of SIGKILL");
}

/// `delete --force` of an id without a state file: a second delete, or a create killed before
/// libcontainer wrote its state, whose claims and state dir go now.
fn remove_partial(dir: &Path, globals: &Globals, id: &str) -> Result<()> {
    let root = globals.root.as_path();
    crate::engine::creation::kill_holders(root, id)
        .with_context(|| format!("cannot delete container {id:?}"))?;
    let record = Record::load(dir)?;
    // Killed before libcontainer wrote the state, the create may have made the cgroup and put
    // its intermediate process there already.
    if let Some(path) = ledger_scope(record.as_ref(), globals, root, id) {
        remove_cgroup(&path).with_context(|| format!("cannot delete container {id:?}"))?;
    }
    match record {
        Some(record) => record.claims.release(&record.state_dir)?,
        None => release_unrecorded(globals, root, id)?,
    }
    if !dir.exists() {
        return Ok(());
    }
    std::fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))
}

/// Without a record the create's config is unknown: the current one (`CDIRUN_CONFIG` or the
/// default) names the state-dir to clean, as it did for the create in all but odd cases.
fn release_unrecorded(globals: &Globals, root: &Path, id: &str) -> Result<()> {
    let loaded = globals.load_config()?;
    claims::release_unrecorded(&loaded.config, root, id)
        .with_context(|| format!("cannot release what container {id:?} holds"))
}

//! One cgroup path across every mounted hierarchy: create it, put a process in it, set slice
//! limits (v2 files, or their v1 equivalents where the controller is bound to v1), read its
//! metrics, kill what runs in it, and remove it together with the cgroups made below it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use super::{CgroupPath, Hierarchies, Hierarchy, Kind};

const PROCS: &str = "cgroup.procs";
/// v1 freezer: a frozen process takes SIGKILL only once thawed.
const FREEZER_STATE: &str = "freezer.state";
/// v1 reports "no limit" as a page-aligned i64::MAX; anything this large is unlimited.
const V1_UNLIMITED: u64 = 1 << 62;
/// How long removal waits for killed processes to leave a cgroup.
const DRAIN_ATTEMPTS: u32 = 100;
const DRAIN_PAUSE: Duration = Duration::from_millis(10);

#[derive(Debug, thiserror::Error)]
pub enum ScopeError {
    #[error("cannot create cgroup {dir}: {cause}")]
    Create { dir: PathBuf, cause: io::Error },
    #[error("cannot write {value:?} to {file}: {cause}")]
    Write {
        file: PathBuf,
        value: String,
        cause: io::Error,
    },
    #[error("cannot read {file}: {cause}")]
    Read { file: PathBuf, cause: io::Error },
    #[error("{file}: cannot parse {content:?}")]
    Parse { file: PathBuf, content: String },
    #[error(
        "cannot set {limit} on cgroup {path}: no mounted hierarchy offers the {controller} controller"
    )]
    NoController {
        limit: &'static str,
        path: String,
        controller: &'static str,
    },
    #[error("cpu-weight {weight} for cgroup {path} is out of range: use 1..=10000")]
    CpuWeight { weight: u64, path: String },
    #[error(
        "io-max entry {entry:?} for cgroup {path}: use \"MAJOR:MINOR key=value...\" with keys rbps, wbps, riops, wiops and a number or \"max\""
    )]
    IoMax { entry: String, path: String },
    #[error("cgroup {dir} still has processes {pids:?} after SIGKILL")]
    Busy { dir: PathBuf, pids: Vec<i32> },
    /// Names the errno (`EBUSY`: processes or child cgroups still in it).
    #[error("cannot remove cgroup {dir}: {}", errno(.cause))]
    Remove { dir: PathBuf, cause: io::Error },
}

/// cdirun's own process standing in a container's cgroup for a while, so that the processes
/// libcontainer forks meanwhile (the init, an exec'd process) start there.
///
/// A process sees its cgroups in a cgroup namespace relative to where it stood when the
/// namespace was made. libcontainer places the init only in the hierarchies it manages before
/// the init unshares its cgroup namespace; cdirun's placement in the others (`name=systemd`
/// and the cgroup2 mount of a hybrid host) after that would show the container host paths
/// such as `0::/workload.slice/ID` where runc shows `/`. Born in the right cgroup, the init's
/// namespace is rooted there in every hierarchy.
pub struct Stay {
    /// `cgroup.procs` of each cgroup cdirun stood in before, to return to; empty once back.
    back: Arc<Mutex<Vec<PathBuf>>>,
    /// The thread that takes cdirun back as soon as it forked (see [`Stay::until_fork`]).
    watcher: Option<(Arc<AtomicBool>, std::thread::JoinHandle<()>)>,
}

impl Stay {
    /// Moves cdirun into `path` in `hierarchies` (creating it there as needed). Where cdirun
    /// could not come back (it runs in a cgroup outside its own cgroup namespace, as a process
    /// `nsenter` put into a machine does: `/proc/self/cgroup` says `/../..`), it stays where it
    /// is and the init is placed after its start, as before.
    pub fn enter(hierarchies: &[&Hierarchy], path: &CgroupPath) -> Result<Self, ScopeError> {
        let own = read(Path::new("/proc/self/cgroup"))?;
        let stay = Self {
            back: Arc::default(),
            watcher: None,
        };
        let Some(returns) = ways_back(&own, hierarchies) else {
            return Ok(stay);
        };
        let pid = std::process::id().to_string();
        for (hierarchy, procs) in returns {
            create_in(hierarchy, path)?;
            write(&hierarchy.dir(path).join(PROCS), &pid)?;
            lock(&stay.back).push(procs);
        }
        Ok(stay)
    }

    /// Takes cdirun back as soon as the calling thread forked its first child from now on. For
    /// create: the first process libcontainer forks is its intermediate process, which the
    /// init inherits its cgroups from; the hooks libcontainer runs later from cdirun's process
    /// (prestart, createRuntime) then start in cdirun's own cgroup, as with runc, not in the
    /// container's. Without `/proc/PID/task/TID/children` cdirun is taken back at [`leave`].
    ///
    /// [`leave`]: Stay::leave
    pub fn until_fork(mut self) -> Self {
        let children = PathBuf::from(format!(
            "/proc/self/task/{}/children",
            nix::unistd::gettid()
        ));
        let Ok(before) = fs::read_to_string(&children) else {
            return self;
        };
        let before: Vec<String> = before.split_whitespace().map(str::to_owned).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let (back, done) = (Arc::clone(&self.back), Arc::clone(&stop));
        let watcher = std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                let now = fs::read_to_string(&children).unwrap_or_default();
                if now
                    .split_whitespace()
                    .any(|pid| !before.iter().any(|b| b == pid))
                {
                    if let Err(err) = go_back(&back) {
                        tracing::warn!("cannot return to cdirun's own cgroup: {err}");
                    }
                    return;
                }
                std::thread::sleep(FORK_WATCH_PAUSE);
            }
        });
        self.watcher = Some((stop, watcher));
        self
    }

    /// Returns cdirun to the cgroups it came from (if the fork did not already).
    pub fn leave(mut self) -> Result<(), ScopeError> {
        self.stop_watching();
        go_back(&self.back)
    }

    fn stop_watching(&mut self) {
        if let Some((stop, watcher)) = self.watcher.take() {
            stop.store(true, Ordering::Relaxed);
            let _ = watcher.join();
        }
    }
}

/// How often the fork watcher looks: well below the time libcontainer takes from forking its
/// intermediate process to running the first hook.
const FORK_WATCH_PAUSE: Duration = Duration::from_micros(200);

fn lock(back: &Mutex<Vec<PathBuf>>) -> std::sync::MutexGuard<'_, Vec<PathBuf>> {
    back.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Writes cdirun's pid back into every cgroup it came from, once.
fn go_back(back: &Mutex<Vec<PathBuf>>) -> Result<(), ScopeError> {
    let pid = std::process::id().to_string();
    let mut first_error = None;
    for procs in std::mem::take(&mut *lock(back)) {
        if let Err(err) = write(&procs, &pid) {
            first_error.get_or_insert(err);
        }
    }
    first_error.map_or(Ok(()), Err)
}

impl Drop for Stay {
    /// An early return still takes cdirun out: a process left there would keep the container's
    /// cgroup populated and count against its limits.
    fn drop(&mut self) {
        self.stop_watching();
        if let Err(err) = go_back(&self.back) {
            tracing::warn!("cannot return to cdirun's own cgroup: {err}");
        }
    }
}

/// For each of `hierarchies` cdirun stands in, the `cgroup.procs` to return to; `None` when one
/// is out of reach.
fn ways_back<'h>(
    proc_self_cgroup: &str,
    hierarchies: &[&'h Hierarchy],
) -> Option<Vec<(&'h Hierarchy, PathBuf)>> {
    let mut returns = Vec::new();
    for hierarchy in hierarchies {
        let Some(current) = own_cgroup(proc_self_cgroup, hierarchy) else {
            continue;
        };
        let outside = Path::new(current)
            .components()
            .any(|c| c == std::path::Component::ParentDir);
        let procs = hierarchy
            .mount
            .join(current.trim_start_matches('/'))
            .join(PROCS);
        if outside || !procs.is_file() {
            return None;
        }
        returns.push((*hierarchy, procs));
    }
    Some(returns)
}

/// The path `/proc/self/cgroup` gives for `hierarchy`: the `0::` line for cgroup v2, else the
/// line whose controller list is the hierarchy's.
fn own_cgroup<'a>(proc_self_cgroup: &'a str, hierarchy: &Hierarchy) -> Option<&'a str> {
    proc_self_cgroup.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        let matches = match &hierarchy.kind {
            Kind::V2 => controllers.is_empty(),
            Kind::V1 { controllers: bound } => {
                let mut listed: Vec<&str> = controllers.split(',').collect();
                let mut bound: Vec<&str> = bound.iter().map(String::as_str).collect();
                listed.sort_unstable();
                bound.sort_unstable();
                !controllers.is_empty() && listed == bound
            }
        };
        matches.then_some(path)
    })
}

/// Limits for a slice or scope, in cgroup v2 terms (the public vocabulary); translated to the v1
/// files where the controller is bound to a v1 hierarchy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Limits {
    /// Bytes: v2 `memory.max`, v1 `memory.limit_in_bytes`.
    pub memory_max: Option<u64>,
    /// 1..=10000: v2 `cpu.weight`, v1 `cpu.shares` (runc's conversion).
    pub cpu_weight: Option<u64>,
    /// v2 `io.max` lines, e.g. "8:0 rbps=1048576 wiops=100"; v1 `blkio.throttle.*_device`.
    pub io_max: Vec<String>,
}

/// What `events --stats` reports for a scope. `None`: no hierarchy offers that figure;
/// `memory.max` `None` also means unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Metrics {
    pub path: String,
    pub memory: MemoryMetrics,
    pub cpu: CpuMetrics,
    pub pids: PidsMetrics,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MemoryMetrics {
    pub current: Option<u64>,
    pub max: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CpuMetrics {
    pub usage_usec: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PidsMetrics {
    pub current: u64,
}

/// One io.max line, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct IoMax {
    device: String,
    /// (v2 key, value; `None` = "max").
    settings: Vec<(&'static str, Option<u64>)>,
}

const IO_KEYS: [(&str, &str); 4] = [
    ("rbps", "blkio.throttle.read_bps_device"),
    ("wbps", "blkio.throttle.write_bps_device"),
    ("riops", "blkio.throttle.read_iops_device"),
    ("wiops", "blkio.throttle.write_iops_device"),
];

fn parse_io_max(entry: &str, path: &CgroupPath) -> Result<IoMax, ScopeError> {
    let bad = || ScopeError::IoMax {
        entry: entry.into(),
        path: path.to_string(),
    };
    let mut words = entry.split_whitespace();
    let device = words.next().ok_or_else(bad)?;
    let (major, minor) = device.split_once(':').ok_or_else(bad)?;
    if major.parse::<u32>().is_err() || minor.parse::<u32>().is_err() {
        return Err(bad());
    }
    let mut settings = Vec::new();
    for word in words {
        let (key, value) = word.split_once('=').ok_or_else(bad)?;
        let key = IO_KEYS
            .iter()
            .map(|(k, _)| *k)
            .find(|k| *k == key)
            .ok_or_else(bad)?;
        let value = match value {
            "max" => None,
            number => Some(number.parse().map_err(|_| bad())?),
        };
        settings.push((key, value));
    }
    if settings.is_empty() {
        return Err(bad());
    }
    Ok(IoMax {
        device: device.into(),
        settings,
    })
}

/// runc's cpu.weight <-> cpu.shares mapping, inverted: weight 1..=10000 to shares 2..=262144.
pub fn weight_to_shares(weight: u64) -> u64 {
    2 + ((weight - 1) * 262_142) / 9_999
}

/// A cgroup path in every hierarchy of the host.
pub struct Scope<'a> {
    hierarchies: &'a Hierarchies,
    path: CgroupPath,
}

impl<'a> Scope<'a> {
    pub fn new(hierarchies: &'a Hierarchies, path: CgroupPath) -> Self {
        Self { hierarchies, path }
    }

    /// The scope's directory in every hierarchy.
    pub fn dirs(&self) -> Vec<PathBuf> {
        self.hierarchies.iter().map(|h| h.dir(&self.path)).collect()
    }

    /// Creates the scope (and missing parents) in every hierarchy; idempotent. A new v1 cpuset
    /// directory starts with no CPUs or memory nodes, so those are copied from its parent.
    pub fn create(&self) -> Result<(), ScopeError> {
        for hierarchy in self.hierarchies.iter() {
            create_in(hierarchy, &self.path)?;
        }
        Ok(())
    }

    /// Moves `pid` into the scope in `hierarchies` (creating it there as needed).
    pub fn add_process(&self, pid: i32, hierarchies: &[&Hierarchy]) -> Result<(), ScopeError> {
        for hierarchy in hierarchies {
            create_in(hierarchy, &self.path)?;
            write(&hierarchy.dir(&self.path).join(PROCS), &pid.to_string())?;
        }
        Ok(())
    }

    /// Writes `limits`, each through the v1 hierarchy that has its controller, else through
    /// cgroup v2 (enabling the controller in every ancestor's `cgroup.subtree_control`).
    pub fn apply_limits(&self, limits: &Limits) -> Result<(), ScopeError> {
        if let Some(bytes) = limits.memory_max {
            match self.v1_dir("memory") {
                Some(dir) => write(&dir.join("memory.limit_in_bytes"), &bytes.to_string())?,
                None => {
                    let dir = self.v2_dir("memory", "memory-max")?;
                    write(&dir.join("memory.max"), &bytes.to_string())?;
                }
            }
        }
        if let Some(weight) = limits.cpu_weight {
            if !(1..=10_000).contains(&weight) {
                return Err(ScopeError::CpuWeight {
                    weight,
                    path: self.path.to_string(),
                });
            }
            match self.v1_dir("cpu") {
                Some(dir) => write(
                    &dir.join("cpu.shares"),
                    &weight_to_shares(weight).to_string(),
                )?,
                None => {
                    let dir = self.v2_dir("cpu", "cpu-weight")?;
                    write(&dir.join("cpu.weight"), &weight.to_string())?;
                }
            }
        }
        let io: Vec<IoMax> = limits
            .io_max
            .iter()
            .map(|entry| parse_io_max(entry, &self.path))
            .collect::<Result<_, _>>()?;
        if !io.is_empty() {
            match self.v1_dir("blkio") {
                Some(dir) => {
                    for line in &io {
                        for (key, value) in &line.settings {
                            let file = IO_KEYS.iter().find(|(k, _)| k == key).map(|(_, f)| *f);
                            // v1 removes a throttle when it is set to 0.
                            let value = value.unwrap_or(0);
                            write(
                                &dir.join(file.unwrap_or_default()),
                                &format!("{} {value}", line.device),
                            )?;
                        }
                    }
                }
                None => {
                    let dir = self.v2_dir("io", "io-max")?;
                    for line in &io {
                        let settings: Vec<String> = line
                            .settings
                            .iter()
                            .map(|(key, value)| match value {
                                Some(number) => format!("{key}={number}"),
                                None => format!("{key}=max"),
                            })
                            .collect();
                        write(
                            &dir.join("io.max"),
                            &format!("{} {}", line.device, settings.join(" ")),
                        )?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Turns the kernel's OOM killer off for the cgroup (`linux.resources.disableOOMKiller`).
    /// Only cgroup v1 has the switch (memory.oom_control); on v2 this does nothing, as in runc
    /// and crun.
    pub fn disable_oom_killer(&self) -> Result<(), ScopeError> {
        match self.v1_dir("memory") {
            Some(dir) => write(&dir.join("memory.oom_control"), "1"),
            None => Ok(()),
        }
    }

    /// Memory in use and its limit, CPU time used, and the number of processes. Each figure
    /// comes from the v1 controller when one is mounted, else from cgroup v2.
    pub fn metrics(&self) -> Result<Metrics, ScopeError> {
        let mut metrics = Metrics {
            path: self.path.to_string(),
            ..Metrics::default()
        };
        let v2 = self
            .hierarchies
            .iter()
            .find(|h| h.is_v2())
            .map(|h| h.dir(&self.path))
            .filter(|dir| dir.exists());
        if let Some(dir) = self.v1_dir("memory") {
            metrics.memory.current = Some(read_u64(&dir.join("memory.usage_in_bytes"))?);
            let limit = read_u64(&dir.join("memory.limit_in_bytes"))?;
            metrics.memory.max = (limit < V1_UNLIMITED).then_some(limit);
        } else if let Some(dir) = v2.as_ref().filter(|d| d.join("memory.current").exists()) {
            metrics.memory.current = Some(read_u64(&dir.join("memory.current"))?);
            metrics.memory.max = read_max(&dir.join("memory.max"))?;
        }
        if let Some(dir) = self.v1_dir("cpuacct") {
            metrics.cpu.usage_usec = Some(read_u64(&dir.join("cpuacct.usage"))? / 1000);
        } else if let Some(dir) = &v2 {
            // cpu.stat's usage_usec is kept by every v2 cgroup, with or without the cpu controller.
            metrics.cpu.usage_usec = read_keyed(&dir.join("cpu.stat"), "usage_usec")?;
        }
        let pids_dir = self
            .v1_dir("pids")
            .or_else(|| v2.clone().filter(|d| d.join("pids.current").exists()));
        metrics.pids.current = match pids_dir {
            Some(dir) => read_u64(&dir.join("pids.current"))?,
            None => self.pids()?.len() as u64,
        };
        Ok(metrics)
    }

    /// True when no process is left in the scope or below it in any hierarchy (v2:
    /// `populated 0` in `cgroup.events`, which counts descendants; v1: an empty
    /// `cgroup.procs` in the scope and in every cgroup below it).
    pub fn is_empty(&self) -> Result<bool, ScopeError> {
        for hierarchy in self.hierarchies.iter() {
            let dir = hierarchy.dir(&self.path);
            if !dir.exists() {
                continue;
            }
            let events = dir.join("cgroup.events");
            if hierarchy.is_v2() && events.exists() {
                if read_keyed(&events, "populated")? != Some(0) {
                    return Ok(false);
                }
                continue;
            }
            for cgroup in std::iter::once(dir.clone()).chain(descendants(&dir)?) {
                if !read_pids(&cgroup.join(PROCS))?.is_empty() {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// Kills everything in the scope and in the cgroups below it (a nested runtime's, systemd's
    /// in a container) and waits until it is empty. `cgroup.kill` (v2, Linux 5.14+) kills the
    /// whole subtree at once with no pid-reuse race; without it (v1, older kernels) every
    /// listed pid gets SIGKILL, repeatedly, because a process may fork between the listing and
    /// the signal. A v1-frozen (paused) cgroup is thawed after the signal, or its processes
    /// would never act on it.
    pub fn kill(&self) -> Result<(), ScopeError> {
        for hierarchy in self.hierarchies.iter().filter(|h| h.is_v2()) {
            let file = hierarchy.dir(&self.path).join("cgroup.kill");
            if file.exists() {
                write(&file, "1")?;
            }
        }
        for _ in 0..DRAIN_ATTEMPTS {
            let pids = self.pids()?;
            if pids.is_empty() && self.is_empty()? {
                return Ok(());
            }
            for pid in pids {
                // A process that exited meanwhile is what we want anyway.
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            self.thaw()?;
            std::thread::sleep(DRAIN_PAUSE);
        }
        let pids = self.pids()?;
        Err(ScopeError::Busy {
            dir: self.dirs().into_iter().next().unwrap_or_default(),
            pids,
        })
    }

    /// Kills what is left, then removes the scope's directory in every hierarchy, the cgroups
    /// made below it first (deepest first, as runc does: a cgroup with children cannot be
    /// removed). Idempotent: a directory already gone is fine. Parents are kept (other scopes
    /// may share them).
    pub fn remove(&self) -> Result<(), ScopeError> {
        if !self.is_empty()? {
            self.kill()?;
        }
        for dir in self.dirs() {
            for child in descendants(&dir)? {
                remove_dir_retrying(&child)?;
            }
            remove_dir_retrying(&dir)?;
        }
        Ok(())
    }

    /// Kills what runs in the cgroups below the scope and removes them, deepest first, in
    /// every hierarchy; the scope itself and its processes stay. For a failed create, whose
    /// scope may hold another container's process: see `commands::create::placement`.
    pub fn remove_descendants(&self) -> Result<(), ScopeError> {
        for dir in self.dirs() {
            let below = descendants(&dir)?;
            kill_in(&below)?;
            for child in &below {
                remove_dir_retrying(child)?;
            }
        }
        Ok(())
    }

    /// Every pid listed in the scope's own `cgroup.procs` (not below it), in any hierarchy,
    /// deduplicated.
    pub fn own_pids(&self) -> Result<Vec<i32>, ScopeError> {
        let mut pids = Vec::new();
        for dir in self.dirs() {
            pids.extend(read_pids(&dir.join(PROCS))?);
        }
        pids.sort_unstable();
        pids.dedup();
        Ok(pids)
    }

    /// Every pid listed in `cgroup.procs` of the scope or of a cgroup below it, in any
    /// hierarchy, deduplicated.
    pub fn pids(&self) -> Result<Vec<i32>, ScopeError> {
        let mut pids = Vec::new();
        for dir in self.dirs() {
            if dir.exists() {
                for cgroup in std::iter::once(dir.clone()).chain(descendants(&dir)?) {
                    pids.extend(read_pids(&cgroup.join(PROCS))?);
                }
            }
        }
        pids.sort_unstable();
        pids.dedup();
        Ok(pids)
    }

    /// Thaws the scope and every cgroup below it in a v1 freezer hierarchy. A cgroup frozen
    /// itself stays frozen when its parent thaws, so each one is written.
    fn thaw(&self) -> Result<(), ScopeError> {
        let Some(dir) = self.v1_dir("freezer").filter(|dir| dir.exists()) else {
            return Ok(());
        };
        for cgroup in std::iter::once(dir.clone()).chain(descendants(&dir)?) {
            thaw_dir(&cgroup)?;
        }
        Ok(())
    }

    fn v1_dir(&self, controller: &str) -> Option<PathBuf> {
        self.hierarchies
            .iter()
            .find(|h| h.has_v1(controller))
            .map(|h| h.dir(&self.path))
    }

    /// The scope's v2 directory with `controller` enabled on the way down from the root.
    fn v2_dir(&self, controller: &'static str, limit: &'static str) -> Result<PathBuf, ScopeError> {
        let no_controller = || ScopeError::NoController {
            limit,
            path: self.path.to_string(),
            controller,
        };
        let hierarchy = self
            .hierarchies
            .iter()
            .find(|h| h.is_v2())
            .ok_or_else(no_controller)?;
        let available =
            fs::read_to_string(hierarchy.mount.join("cgroup.controllers")).unwrap_or_default();
        if !available.split_whitespace().any(|c| c == controller) {
            return Err(no_controller());
        }
        let mut dir = hierarchy.mount.clone();
        for component in self.path.components() {
            write(
                &dir.join("cgroup.subtree_control"),
                &format!("+{controller}"),
            )?;
            dir.push(component);
        }
        Ok(dir)
    }
}

fn create_in(hierarchy: &Hierarchy, path: &CgroupPath) -> Result<(), ScopeError> {
    let mut dir = hierarchy.mount.clone();
    for component in path.components() {
        let parent = dir.clone();
        dir.push(component);
        match fs::create_dir(&dir) {
            Ok(()) => {
                if hierarchy.has_v1("cpuset") {
                    for file in ["cpuset.cpus", "cpuset.mems"] {
                        let current = fs::read_to_string(dir.join(file)).unwrap_or_default();
                        if current.trim().is_empty() {
                            let inherited = read(&parent.join(file))?;
                            write(&dir.join(file), inherited.trim())?;
                        }
                    }
                }
            }
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
            Err(cause) => return Err(ScopeError::Create { dir, cause }),
        }
    }
    Ok(())
}

/// The cgroup directories below `dir`, deepest first (each one before its parent); none when
/// `dir` does not exist. A cgroup directory holds only control files besides its children.
fn descendants(dir: &Path) -> Result<Vec<PathBuf>, ScopeError> {
    let mut found = Vec::new();
    collect_children(dir, &mut found)?;
    Ok(found)
}

fn collect_children(dir: &Path, found: &mut Vec<PathBuf>) -> Result<(), ScopeError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        // Removed meanwhile (or never made in this hierarchy): nothing below it.
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(cause) => {
            return Err(ScopeError::Read {
                file: dir.to_owned(),
                cause,
            });
        }
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            let child = entry.path();
            collect_children(&child, found)?;
            found.push(child);
        }
    }
    Ok(())
}

/// Kills every process in `cgroups` (and only there) until none is left: `cgroup.kill` where
/// v2 offers it, else SIGKILL to each listed pid, repeated as in [`Scope::kill`].
fn kill_in(cgroups: &[PathBuf]) -> Result<(), ScopeError> {
    for cgroup in cgroups {
        let file = cgroup.join("cgroup.kill");
        if file.exists() {
            write(&file, "1")?;
        }
    }
    let pids = || -> Result<Vec<i32>, ScopeError> {
        let mut pids = Vec::new();
        for cgroup in cgroups {
            pids.extend(read_pids(&cgroup.join(PROCS))?);
        }
        Ok(pids)
    };
    for _ in 0..DRAIN_ATTEMPTS {
        let left = pids()?;
        if left.is_empty() {
            return Ok(());
        }
        for pid in left {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        for cgroup in cgroups {
            thaw_dir(cgroup)?;
        }
        std::thread::sleep(DRAIN_PAUSE);
    }
    Err(ScopeError::Busy {
        dir: cgroups.first().cloned().unwrap_or_default(),
        pids: pids()?,
    })
}

/// Writes THAWED to a v1 cgroup's `freezer.state` unless it is thawed (or has no freezer).
fn thaw_dir(dir: &Path) -> Result<(), ScopeError> {
    let file = dir.join(FREEZER_STATE);
    match fs::read_to_string(&file) {
        Ok(state) if state.trim() != "THAWED" => write(&file, "THAWED"),
        _ => Ok(()),
    }
}

/// An io error with its errno's name first (`EBUSY: Device or resource busy`), as runc and the
/// kernel documentation name them.
fn errno(cause: &io::Error) -> String {
    match cause.raw_os_error() {
        Some(code) => nix::errno::Errno::from_raw(code).to_string(),
        None => cause.to_string(),
    }
}

/// rmdir, retried while the kernel still counts exiting processes in the cgroup.
pub(super) fn remove_dir_retrying(dir: &Path) -> Result<(), ScopeError> {
    let mut attempts = 0;
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(err)
                if err.raw_os_error() == Some(nix::libc::EBUSY) && attempts < DRAIN_ATTEMPTS =>
            {
                attempts += 1;
                std::thread::sleep(DRAIN_PAUSE);
            }
            Err(cause) => {
                return Err(ScopeError::Remove {
                    dir: dir.to_owned(),
                    cause,
                });
            }
        }
    }
}

fn write(file: &Path, value: &str) -> Result<(), ScopeError> {
    fs::write(file, value).map_err(|cause| ScopeError::Write {
        file: file.to_owned(),
        value: value.to_owned(),
        cause,
    })
}

fn read(file: &Path) -> Result<String, ScopeError> {
    fs::read_to_string(file).map_err(|cause| ScopeError::Read {
        file: file.to_owned(),
        cause,
    })
}

fn read_u64(file: &Path) -> Result<u64, ScopeError> {
    let content = read(file)?;
    content.trim().parse().map_err(|_| ScopeError::Parse {
        file: file.to_owned(),
        content,
    })
}

/// A v2 limit file: a number, or "max" (`None`).
fn read_max(file: &Path) -> Result<Option<u64>, ScopeError> {
    let content = read(file)?;
    match content.trim() {
        "max" => Ok(None),
        number => number.parse().map(Some).map_err(|_| ScopeError::Parse {
            file: file.to_owned(),
            content,
        }),
    }
}

/// The value of `key` in a flat-keyed file (`cpu.stat`, `cgroup.events`).
fn read_keyed(file: &Path, key: &str) -> Result<Option<u64>, ScopeError> {
    let content = read(file)?;
    for line in content.lines() {
        if let Some((k, v)) = line.split_once(' ') {
            if k == key {
                return v.trim().parse().map(Some).map_err(|_| ScopeError::Parse {
                    file: file.to_owned(),
                    content: line.to_owned(),
                });
            }
        }
    }
    Ok(None)
}

fn read_pids(file: &Path) -> Result<Vec<i32>, ScopeError> {
    let content = match fs::read_to_string(file) {
        Ok(content) => content,
        // Removed meanwhile: nothing in it.
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(cause) => {
            return Err(ScopeError::Read {
                file: file.to_owned(),
                cause,
            });
        }
    };
    content
        .lines()
        .map(|line| {
            line.trim().parse().map_err(|_| ScopeError::Parse {
                file: file.to_owned(),
                content: line.to_owned(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cgroup_finds_each_hierarchys_line() {
        let listing = "12:cpu,cpuacct:/user.slice\n9:name=systemd:/init.scope\n0::/init.scope\n";
        let v1 = Hierarchy::v1("/sys/fs/cgroup/cpu,cpuacct", &["cpuacct", "cpu"]);
        let named = Hierarchy::v1("/sys/fs/cgroup/systemd", &["name=systemd"]);
        let v2 = Hierarchy::v2("/sys/fs/cgroup/unified");
        let memory = Hierarchy::v1("/sys/fs/cgroup/memory", &["memory"]);
        assert_eq!(own_cgroup(listing, &v1), Some("/user.slice"));
        assert_eq!(own_cgroup(listing, &named), Some("/init.scope"));
        assert_eq!(own_cgroup(listing, &v2), Some("/init.scope"));
        assert_eq!(own_cgroup(listing, &memory), None);
    }

    #[test]
    fn no_stay_where_cdirun_could_not_come_back() {
        let tree = tempfile::tempdir().unwrap();
        let v2 = Hierarchy::v2(tree.path());
        fs::create_dir(tree.path().join("svc")).unwrap();
        fs::write(tree.path().join("svc").join(PROCS), "").unwrap();
        let back = ways_back("0::/svc\n", &[&v2]).unwrap();
        assert_eq!(back, [(&v2, tree.path().join("svc").join(PROCS))]);
        // Outside its cgroup namespace (nsenter into a machine), or gone.
        assert_eq!(ways_back("0::/../..\n", &[&v2]), None);
        assert_eq!(ways_back("0::/gone\n", &[&v2]), None);
    }

    fn path(text: &str) -> CgroupPath {
        CgroupPath::parse(text).unwrap()
    }

    /// A fake pure-v2 root: the controllers the root offers, nothing enabled yet.
    fn v2_tree() -> (tempfile::TempDir, Hierarchies) {
        let tree = tempfile::tempdir().unwrap();
        fs::write(
            tree.path().join("cgroup.controllers"),
            "cpu io memory pids\n",
        )
        .unwrap();
        let hierarchies = Hierarchies(vec![Hierarchy::v2(tree.path())]);
        (tree, hierarchies)
    }

    fn file(dir: &Path, name: &str) -> String {
        fs::read_to_string(dir.join(name)).unwrap()
    }

    #[test]
    fn v2_limits_are_written_and_controllers_enabled_on_the_way_down() {
        let (tree, hierarchies) = v2_tree();
        let scope = Scope::new(&hierarchies, path("/pact.slice/pact-gpu.slice"));
        scope.create().unwrap();
        scope
            .apply_limits(&Limits {
                memory_max: Some(512 << 20),
                cpu_weight: Some(200),
                io_max: vec!["8:0 rbps=1048576 wiops=max".into()],
            })
            .unwrap();
        let leaf = tree.path().join("pact.slice/pact-gpu.slice");
        assert_eq!(file(&leaf, "memory.max"), "536870912");
        assert_eq!(file(&leaf, "cpu.weight"), "200");
        assert_eq!(file(&leaf, "io.max"), "8:0 rbps=1048576 wiops=max");
        // Each ancestor got the last controller enabled (a temp file keeps only the last write;
        // the kernel accumulates them).
        assert_eq!(file(tree.path(), "cgroup.subtree_control"), "+io");
        assert_eq!(
            file(&tree.path().join("pact.slice"), "cgroup.subtree_control"),
            "+io"
        );
        assert!(!leaf.join("cgroup.subtree_control").exists());
    }

    #[test]
    fn v2_limit_without_the_controller_is_an_error_naming_it() {
        let (tree, hierarchies) = v2_tree();
        fs::write(tree.path().join("cgroup.controllers"), "pids\n").unwrap();
        let scope = Scope::new(&hierarchies, path("/workload.slice"));
        scope.create().unwrap();
        let err = scope
            .apply_limits(&Limits {
                memory_max: Some(1),
                ..Limits::default()
            })
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("memory") && msg.contains("/workload.slice"),
            "{msg}"
        );
    }

    #[test]
    fn v1_equivalents_are_written_where_v1_has_the_controller() {
        let tree = tempfile::tempdir().unwrap();
        let hierarchies = Hierarchies(vec![
            Hierarchy::v1(tree.path().join("memory"), &["memory"]),
            Hierarchy::v1(tree.path().join("cpu"), &["cpu"]),
            Hierarchy::v1(tree.path().join("blkio"), &["blkio"]),
            Hierarchy::v2(tree.path().join("unified")),
        ]);
        for h in hierarchies.iter() {
            fs::create_dir_all(&h.mount).unwrap();
        }
        let scope = Scope::new(&hierarchies, path("/workload.slice"));
        scope.create().unwrap();
        scope
            .apply_limits(&Limits {
                memory_max: Some(1 << 30),
                cpu_weight: Some(100),
                io_max: vec!["8:16 wbps=4096".into()],
            })
            .unwrap();
        let dir = |h: &str| tree.path().join(h).join("workload.slice");
        assert_eq!(file(&dir("memory"), "memory.limit_in_bytes"), "1073741824");
        assert_eq!(file(&dir("cpu"), "cpu.shares"), "2597");
        assert_eq!(
            file(&dir("blkio"), "blkio.throttle.write_bps_device"),
            "8:16 4096"
        );
        assert!(!dir("unified").join("memory.max").exists());
    }

    #[test]
    fn weight_and_shares_agree_with_runc_at_the_ends() {
        assert_eq!(weight_to_shares(1), 2);
        assert_eq!(weight_to_shares(10_000), 262_144);
        assert_eq!(weight_to_shares(100), 2_597);
    }

    #[test]
    fn bad_limits_are_refused_with_the_value() {
        let (_tree, hierarchies) = v2_tree();
        let scope = Scope::new(&hierarchies, path("/w.slice"));
        scope.create().unwrap();
        for (limits, needle) in [
            (
                Limits {
                    cpu_weight: Some(0),
                    ..Limits::default()
                },
                "cpu-weight 0",
            ),
            (
                Limits {
                    io_max: vec!["sda rbps=1".into()],
                    ..Limits::default()
                },
                "sda rbps=1",
            ),
            (
                Limits {
                    io_max: vec!["8:0 speed=1".into()],
                    ..Limits::default()
                },
                "speed=1",
            ),
        ] {
            let msg = scope.apply_limits(&limits).unwrap_err().to_string();
            assert!(msg.contains(needle), "{msg}");
        }
    }

    #[test]
    fn v2_metrics_are_read() {
        let (tree, hierarchies) = v2_tree();
        let scope = Scope::new(&hierarchies, path("/workload.slice/c1"));
        scope.create().unwrap();
        let dir = tree.path().join("workload.slice/c1");
        fs::write(dir.join("memory.current"), "4096\n").unwrap();
        fs::write(dir.join("memory.max"), "max\n").unwrap();
        fs::write(
            dir.join("cpu.stat"),
            "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n",
        )
        .unwrap();
        fs::write(dir.join("pids.current"), "3\n").unwrap();
        assert_eq!(
            scope.metrics().unwrap(),
            Metrics {
                path: "/workload.slice/c1".into(),
                memory: MemoryMetrics {
                    current: Some(4096),
                    max: None
                },
                cpu: CpuMetrics {
                    usage_usec: Some(1500)
                },
                pids: PidsMetrics { current: 3 },
            }
        );
        fs::write(dir.join("memory.max"), "1048576\n").unwrap();
        assert_eq!(scope.metrics().unwrap().memory.max, Some(1_048_576));
    }

    #[test]
    fn v1_metrics_are_read_and_unlimited_is_none() {
        let tree = tempfile::tempdir().unwrap();
        let hierarchies = Hierarchies(vec![
            Hierarchy::v1(tree.path().join("memory"), &["memory"]),
            Hierarchy::v1(tree.path().join("cpuacct"), &["cpuacct"]),
            Hierarchy::v1(tree.path().join("systemd"), &["name=systemd"]),
        ]);
        for h in hierarchies.iter() {
            fs::create_dir_all(h.mount.join("c1")).unwrap();
        }
        let memory = tree.path().join("memory/c1");
        fs::write(memory.join("memory.usage_in_bytes"), "8192\n").unwrap();
        fs::write(
            memory.join("memory.limit_in_bytes"),
            "9223372036854771712\n",
        )
        .unwrap();
        fs::write(tree.path().join("cpuacct/c1/cpuacct.usage"), "2500000\n").unwrap();
        // No pids controller: the process count comes from cgroup.procs.
        fs::write(memory.join(PROCS), "10\n11\n").unwrap();
        fs::write(tree.path().join("systemd/c1").join(PROCS), "10\n11\n").unwrap();
        let metrics = Scope::new(&hierarchies, path("/c1")).metrics().unwrap();
        assert_eq!(metrics.memory.current, Some(8192));
        assert_eq!(metrics.memory.max, None);
        assert_eq!(metrics.cpu.usage_usec, Some(2500));
        assert_eq!(metrics.pids.current, 2);
    }

    /// A fake hybrid host with `scope` made below `mount` in a v1 pids and a v2 hierarchy,
    /// plus child cgroups (directories only: rmdir works on them as on real cgroups).
    fn nested_tree(children: &[&str]) -> (tempfile::TempDir, Hierarchies) {
        let tree = tempfile::tempdir().unwrap();
        let hierarchies = Hierarchies(vec![
            Hierarchy::v1(tree.path().join("pids"), &["pids"]),
            Hierarchy::v2(tree.path().join("unified")),
        ]);
        for h in hierarchies.iter() {
            for child in children {
                fs::create_dir_all(h.mount.join("w.slice/c1").join(child)).unwrap();
            }
        }
        (tree, hierarchies)
    }

    #[test]
    fn remove_takes_the_cgroups_below_the_scope_deepest_first() {
        let (tree, hierarchies) = nested_tree(&["sub/deeper/deepest", "sub/other", "second"]);
        let scope = Scope::new(&hierarchies, path("/w.slice/c1"));
        let below = descendants(&tree.path().join("pids/w.slice/c1")).unwrap();
        assert_eq!(below.len(), 5);
        for (i, dir) in below.iter().enumerate() {
            assert!(
                below[i + 1..].iter().all(|later| !later.starts_with(dir)),
                "{dir:?} comes before a cgroup below it: {below:?}"
            );
        }
        scope.remove().unwrap();
        for h in ["pids", "unified"] {
            assert!(!tree.path().join(h).join("w.slice/c1").exists(), "{h}");
            assert!(tree.path().join(h).join("w.slice").exists(), "{h}");
        }
        // Idempotent: gone is fine.
        scope.remove().unwrap();
    }

    #[test]
    fn remove_descendants_keeps_the_scope() {
        let (tree, hierarchies) = nested_tree(&["sub/deeper"]);
        Scope::new(&hierarchies, path("/w.slice/c1"))
            .remove_descendants()
            .unwrap();
        for h in ["pids", "unified"] {
            let dir = tree.path().join(h).join("w.slice/c1");
            assert!(dir.is_dir(), "{h}");
            assert!(!dir.join("sub").exists(), "{h}");
        }
    }

    #[test]
    fn processes_below_the_scope_count_as_the_scopes() {
        let (tree, hierarchies) = nested_tree(&["sub"]);
        fs::write(tree.path().join("pids/w.slice/c1/sub").join(PROCS), "42\n").unwrap();
        let scope = Scope::new(&hierarchies, path("/w.slice/c1"));
        assert_eq!(scope.pids().unwrap(), vec![42]);
        assert!(!scope.is_empty().unwrap());
    }

    #[test]
    fn a_failed_removal_names_the_cgroup_and_the_errno() {
        let (tree, hierarchies) = nested_tree(&["sub"]);
        // Not a cgroup: a regular file keeps the directory from going (ENOTEMPTY).
        let sub = tree.path().join("pids/w.slice/c1/sub");
        fs::write(sub.join("stray"), "").unwrap();
        let msg = Scope::new(&hierarchies, path("/w.slice/c1"))
            .remove()
            .unwrap_err()
            .to_string();
        assert!(msg.contains(&sub.display().to_string()), "{msg}");
        assert!(msg.contains("ENOTEMPTY"), "{msg}");
        let busy = ScopeError::Remove {
            dir: sub,
            cause: io::Error::from_raw_os_error(nix::libc::EBUSY),
        };
        assert!(
            busy.to_string().ends_with("EBUSY: Device or resource busy"),
            "{busy}"
        );
    }

    #[test]
    fn is_empty_reads_populated_on_v2_and_procs_on_v1() {
        let tree = tempfile::tempdir().unwrap();
        let hierarchies = Hierarchies(vec![
            Hierarchy::v1(tree.path().join("pids"), &["pids"]),
            Hierarchy::v2(tree.path().join("unified")),
        ]);
        let v1 = tree.path().join("pids/c1");
        let v2 = tree.path().join("unified/c1");
        fs::create_dir_all(&v1).unwrap();
        fs::create_dir_all(&v2).unwrap();
        let scope = Scope::new(&hierarchies, path("/c1"));
        fs::write(v1.join(PROCS), "").unwrap();
        fs::write(v2.join("cgroup.events"), "populated 0\nfrozen 0\n").unwrap();
        assert!(scope.is_empty().unwrap());
        fs::write(v2.join("cgroup.events"), "populated 1\nfrozen 0\n").unwrap();
        assert!(!scope.is_empty().unwrap());
        fs::write(v2.join("cgroup.events"), "populated 0\nfrozen 0\n").unwrap();
        fs::write(v1.join(PROCS), "42\n").unwrap();
        assert!(!scope.is_empty().unwrap());
        assert_eq!(scope.pids().unwrap(), vec![42]);
    }
}

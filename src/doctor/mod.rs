//! `doctor`'s checks: each looks at one part of the node (config, cgroups, the owned slice, CDI
//! specs and the host devices they name, driver files, the GPU ledger, MPS daemons, hooks.d,
//! client configurations) and says ok, warn or fail, with what to do. Nothing is created,
//! locked or changed: the ledger and MPS references are read as files.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::cdi::Registry;
use crate::cdi::generate::Host;
use crate::cdi::registry::LoadProblem;
use crate::cdi::spec::{DeviceNode, Spec};
use crate::cgroup::{CgroupPath, Hierarchies, Layout, Owners};
use crate::claims::{gpu, mps};
use crate::config::{Config, ConfigError, Loaded, OnError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
        })
    }
}

/// One finding: the part of the node, the verdict, what was seen and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub area: &'static str,
    pub status: Status,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<4}  {:<7}  {}",
            self.status.to_string(),
            self.area,
            self.message
        )?;
        if let Some(fix) = &self.fix {
            write!(f, " -- {fix}")?;
        }
        Ok(())
    }
}

fn ok(area: &'static str, message: impl Into<String>) -> Check {
    Check {
        area,
        status: Status::Ok,
        message: message.into(),
        fix: None,
    }
}

fn warn(area: &'static str, message: impl Into<String>, fix: impl Into<String>) -> Check {
    Check {
        area,
        status: Status::Warn,
        message: message.into(),
        fix: Some(fix.into()),
    }
}

fn fail(area: &'static str, message: impl Into<String>, fix: impl Into<String>) -> Check {
    Check {
        area,
        status: Status::Fail,
        message: message.into(),
        fix: Some(fix.into()),
    }
}

/// What the checks look at.
pub struct Inputs<'a> {
    /// The config as `Config::load` gave it.
    pub config: &'a Result<Loaded, ConfigError>,
    /// Where procfs, `/run` and client configs are read (spec host paths are used as written).
    pub host: &'a Host,
    /// The global `--systemd-cgroup` flag.
    pub systemd_cgroup: bool,
}

/// Every check, in the order an operator reads them.
pub fn run(inputs: &Inputs) -> Vec<Check> {
    let mut checks = Vec::new();
    let default = Config::default();
    let config = match inputs.config {
        Ok(loaded) => {
            checks.push(ok(
                "config",
                match &loaded.path {
                    Some(path) => format!("{} loaded", path.display()),
                    None => format!("no {} (embedded defaults)", crate::config::DEFAULT_PATH),
                },
            ));
            &loaded.config
        }
        Err(err) => {
            checks.push(fail(
                "config",
                err.to_string(),
                "fix the file; the checks below use the embedded defaults",
            ));
            &default
        }
    };
    checks.extend(cgroups(inputs.host, inputs.systemd_cgroup, config));
    let registry = Registry::load(&config.cdi.spec_dirs);
    checks.extend(specs(&registry));
    checks.extend(devices(&registry));
    checks.extend(driver(inputs.host, &registry));
    checks.extend(ledger(&config.state_dir, &registry));
    checks.extend(mps_daemons(config));
    checks.extend(hooks(config));
    checks.extend(clients(inputs.host));
    checks
}

/// The worst verdict: what the exit status reports.
pub fn worst(checks: &[Check]) -> Status {
    checks.iter().map(|c| c.status).max().unwrap_or(Status::Ok)
}

/// cgroup layout and driver, and the owned slice with its limits.
fn cgroups(host: &Host, systemd_cgroup: bool, config: &Config) -> Vec<Check> {
    let mut checks = Vec::new();
    let mountinfo_path = host.procfs.join("self/mountinfo");
    let hierarchies = match std::fs::read_to_string(&mountinfo_path) {
        Ok(text) => Hierarchies(crate::cgroup::parse_mountinfo(&text)),
        Err(err) => {
            checks.push(fail(
                "cgroup",
                format!("cannot read {}: {err}", mountinfo_path.display()),
                "mount procfs",
            ));
            return checks;
        }
    };
    let layout = hierarchies.layout();
    let v2 = hierarchies
        .iter()
        .find(|h| h.is_v2())
        .map(|h| h.mount.clone());
    let systemd = host.root_path(Path::new("/run/systemd/system")).is_dir();
    let driver = if systemd_cgroup {
        "systemd"
    } else {
        "cgroupfs"
    };
    match layout {
        None => checks.push(fail(
            "cgroup",
            format!("no cgroup filesystem in {}", mountinfo_path.display()),
            "mount cgroup2 at /sys/fs/cgroup",
        )),
        Some(layout) => {
            let words = match layout {
                Layout::V1 => "v1".to_owned(),
                Layout::Hybrid => format!(
                    "hybrid (v1 controllers, cgroup2 at {})",
                    v2.as_deref().unwrap_or(Path::new("?")).display()
                ),
                Layout::V2 => format!(
                    "v2 at {}",
                    v2.as_deref().unwrap_or(Path::new("?")).display()
                ),
            };
            let message = format!("layout {words}, {driver} driver");
            if systemd_cgroup && !systemd {
                checks.push(fail(
                    "cgroup",
                    format!("{message}, but systemd is not running (no /run/systemd/system)"),
                    "drop --systemd-cgroup (and SystemdCgroup/cgroup_manager in the client) on this node",
                ));
            } else {
                checks.push(ok("cgroup", message));
            }
        }
    }
    let owners = match Owners::from_table(&config.slices.owners) {
        Ok(owners) => owners,
        Err(err) => {
            checks.push(fail(
                "slice",
                format!("[slices.owners]: {err}"),
                "fix the owner table in the config file",
            ));
            return checks;
        }
    };
    let slice = match CgroupPath::parse_slice(&config.slices.default) {
        Ok(slice) => slice,
        Err(err) => {
            checks.push(fail(
                "slice",
                format!("[slices] default: {err}"),
                "fix [slices] default",
            ));
            return checks;
        }
    };
    if owners.owner_of(&slice) != Some(config.owner.as_str()) {
        checks.push(fail(
            "slice",
            format!(
                "[slices] default {slice} is not owned by {:?} (owners: {})",
                config.owner,
                owners.describe()
            ),
            "set [slices] default to a slice under one of the owner's roots",
        ));
        return checks;
    }
    let limits = config
        .slices
        .limits
        .iter()
        .map(|(name, l)| format!("{name}: {l:?}"))
        .collect::<Vec<_>>();
    let limits = if limits.is_empty() {
        "no limits configured".to_owned()
    } else {
        format!("limits {}", limits.join("; "))
    };
    let exists = hierarchies
        .iter()
        .next()
        .map(|h| h.dir(&slice))
        .filter(|dir| dir.is_dir());
    checks.push(ok(
        "slice",
        match exists {
            Some(dir) => format!(
                "owner {:?} acts in {slice} ({} exists), {limits}",
                config.owner,
                dir.display()
            ),
            None => format!(
                "owner {:?} acts in {slice} (made at the first container), {limits}",
                config.owner
            ),
        },
    ));
    checks
}

/// Every spec dir and spec file, with its verdict.
fn specs(registry: &Registry) -> Vec<Check> {
    let mut checks = Vec::new();
    for dir in &registry.dirs {
        match std::fs::read_dir(dir) {
            Ok(_) => checks.push(ok("cdi", format!("spec dir {} readable", dir.display()))),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => checks.push(ok(
                "cdi",
                format!("spec dir {} absent (no specs there)", dir.display()),
            )),
            Err(err) => checks.push(fail(
                "cdi",
                format!("cannot list spec dir {}: {err}", dir.display()),
                "make it readable by root",
            )),
        }
    }
    for loaded in &registry.specs {
        checks.push(ok(
            "cdi",
            format!(
                "{}: {} devices of kind {}",
                loaded.path.display(),
                loaded.spec.devices.len(),
                loaded.spec.kind
            ),
        ));
    }
    // One line per pair of files in conflict, not per device: generators write dozens.
    let mut conflicts: BTreeMap<Vec<PathBuf>, Vec<&str>> = BTreeMap::new();
    for problem in &registry.problems {
        let fix = match problem {
            LoadProblem::Conflict { device, paths } => {
                conflicts.entry(paths.clone()).or_default().push(device);
                continue;
            }
            LoadProblem::Spec(err) => match err {
                crate::cdi::spec::SpecError::Read { path, .. }
                | crate::cdi::spec::SpecError::Extension { path }
                | crate::cdi::spec::SpecError::Parse { path, .. }
                | crate::cdi::spec::SpecError::Invalid { path, .. } => format!(
                    "see cdirun cdi validate {}; regenerate it (cdirun cdi generate) or fix it",
                    path.display()
                ),
            },
            LoadProblem::NotAFile(_) => "remove or rename it".to_owned(),
            LoadProblem::Dir { .. } => "make the dir readable by root".to_owned(),
        };
        checks.push(fail("cdi", problem.to_string(), fix));
    }
    for (paths, devices) in conflicts {
        let paths: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        checks.push(fail(
            "cdi",
            format!(
                "{} and {} both define {}: at the same priority neither definition is used",
                paths[..paths.len() - 1].join(", "),
                paths[paths.len() - 1],
                devices.join(", ")
            ),
            "remove one of the files (two generators wrote the same devices?)",
        ));
    }
    if registry.devices.is_empty()
        && !registry
            .problems
            .iter()
            .any(|p| matches!(p, LoadProblem::Spec(_)))
    {
        checks.push(warn(
            "cdi",
            "no CDI devices in any spec dir: containers can ask for none",
            "cdirun cdi generate -o /etc/cdi",
        ));
    }
    checks
}

/// The host node a spec's device node stands for, and why it does not match when it does not.
fn node_problem(node: &DeviceNode) -> Option<String> {
    let host = node
        .host_path
        .as_deref()
        .filter(|p| !p.is_empty())
        .unwrap_or(&node.path);
    let metadata = match std::fs::metadata(host) {
        Ok(metadata) => metadata,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Some(format!("{host} is missing on the host"));
        }
        Err(err) => return Some(format!("{host}: {err}")),
    };
    let kind = if metadata.file_type().is_char_device() {
        "c"
    } else if metadata.file_type().is_block_device() {
        "b"
    } else if metadata.file_type().is_fifo() {
        "p"
    } else {
        return Some(format!("{host} is no device node"));
    };
    let rdev = metadata.rdev();
    let (major, minor) = (i64::from(libc::major(rdev)), i64::from(libc::minor(rdev)));
    let mut wrong = Vec::new();
    if let Some(typ) = node.typ.as_deref().filter(|t| !t.is_empty() && *t != "u") {
        if typ != kind {
            wrong.push(format!("type {typ} in the spec, {kind} on the host"));
        }
    }
    // A negative number is read as absent when the node is injected.
    if let Some(want) = node.major.filter(|m| *m >= 0) {
        if want != major {
            wrong.push(format!("major {want} in the spec, {major} on the host"));
        }
    }
    if let Some(want) = node.minor.filter(|m| *m >= 0) {
        if want != minor {
            wrong.push(format!("minor {want} in the spec, {minor} on the host"));
        }
    }
    (!wrong.is_empty()).then(|| format!("{host}: {}", wrong.join(", ")))
}

fn spec_nodes(spec: &Spec) -> Vec<(String, &DeviceNode)> {
    let mut nodes = Vec::new();
    if let Some(edits) = &spec.container_edits {
        nodes.extend(
            edits
                .device_nodes
                .iter()
                .map(|n| ("spec-level edits".to_owned(), n)),
        );
    }
    for device in &spec.devices {
        let name = format!("{}={}", spec.kind, device.name);
        nodes.extend(
            device
                .container_edits
                .device_nodes
                .iter()
                .map(|n| (name.clone(), n)),
        );
    }
    nodes
}

/// Host nodes, mounts and hook programs each spec names: what create would fail on.
fn devices(registry: &Registry) -> Vec<Check> {
    let mut checks = Vec::new();
    for loaded in &registry.specs {
        let file = loaded.path.display();
        let mut problems: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let nodes = spec_nodes(&loaded.spec);
        for (device, node) in &nodes {
            if let Some(problem) = node_problem(node) {
                problems.entry(problem).or_default().insert(device.clone());
            }
        }
        let mut edits: Vec<&crate::cdi::spec::ContainerEdits> =
            loaded.spec.container_edits.iter().collect();
        edits.extend(loaded.spec.devices.iter().map(|d| &d.container_edits));
        let mut files = 0;
        for edit in &edits {
            for mount in &edit.mounts {
                files += 1;
                if !Path::new(&mount.host_path).exists() {
                    problems
                        .entry(format!(
                            "mount source {} is missing on the host",
                            mount.host_path
                        ))
                        .or_default();
                }
            }
            for hook in &edit.hooks {
                files += 1;
                let executable = std::fs::metadata(&hook.path)
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
                if !executable {
                    problems
                        .entry(format!(
                            "hook program {} is missing or not executable",
                            hook.path
                        ))
                        .or_default();
                }
            }
        }
        if problems.is_empty() {
            checks.push(ok(
                "devices",
                format!(
                    "{file}: {} device nodes, {files} mounts and hooks present on the host",
                    nodes.len()
                ),
            ));
            continue;
        }
        for (problem, devices) in problems {
            let whose = if devices.is_empty() {
                String::new()
            } else {
                format!(
                    " (for {})",
                    devices.into_iter().collect::<Vec<_>>().join(", ")
                )
            };
            checks.push(fail(
                "devices",
                format!("{file}: {problem}{whose}"),
                "a create asking for these devices fails: regenerate the spec (cdirun cdi generate) or restore the host files",
            ));
        }
    }
    checks
}

/// Whether `name` is a library named for a driver version (`libcuda.so.550.54.14`): the
/// version after `.so.`.
fn library_version(name: &str) -> Option<&str> {
    let (_, version) = name.split_once(".so.")?;
    let parts: Vec<&str> = version.split('.').collect();
    (parts.len() >= 2
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())))
    .then_some(version)
}

/// The loaded NVIDIA driver against the driver libraries the NVIDIA specs mount.
fn driver(host: &Host, registry: &Registry) -> Vec<Check> {
    let nvidia: Vec<_> = registry
        .specs
        .iter()
        .filter(|s| s.spec.kind == crate::request::NVIDIA_KIND)
        .collect();
    if nvidia.is_empty() {
        return Vec::new();
    }
    let loaded = match crate::cdi::generate::nvidia::driver_version(host) {
        Ok(version) => version,
        Err(err) => {
            return vec![warn(
                "driver",
                format!("NVIDIA specs are installed but the driver version is unknown: {err}"),
                "load the nvidia kernel module, or remove the NVIDIA specs from this node",
            )];
        }
    };
    let mut checks = Vec::new();
    for spec in nvidia {
        let mut versions: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let edits = spec
            .spec
            .container_edits
            .iter()
            .chain(spec.spec.devices.iter().map(|d| &d.container_edits));
        for edit in edits {
            for mount in &edit.mounts {
                let name = Path::new(&mount.container_path)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if let Some(version) = library_version(&name) {
                    versions
                        .entry(version.to_owned())
                        .or_default()
                        .push(name.clone());
                }
            }
        }
        let others: Vec<String> = versions
            .iter()
            .filter(|(v, _)| **v != loaded)
            .map(|(v, libs)| format!("{} ({v})", libs.join(", ")))
            .collect();
        if !others.is_empty() {
            checks.push(fail(
                "driver",
                format!(
                    "{}: driver {loaded} is loaded, but the spec mounts {}",
                    spec.path.display(),
                    others.join("; ")
                ),
                format!(
                    "regenerate the spec: cdirun cdi generate --vendor nvidia -o {}",
                    spec.path.display()
                ),
            ));
        } else if versions.is_empty() {
            checks.push(warn(
                "driver",
                format!("{}: driver {loaded} is loaded, but the spec mounts no driver library", spec.path.display()),
                "regenerate the spec after the driver's libraries are in the linker cache (ldconfig)",
            ));
        } else {
            checks.push(ok(
                "driver",
                format!("{}: libraries match driver {loaded}", spec.path.display()),
            ));
        }
    }
    checks
}

/// Who holds which GPU, and holds of containers that are gone.
fn ledger(state_dir: &Path, registry: &Registry) -> Vec<Check> {
    let ledger = match gpu::read(state_dir) {
        Ok(ledger) => ledger,
        Err(err) => {
            return vec![fail(
                "ledger",
                err.to_string(),
                format!(
                    "stop creating GPU containers, move {} aside and restart the GPU containers",
                    state_dir.join(gpu::LEDGER_FILE).display()
                ),
            )];
        }
    };
    if ledger.devices.is_empty() {
        return vec![ok(
            "ledger",
            format!(
                "no GPU is held ({})",
                state_dir.join(gpu::LEDGER_FILE).display()
            ),
        )];
    }
    let mut checks = Vec::new();
    for (device, entries) in &ledger.devices {
        for entry in entries {
            let who = format!(
                "{device} held ({}) by {:?} (root {})",
                crate::config::serde_name(&entry.sharing).unwrap_or_default(),
                entry.holder.id,
                entry.holder.root.display()
            );
            if !entry.holder.is_live() {
                checks.push(warn(
                    "ledger",
                    format!("{who}, which is gone: a stale claim"),
                    "reclaimed by the next GPU allocation; or delete the container with --force",
                ));
            } else if registry.get(device).is_none() {
                checks.push(warn(
                    "ledger",
                    format!("{who}, a device no spec defines any more"),
                    "released when the container is deleted",
                ));
            } else {
                checks.push(ok("ledger", who));
            }
        }
    }
    checks
}

/// MPS daemons under the MPS root and the references recorded for them.
fn mps_daemons(config: &Config) -> Vec<Check> {
    let path = config.state_dir.join(mps::REFS_FILE);
    let refs: mps::Refs = match std::fs::read(&path) {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(refs) => refs,
            Err(err) => {
                return vec![fail(
                    "mps",
                    format!("{} is corrupt: {err}", path.display()),
                    "stop MPS containers and move the file aside",
                )];
            }
        },
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => mps::Refs::default(),
        Err(err) => {
            return vec![fail(
                "mps",
                format!("cannot read {}: {err}", path.display()),
                "make it readable by root",
            )];
        }
    };
    let daemon = |gpu| mps::Daemon {
        control: config.mps.control.clone(),
        root: config.mps.root.clone(),
        gpu,
    };
    let mut gpus: BTreeSet<u32> = refs.gpus.keys().copied().collect();
    if let Ok(entries) = std::fs::read_dir(&config.mps.root) {
        gpus.extend(entries.flatten().filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_prefix("gpu")?
                .parse::<u32>()
                .ok()
        }));
    }
    let mut checks = Vec::new();
    for gpu in gpus {
        let daemon = daemon(gpu);
        let holders = refs.gpus.get(&gpu).map(Vec::as_slice).unwrap_or_default();
        let live: Vec<&str> = holders
            .iter()
            .filter(|h| h.is_live())
            .map(|h| h.id.as_str())
            .collect();
        let stale: Vec<&str> = holders
            .iter()
            .filter(|h| !h.is_live())
            .map(|h| h.id.as_str())
            .collect();
        let alive = daemon.alive();
        if !stale.is_empty() {
            checks.push(warn(
                "mps",
                format!(
                    "GPU {gpu}: references of containers that are gone: {}",
                    stale.join(", ")
                ),
                "reclaimed by the next MPS create or release on that GPU",
            ));
        }
        match (alive, live.is_empty()) {
            (true, false) => checks.push(ok(
                "mps",
                format!(
                    "GPU {gpu}: daemon running ({}), used by {}",
                    daemon.socket().display(),
                    live.join(", ")
                ),
            )),
            (false, false) => checks.push(fail(
                "mps",
                format!(
                    "GPU {gpu}: {} containers use the MPS daemon, but it is not running (no {})",
                    live.len(),
                    daemon.socket().display()
                ),
                format!(
                    "start it: CUDA_MPS_PIPE_DIRECTORY={} CUDA_MPS_LOG_DIRECTORY={} {} -d",
                    daemon.pipe_dir().display(),
                    daemon.log_dir().display(),
                    config.mps.control.display()
                ),
            )),
            (true, true) if config.mps.lifetime == crate::config::MpsLifetime::PerRun => checks
                .push(warn(
                    "mps",
                    format!(
                        "GPU {gpu}: daemon running with no container using it (lifetime per_run)"
                    ),
                    format!(
                        "stop it: echo quit | CUDA_MPS_PIPE_DIRECTORY={} {}",
                        daemon.pipe_dir().display(),
                        config.mps.control.display()
                    ),
                )),
            (true, true) => checks.push(ok("mps", format!("GPU {gpu}: daemon running, unused"))),
            (false, true) => {}
        }
    }
    if checks.is_empty() {
        checks.push(ok(
            "mps",
            format!(
                "no MPS daemon or reference under {}",
                config.mps.root.display()
            ),
        ));
    }
    checks
}

/// hooks.d dirs and the verdict on their files.
fn hooks(config: &Config) -> Vec<Check> {
    let (definitions, problems) = crate::hooksd::load(&config.hooks.dirs);
    let dirs: Vec<String> = config
        .hooks
        .dirs
        .iter()
        .map(|d| d.display().to_string())
        .collect();
    let mut checks = vec![ok(
        "hooks",
        format!(
            "{} hooks.d definitions in effect from {}",
            definitions.len(),
            dirs.join(", ")
        ),
    )];
    for problem in problems {
        let message = problem.to_string();
        checks.push(match config.hooks.on_error {
            OnError::Fail => fail("hooks", message, "every create fails until the file is fixed or removed ([hooks] on-error = \"fail\")"),
            OnError::Skip => warn("hooks", message, "the file is skipped ([hooks] on-error = \"skip\"); fix or remove it"),
        });
    }
    checks
}

/// Client configurations under the host root and whether they name cdirun.
fn clients(host: &Host) -> Vec<Check> {
    let mut candidates: Vec<(&'static str, PathBuf)> = vec![
        (
            "containerd",
            host.root_path(Path::new("/etc/containerd/config.toml")),
        ),
        (
            "podman",
            host.root_path(Path::new("/etc/containers/containers.conf")),
        ),
        (
            "docker",
            host.root_path(Path::new("/etc/docker/daemon.json")),
        ),
    ];
    for dir in [
        "/etc/containerd/conf.d",
        "/etc/containers/containers.conf.d",
    ] {
        let client = if dir.contains("containerd") {
            "containerd"
        } else {
            "podman"
        };
        if let Ok(entries) = std::fs::read_dir(host.root_path(Path::new(dir))) {
            let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
            paths.sort();
            candidates.extend(paths.into_iter().map(|p| (client, p)));
        }
    }
    let mut found: BTreeMap<&'static str, Vec<(PathBuf, bool)>> = BTreeMap::new();
    for (client, path) in candidates {
        if let Ok(text) = std::fs::read_to_string(&path) {
            found
                .entry(client)
                .or_default()
                .push((path, text.contains("cdirun")));
        }
    }
    if found.is_empty() {
        return vec![warn(
            "clients",
            "no containerd, podman or docker configuration found",
            "see /usr/share/doc/cdirun/examples for containerd and podman snippets",
        )];
    }
    let mut checks = Vec::new();
    for (client, files) in found {
        let naming: Vec<String> = files
            .iter()
            .filter(|(_, n)| *n)
            .map(|(p, _)| p.display().to_string())
            .collect();
        if naming.is_empty() {
            let all: Vec<String> = files.iter().map(|(p, _)| p.display().to_string()).collect();
            checks.push(warn(
                "clients",
                format!("{client}: {} does not name cdirun", all.join(", ")),
                "add cdirun as a runtime (examples in /usr/share/doc/cdirun/examples)",
            ));
        } else {
            checks.push(ok(
                "clients",
                format!("{client}: {} names cdirun", naming.join(", ")),
            ));
        }
    }
    checks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_versions() {
        assert_eq!(library_version("libcuda.so.550.54.14"), Some("550.54.14"));
        assert_eq!(library_version("libnvidia-ml.so.470.82"), Some("470.82"));
        assert_eq!(library_version("libcuda.so.1"), None);
        assert_eq!(library_version("nvidia-smi"), None);
        assert_eq!(library_version("libx.so.1.a"), None);
    }

    #[test]
    fn the_worst_verdict_wins() {
        let c = |status| Check {
            area: "x",
            status,
            message: String::new(),
            fix: None,
        };
        assert_eq!(worst(&[]), Status::Ok);
        assert_eq!(worst(&[c(Status::Ok), c(Status::Warn)]), Status::Warn);
        assert_eq!(worst(&[c(Status::Fail), c(Status::Warn)]), Status::Fail);
    }

    #[test]
    fn a_node_whose_numbers_differ_from_the_host_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let node = |typ: Option<&str>, path: &Path| DeviceNode {
            path: "/dev/x".into(),
            host_path: Some(path.display().to_string()),
            typ: typ.map(str::to_owned),
            ..DeviceNode::default()
        };
        assert_eq!(node_problem(&node(Some("p"), &fifo)), None);
        assert_eq!(
            node_problem(&node(Some("c"), &fifo)),
            Some(format!(
                "{}: type c in the spec, p on the host",
                fifo.display()
            ))
        );
        let missing = dir.path().join("gone");
        assert_eq!(
            node_problem(&node(None, &missing)),
            Some(format!("{} is missing on the host", missing.display()))
        );
        let plain = dir.path().join("plain");
        std::fs::write(&plain, "").unwrap();
        assert!(
            node_problem(&node(None, &plain))
                .unwrap()
                .ends_with("is no device node")
        );
        // /dev/null is 1:3 on every Linux.
        let null = DeviceNode {
            major: Some(1),
            minor: Some(5),
            ..node(Some("c"), Path::new("/dev/null"))
        };
        assert_eq!(
            node_problem(&null),
            Some("/dev/null: minor 5 in the spec, 3 on the host".to_owned())
        );
    }
}

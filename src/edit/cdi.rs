//! CDI injection: resolves the requested CDI devices against the spec dirs and applies their
//! container edits to the OCI spec with the reference library's (`pkg/cdi`) semantics.
//!
//! Order: for each requested device, its spec's spec-level edits (once per spec) and then the
//! device's own edits. Every change is remove-then-add or add-if-absent, so applying twice gives
//! the same config.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use libcontainer::oci_spec::runtime::{
    Hook as OciHook, Hooks, LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType, LinuxIntelRdt,
    LinuxNamespaceType, LinuxNetDevice, Mount as OciMount, Spec,
};

use super::{Context, Edit, EditError};
use crate::cdi::Registry;
use crate::cdi::registry::LoadProblem;
use crate::cdi::spec::{
    ContainerEdits, DeviceNode, HOOK_STAGES, Hook, IntelRdt, Mount, NO_PERMISSIONS,
};
use crate::claims::Claims;
use crate::claims::gpu::{self as ledger, LedgerError};
use crate::engine::hook_stage::Stage;
use crate::request::{self, Device, Request, RequestError, Sharing, Source};

#[derive(Debug, thiserror::Error)]
pub enum CdiError {
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(
        "unresolvable CDI devices {}; searched {}{}; run `cdirun cdi list` to see the devices found",
        .devices.join(", "),
        dirs_text(.dirs),
        skipped_text(.skipped)
    )]
    Unresolvable {
        devices: Vec<String>,
        dirs: Vec<PathBuf>,
        skipped: Vec<String>,
    },
    #[error("CDI device {device}: cannot stat host device node {path}: {cause}")]
    HostNode {
        device: String,
        path: PathBuf,
        cause: String,
    },
    #[error(
        "CDI device {device}: host device node {path} is of type {host:?}, but the spec says {want:?}"
    )]
    TypeMismatch {
        device: String,
        path: PathBuf,
        host: String,
        want: String,
    },
    #[error(
        "CDI device {device} {how} by container {holder} (root {}); delete that container or request another device",
        .root.display()
    )]
    Held {
        device: String,
        /// `is held exclusively`, or which other name for its host devices is.
        how: String,
        holder: String,
        root: PathBuf,
    },
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("CDI device {device}: invalid hook name {stage:?}: use one of {}", HOOK_STAGES.join(", "))]
    HookStage { device: String, stage: String },
    #[error("CDI device {device}: config.json has no {section:?} section to edit")]
    MissingSection {
        device: String,
        section: &'static str,
    },
}

fn dirs_text(dirs: &[PathBuf]) -> String {
    if dirs.is_empty() {
        return "no spec dirs ([cdi] spec-dirs is empty)".into();
    }
    let dirs: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    dirs.join(", ")
}

fn skipped_text(skipped: &[String]) -> String {
    if skipped.is_empty() {
        String::new()
    } else {
        format!("; {}", skipped.join("; "))
    }
}

/// The CDI edit: first in the pipeline, skipped (no spec dir is read) when nothing is requested.
pub struct Cdi;

impl Edit for Cdi {
    fn name(&self) -> &'static str {
        "cdi"
    }

    fn apply(&self, spec: &mut Spec, ctx: &Context) -> Result<Claims, EditError> {
        let request = request::from_spec(spec, ctx.config).map_err(CdiError::from)?;
        if request.cdi.is_empty() && request.env_rewrites(&[]).is_empty() {
            return Ok(Claims::default());
        }
        for note in request.env_notes() {
            tracing::info!("{note}");
        }
        let mut edited = spec.clone();
        let mut devices = Vec::new();
        let mut plain = Vec::new();
        let mut registry = None;
        if !request.cdi.is_empty() {
            let loaded = Registry::load(&ctx.config.cdi.spec_dirs);
            devices = resolve(&loaded, &request)?;
            inject(&mut edited, &loaded, &devices)?;
            if ctx.rootless {
                bind_nodes(&mut edited, &loaded, &devices);
            }
            refuse_held(&loaded, &devices, ctx)?;
            plain = plain_devices(spec, ctx, &devices)?;
            registry = Some(loaded);
        }
        // After the devices' own env edits: the precedence rule's values describe the
        // allocation (the GPU edit later rewrites its vendor's variable for what it picks).
        let rewrites = request.env_rewrites(&devices);
        if !rewrites.is_empty() {
            if let Some(process) = edited.process_mut().as_mut() {
                let mut env = process.env().clone().unwrap_or_default();
                for (var, value) in &rewrites {
                    set_env(&mut env, &format!("{var}={value}"));
                }
                process.set_env(Some(env));
            }
        }
        // Last, so that nothing fails after the hold is written.
        let claims = match &registry {
            Some(registry) if !plain.is_empty() => hold(registry, &plain, ctx)?,
            _ => Claims::default(),
        };
        *spec = edited;
        Ok(claims)
    }
}

/// The devices a plain request holds: all it resolved, but for those of the kind an
/// `io.cdirun.gpu.*` request allocates (the GPU edit holds those, in the request's mode).
fn plain_devices(spec: &Spec, ctx: &Context, devices: &[String]) -> Result<Vec<String>, CdiError> {
    let allocated_kind = request::gpu_from_spec(spec, ctx.config)?.map(|gpu| gpu.vendor.kind());
    Ok(devices
        .iter()
        .filter(|name| {
            allocated_kind.is_none_or(|kind| {
                name.split_once('=')
                    .is_none_or(|(device_kind, _)| device_kind != kind)
            })
        })
        .cloned()
        .collect())
}

/// Records the devices of a plain request in the GPU ledger as shared holds, under its lock:
/// an exclusive request then never gets a device a live container uses, and the hold goes at
/// delete (or when the container is gone, as every entry does). Checked again under the lock,
/// so an exclusive holder that came after [`refuse_held`] is still refused. A dry run takes
/// nothing but reports the claim.
fn hold(registry: &Registry, devices: &[String], ctx: &Context) -> Result<Claims, CdiError> {
    let holder = crate::claims::Holder::current(ctx.root, ctx.container_id);
    let mut gpus = Vec::new();
    for name in devices {
        gpus.push(ledger::Gpu {
            name: name.clone(),
            nodes: identity(registry, name)?,
        });
    }
    if !ctx.dry_run {
        let mut locked = ledger::lock(&ctx.config.state_dir)?;
        for (device, stale) in locked.data.reclaim(crate::claims::Holder::is_live) {
            tracing::info!(
                "reclaimed {device} from container {} (root {}), which no longer exists",
                stale.id,
                stale.root.display()
            );
        }
        refuse_held_in(&locked.data, registry, devices, ctx)?;
        locked.data.take(&gpus, &holder, Sharing::Plain);
        locked.save().map_err(LedgerError::from)?;
    }
    Ok(Claims(vec![crate::claims::Claim::Gpu {
        devices: devices.to_vec(),
        sharing: Sharing::Plain,
        holder,
    }]))
}

/// Refuses a device another live container holds exclusively in the GPU ledger (by any name
/// for the same host devices). A plain request holds its devices shared, so shared holders do
/// not block it, and holders whose container is gone are ignored as the next allocation
/// reclaims them.
fn refuse_held(registry: &Registry, devices: &[String], ctx: &Context) -> Result<(), CdiError> {
    let ledger = ledger::read(&ctx.config.state_dir)?;
    refuse_held_in(&ledger, registry, devices, ctx)
}

/// [`refuse_held`] against a ledger already read.
fn refuse_held_in(
    ledger: &ledger::Ledger,
    registry: &Registry,
    devices: &[String],
    ctx: &Context,
) -> Result<(), CdiError> {
    if ledger.devices.is_empty() {
        return Ok(());
    }
    for name in devices {
        let gpu = ledger::Gpu {
            name: name.clone(),
            nodes: identity(registry, name)?,
        };
        let held = ledger.holders(&gpu).find(|(_, entry)| {
            entry.sharing == Sharing::Exclusive
                && !(entry.holder.root == ctx.root && entry.holder.id == ctx.container_id)
                && entry.holder.is_live()
        });
        if let Some((as_name, entry)) = held {
            return Err(CdiError::Held {
                device: name.clone(),
                holder: entry.holder.id.clone(),
                root: entry.holder.root.clone(),
                how: if as_name == name {
                    "is held exclusively".into()
                } else {
                    format!("shares host devices with {as_name}, held exclusively")
                },
            });
        }
    }
    Ok(())
}

/// The qualified names a request means, in order and without repeats; every device that does
/// not resolve is named in one error.
pub fn resolve(registry: &Registry, request: &Request) -> Result<Vec<String>, CdiError> {
    let mut found: Vec<String> = Vec::new();
    let mut missing = Vec::new();
    for requested in &request.cdi {
        let names = match &requested.device {
            Device::Qualified(q) => registry.devices.contains_key(q).then(|| vec![q.clone()]),
            Device::All { kind } => {
                // Generators such as nvidia-ctk define an `all` device; else every device.
                let all = format!("{kind}=all");
                if registry.devices.contains_key(&all) {
                    Some(vec![all])
                } else {
                    Some(registry.devices_of_kind(kind)).filter(|v| !v.is_empty())
                }
            }
            Device::InKind { kind, selector } => {
                registry.find_in_kind(kind, selector).map(|q| vec![q])
            }
        };
        match names {
            Some(names) => {
                for name in names {
                    if !found.contains(&name) {
                        found.push(name);
                    }
                }
            }
            None => missing.push(match &requested.source {
                Source::Annotation(key) => {
                    format!("{} (annotation {key})", requested.device.display_name())
                }
                Source::Env(var) => format!("{} ({var})", requested.device.display_name()),
            }),
        }
    }
    if missing.is_empty() {
        Ok(found)
    } else {
        Err(CdiError::Unresolvable {
            devices: missing,
            dirs: registry.dirs.clone(),
            skipped: registry
                .problems
                .iter()
                .map(LoadProblem::to_string)
                .collect(),
        })
    }
}

/// Applies the edits of `devices` (resolved names) to `spec`.
pub fn inject(spec: &mut Spec, registry: &Registry, devices: &[String]) -> Result<(), CdiError> {
    let mut specs_done = HashSet::new();
    let mut batches: Vec<(String, &ContainerEdits)> = Vec::new();
    for name in devices {
        let Some(r) = registry.device_ref(name) else {
            continue;
        };
        let loaded = &registry.specs[r.spec];
        if specs_done.insert(r.spec) {
            if let Some(edits) = &loaded.spec.container_edits {
                let origin = format!("{name} (spec-level edits of {})", loaded.path.display());
                batches.push((origin, edits));
            }
        }
        batches.push((
            origin_of(name, &loaded.path),
            &loaded.spec.devices[r.device].container_edits,
        ));
    }
    let batches: Vec<(&str, &ContainerEdits)> =
        batches.iter().map(|(o, e)| (o.as_str(), *e)).collect();
    apply_edits(spec, &batches)
}

/// Rootless: the device nodes of `devices` as bind mounts of their host nodes instead of
/// `linux.devices` entries. A rootless runtime cannot mknod (libcontainer then binds the host
/// node at the node's container path, which is not where a CDI spec's `hostPath` is); runc
/// binds nodes in a user namespace too. No device cgroup rule is needed: the caller can open
/// only what the host node's owner and mode let it.
pub fn bind_nodes(spec: &mut Spec, registry: &Registry, devices: &[String]) {
    let mut nodes: Vec<(PathBuf, PathBuf)> = Vec::new();
    for name in devices {
        let Some(r) = registry.device_ref(name) else {
            continue;
        };
        let loaded = &registry.specs[r.spec];
        let spec_level = loaded.spec.container_edits.iter();
        let device_level = std::iter::once(&loaded.spec.devices[r.device].container_edits);
        for node in spec_level.chain(device_level).flat_map(|e| &e.device_nodes) {
            let host = node
                .host_path
                .as_deref()
                .filter(|p| !p.is_empty())
                .unwrap_or(&node.path);
            let entry = (PathBuf::from(&node.path), PathBuf::from(host));
            if !nodes.contains(&entry) {
                nodes.push(entry);
            }
        }
    }
    if nodes.is_empty() {
        return;
    }
    if let Some(linux) = spec.linux_mut().as_mut() {
        if let Some(list) = linux.devices_mut().as_mut() {
            list.retain(|d| !nodes.iter().any(|(path, _)| d.path() == path));
        }
    }
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    for (path, host) in nodes {
        mounts.retain(|m| m.destination() != &path);
        let mut mount = OciMount::default();
        mount
            .set_destination(path)
            .set_source(Some(host))
            .set_typ(Some("bind".into()))
            .set_options(Some(vec!["bind".into()]));
        mounts.push(mount);
    }
    sort_mounts(&mut mounts);
    spec.set_mounts(Some(mounts));
}

/// Applies batches of container edits, each with the device it comes from (named in errors),
/// as the reference library applies their merge: all env, then device nodes, net devices,
/// mounts (sorted once at the end), hooks, intelRdt (the last wins) and additional GIDs. Each
/// list in `spec` is taken out once and put back once, so the cost is linear in the edits.
pub fn apply_edits(spec: &mut Spec, batches: &[(&str, &ContainerEdits)]) -> Result<(), CdiError> {
    let first = |has: &dyn Fn(&ContainerEdits) -> bool| {
        batches
            .iter()
            .find(|(_, e)| has(e))
            .map(|(origin, _)| *origin)
    };
    let missing = |origin: &str, section| CdiError::MissingSection {
        device: origin.to_owned(),
        section,
    };

    if let Some(origin) = first(&|e| !e.env.is_empty()) {
        let process = spec
            .process_mut()
            .as_mut()
            .ok_or_else(|| missing(origin, "process"))?;
        let mut env = process.env().clone().unwrap_or_default();
        for entry in batches.iter().flat_map(|(_, e)| &e.env) {
            set_env(&mut env, entry);
        }
        process.set_env(Some(env));
    }

    if let Some(origin) = first(&|e| !e.device_nodes.is_empty()) {
        let user = spec
            .process()
            .as_ref()
            .map(|p| (p.user().uid(), p.user().gid()));
        let linux = spec
            .linux_mut()
            .as_mut()
            .ok_or_else(|| missing(origin, "linux"))?;
        let mut nodes = linux.devices().clone().unwrap_or_default();
        let mut resources = linux.resources().clone().unwrap_or_default();
        let mut rules = resources.devices().clone().unwrap_or_default();
        for (origin, edits) in batches {
            for node in &edits.device_nodes {
                let (device, rule) = oci_device(node, user, origin)?;
                nodes.retain(|d| d.path() != device.path());
                nodes.push(device);
                if let Some(rule) = rule {
                    if !rules.contains(&rule) {
                        rules.push(rule);
                    }
                }
            }
        }
        resources.set_devices(Some(rules));
        linux
            .set_devices(Some(nodes))
            .set_resources(Some(resources));
    }

    if let Some(origin) = first(&|e| !e.net_devices.is_empty()) {
        let linux = spec
            .linux_mut()
            .as_mut()
            .ok_or_else(|| missing(origin, "linux"))?;
        let mut net = linux.net_devices().clone().unwrap_or_default();
        for dev in batches.iter().flat_map(|(_, e)| &e.net_devices) {
            let mut oci = LinuxNetDevice::default();
            oci.set_name(Some(dev.name.clone()));
            net.insert(dev.host_interface_name.clone(), oci);
        }
        linux.set_net_devices(Some(net));
    }

    if first(&|e| !e.mounts.is_empty()).is_some() {
        let idmaps = user_namespace_mappings(spec);
        let mut mounts = spec.mounts().clone().unwrap_or_default();
        for mount in batches.iter().flat_map(|(_, e)| &e.mounts) {
            let oci = oci_mount(mount, idmaps.as_ref());
            mounts.retain(|m| m.destination() != oci.destination());
            mounts.push(oci);
        }
        sort_mounts(&mut mounts);
        spec.set_mounts(Some(mounts));
    }

    if first(&|e| !e.hooks.is_empty()).is_some() {
        let mut hooks = spec.hooks().clone().unwrap_or_default();
        for (origin, edits) in batches {
            for hook in &edits.hooks {
                add_hook(&mut hooks, hook).map_err(|stage| CdiError::HookStage {
                    device: (*origin).to_owned(),
                    stage,
                })?;
            }
        }
        spec.set_hooks(Some(hooks));
    }

    if let Some((origin, rdt)) = batches
        .iter()
        .rev()
        .find_map(|(o, e)| e.intel_rdt.as_ref().map(|r| (*o, r)))
    {
        let linux = spec
            .linux_mut()
            .as_mut()
            .ok_or_else(|| missing(origin, "linux"))?;
        linux.set_intel_rdt(Some(oci_intel_rdt(rdt)));
    }

    if let Some(origin) = first(&|e| e.additional_gids.iter().any(|g| *g != 0)) {
        let process = spec
            .process_mut()
            .as_mut()
            .ok_or_else(|| missing(origin, "process"))?;
        let mut all = process.user().additional_gids().clone().unwrap_or_default();
        for gid in batches.iter().flat_map(|(_, e)| &e.additional_gids) {
            if *gid != 0 && !all.contains(gid) {
                all.push(*gid);
            }
        }
        process.user_mut().set_additional_gids(Some(all));
    }
    Ok(())
}

/// Sets `KEY=VALUE` as the reference library does: every existing `KEY` entry goes and the new
/// one is appended, so the value set here is the one the process sees whatever duplicates the
/// client sent.
///
/// Regressions: the Rust `container-device-interface` crate appends without removing (an
/// image's value listed first would win), and replacing only the first entry left a client's
/// later duplicate in place, which won.
pub(crate) fn set_env(env: &mut Vec<String>, entry: &str) {
    let key = entry.split_once('=').map_or(entry, |(k, _)| k);
    env.retain(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) != key);
    env.push(entry.to_owned());
}

fn device_type(typ: &str) -> LinuxDeviceType {
    match typ {
        "b" => LinuxDeviceType::B,
        "u" => LinuxDeviceType::U,
        "p" => LinuxDeviceType::P,
        _ => LinuxDeviceType::C,
    }
}

/// What `lstat` says about a host node: (type, major, minor, permission bits).
fn host_node(path: &Path) -> Result<(&'static str, i64, i64, u32), String> {
    let stat = nix::sys::stat::lstat(path).map_err(|e| e.desc().to_owned())?;
    let typ = match stat.st_mode & nix::libc::S_IFMT {
        nix::libc::S_IFBLK => "b",
        nix::libc::S_IFCHR => "c",
        nix::libc::S_IFIFO => "p",
        _ => return Err("not a device node".into()),
    };
    Ok((
        typ,
        nix::sys::stat::major(stat.st_rdev) as i64,
        nix::sys::stat::minor(stat.st_rdev) as i64,
        stat.st_mode & 0o7777,
    ))
}

/// A device node as the CDI stage resolves it against the host.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Resolved {
    typ: String,
    major: i64,
    minor: i64,
    file_mode: Option<u32>,
}

/// Fills a node's missing type, numbers and mode from `lstat` of its host path, as the
/// reference library's `fillMissingInfo` does: a node with a type and a major (or a FIFO) is
/// complete and needs no host node; otherwise the host node must exist and, when the spec gives
/// a type, be of exactly that type (the reference has no `u`-means-`c` exception, so neither
/// does cdirun: `u` only fits a fully specified node).
fn resolve_node(node: &DeviceNode, origin: &str) -> Result<Resolved, CdiError> {
    let host = PathBuf::from(
        node.host_path
            .as_deref()
            .filter(|p| !p.is_empty())
            .unwrap_or(&node.path),
    );
    let mut typ = node.typ.clone().filter(|t| !t.is_empty());
    // The reference library accepts negative numbers and passes them on, and -1 in a device
    // cgroup rule is a wildcard: every device of the type. A node with a negative number counts
    // as unnumbered here, so its numbers come from the host node.
    let numbered = node.major.unwrap_or(0) >= 0 && node.minor.unwrap_or(0) >= 0;
    let mut major = node.major.filter(|_| numbered).unwrap_or(0);
    let mut minor = node.minor.filter(|_| numbered).unwrap_or(0);
    let mut file_mode = node.file_mode;
    let fully_specified = typ.as_deref().is_some_and(|t| t == "p" || major != 0);
    if !fully_specified {
        let (host_type, host_major, host_minor, host_mode) =
            host_node(&host).map_err(|cause| CdiError::HostNode {
                device: origin.to_owned(),
                path: host.clone(),
                cause,
            })?;
        match typ.as_deref() {
            None => typ = Some(host_type.to_owned()),
            Some(want) if want == host_type => {}
            Some(want) => {
                return Err(CdiError::TypeMismatch {
                    device: origin.to_owned(),
                    path: host,
                    host: host_type.to_owned(),
                    want: want.to_owned(),
                });
            }
        }
        if major == 0 && host_type != "p" {
            major = host_major;
            minor = host_minor;
        }
        // Regression (the Rust crate leaves fileMode empty, so the node gets the runtime's
        // default mode): the host node's permission bits are used when the spec gives none.
        file_mode.get_or_insert(host_mode);
    } else if file_mode.is_none() {
        // Fully specified nodes need no host node; take its mode only if one is there.
        if let Ok((_, _, _, mode)) = host_node(&host) {
            file_mode = Some(mode);
        }
    }
    Ok(Resolved {
        typ: typ.unwrap_or_else(|| "c".into()),
        major,
        minor,
        file_mode,
    })
}

/// The host device a char or block node opens, as `c MAJOR:MINOR` or `b MAJOR:MINOR` (`u` is a
/// character device too); `None` for a FIFO, which is no device at all.
fn node_identity(node: &DeviceNode, origin: &str) -> Result<Option<String>, CdiError> {
    let resolved = resolve_node(node, origin)?;
    let class = match resolved.typ.as_str() {
        "c" | "u" => 'c',
        "b" => 'b',
        _ => return Ok(None),
    };
    Ok(Some(format!(
        "{class} {}:{}",
        resolved.major, resolved.minor
    )))
}

/// The host devices that make a CDI device what it is: the char and block nodes of the
/// device's own edits, less those its spec's spec-level edits give every device of the spec
/// (nvidia-ctk puts `/dev/nvidiactl`, `/dev/nvidia-uvm`, ... there; they are shared
/// infrastructure, not a GPU). Two names with the same identity are one GPU; a device whose
/// identity covers several GPUs' is a composite such as nvidia-ctk's `all`. Empty for an unknown
/// device or one without nodes.
pub fn identity(registry: &Registry, qualified: &str) -> Result<BTreeSet<String>, CdiError> {
    let Some((loaded, device)) = registry.get(qualified) else {
        return Ok(BTreeSet::new());
    };
    let origin = origin_of(qualified, &loaded.path);
    let mut shared = BTreeSet::new();
    if let Some(edits) = &loaded.spec.container_edits {
        for node in &edits.device_nodes {
            shared.extend(node_identity(node, &origin)?);
        }
    }
    let mut own = BTreeSet::new();
    for node in &device.container_edits.device_nodes {
        own.extend(node_identity(node, &origin)?.filter(|id| !shared.contains(id)));
    }
    Ok(own)
}

/// A device named in errors with the spec file that defines it.
fn origin_of(qualified: &str, spec: &Path) -> String {
    format!("{qualified} (spec {})", spec.display())
}

/// A CDI device node as an OCI device and its device cgroup rule.
fn oci_device(
    node: &DeviceNode,
    user: Option<(u32, u32)>,
    origin: &str,
) -> Result<(LinuxDevice, Option<LinuxDeviceCgroup>), CdiError> {
    let Resolved {
        typ,
        major,
        minor,
        file_mode,
    } = resolve_node(node, origin)?;
    let mut device = LinuxDevice::default();
    device
        .set_path(PathBuf::from(&node.path))
        .set_typ(device_type(&typ))
        .set_major(major)
        .set_minor(minor)
        .set_file_mode(file_mode)
        // An unset owner defaults to the process user when that is not root (as upstream).
        .set_uid(node.uid.or(user.map(|u| u.0).filter(|uid| *uid > 0)))
        .set_gid(node.gid.or(user.map(|u| u.1).filter(|gid| *gid > 0)));
    let access = match node.permissions.as_deref() {
        None | Some("") => Some("rwm"),
        // `none` adds no access. The reference library writes an allow rule with empty access,
        // which the kernel rejects (EINVAL on devices.allow); no rule is the same "no access"
        // without failing the create.
        Some(NO_PERMISSIONS) => None,
        Some(perms) => Some(perms),
    };
    let rule = access
        .filter(|_| matches!(typ.as_str(), "b" | "c"))
        .map(|access| {
            let mut rule = LinuxDeviceCgroup::default();
            rule.set_allow(true)
                .set_typ(Some(device_type(&typ)))
                .set_major(Some(major))
                .set_minor(Some(minor))
                .set_access(Some(access.to_owned()));
            rule
        });
    Ok((device, rule))
}

type IdMaps = (
    Option<Vec<libcontainer::oci_spec::runtime::LinuxIdMapping>>,
    Option<Vec<libcontainer::oci_spec::runtime::LinuxIdMapping>>,
);

/// The container's ID mappings when it has a user namespace.
fn user_namespace_mappings(spec: &Spec) -> Option<IdMaps> {
    let linux = spec.linux().as_ref()?;
    let userns = linux
        .namespaces()
        .as_ref()?
        .iter()
        .any(|ns| ns.typ() == LinuxNamespaceType::User);
    userns.then(|| (linux.uid_mappings().clone(), linux.gid_mappings().clone()))
}

fn is_bind(mount: &Mount) -> bool {
    mount.typ.as_deref() == Some("bind")
        || mount.options.iter().any(|o| o == "bind" || o == "rbind")
}

fn oci_mount(mount: &Mount, idmaps: Option<&IdMaps>) -> OciMount {
    let mut oci = OciMount::default();
    oci.set_destination(PathBuf::from(&mount.container_path))
        .set_source(Some(PathBuf::from(&mount.host_path)))
        .set_typ(mount.typ.clone().filter(|t| !t.is_empty()))
        .set_options((!mount.options.is_empty()).then(|| mount.options.clone()));
    // Regression (the Rust crate ignores user namespaces): under a user namespace a bind mount
    // carries the container's ID mappings, so files keep their owners inside, as upstream does.
    if let Some((uids, gids)) = idmaps {
        if is_bind(mount) {
            oci.set_uid_mappings(uids.clone())
                .set_gid_mappings(gids.clone());
        }
    }
    oci
}

/// Path depth as the reference library counts it: separators in the cleaned path.
fn depth(path: &Path) -> usize {
    use std::path::Component;
    let normal = path
        .components()
        .filter(|c| matches!(c, Component::Normal(_) | Component::ParentDir))
        .count();
    if path.has_root() {
        normal.max(1)
    } else {
        normal.saturating_sub(1)
    }
}

/// Stable sort by destination depth, so `/a` is mounted before `/a/b` and never hides it.
///
/// Regression (the Rust crate leaves merged mounts in insertion order): the reference library
/// sorts after merging.
fn sort_mounts(mounts: &mut [OciMount]) {
    mounts.sort_by_key(|m| depth(m.destination()));
}

/// Adds `hook` at its stage unless an identical hook is there; `Err` carries an unknown stage.
fn add_hook(hooks: &mut Hooks, hook: &Hook) -> Result<(), String> {
    let stage = Stage::parse(&hook.hook_name).ok_or_else(|| hook.hook_name.clone())?;
    let mut oci = OciHook::default();
    oci.set_path(PathBuf::from(&hook.path))
        .set_args((!hook.args.is_empty()).then(|| hook.args.clone()))
        .set_env((!hook.env.is_empty()).then(|| hook.env.clone()))
        .set_timeout(hook.timeout);
    stage.add(hooks, &oci);
    Ok(())
}

fn oci_intel_rdt(rdt: &IntelRdt) -> LinuxIntelRdt {
    let mut oci = LinuxIntelRdt::default();
    oci.set_clos_id(rdt.clos_id.clone())
        .set_l3_cache_schema(rdt.l3_cache_schema.clone())
        .set_mem_bw_schema(rdt.mem_bw_schema.clone())
        .set_schemata(rdt.schemata.clone())
        .set_enable_monitoring(rdt.enable_monitoring);
    #[allow(deprecated)]
    oci.set_enable_cmt(rdt.enable_cmt)
        .set_enable_mbm(rdt.enable_mbm);
    oci
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use serde_json::{Value, json};

    use super::*;
    use crate::config::Config;

    /// An OCI spec from JSON, so inputs and wants read as config.json does.
    fn oci(value: serde_json::Value) -> Spec {
        serde_json::from_value(value).unwrap()
    }

    fn edits(value: serde_json::Value) -> ContainerEdits {
        serde_json::from_value(value).unwrap()
    }

    fn base() -> serde_json::Value {
        json!({
            "ociVersion": "1.0.2",
            "process": {"user": {"uid": 0, "gid": 0}, "cwd": "/", "env": ["PATH=/bin", "HOME=/root"]},
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev/pts", "type": "devpts", "source": "devpts"},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs"}
            ],
            "linux": {"resources": {"devices": [{"allow": false, "access": "rwm"}]}}
        })
    }

    /// `value` with the member at `pointer` (made if missing) set to `new`.
    fn with(
        mut value: serde_json::Value,
        pointer: &str,
        new: serde_json::Value,
    ) -> serde_json::Value {
        let mut at = &mut value;
        for key in pointer.split('/').skip(1) {
            at = at
                .as_object_mut()
                .unwrap()
                .entry(key)
                .or_insert_with(|| json!({}));
        }
        *at = new;
        value
    }

    /// Applies `edits` (then sorts mounts), twice, and checks both results equal `want`.
    fn check(name: &str, input: Spec, edits: &ContainerEdits, want: &Spec) {
        let mut spec = input;
        apply_edits(&mut spec, &[("v.com/c=x", edits)]).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(&spec, want, "{name}");
        apply_edits(&mut spec, &[("v.com/c=x", edits)]).unwrap();
        assert_eq!(&spec, want, "{name}: applying twice changed the config");
    }

    #[test]
    fn env_edits() {
        let cases = [
            (
                "appended",
                base(),
                json!({"env": ["A=1"]}),
                with(
                    base(),
                    "/process/env",
                    json!(["PATH=/bin", "HOME=/root", "A=1"]),
                ),
            ),
            (
                // Regression: the Rust crate appends, leaving the image's HOME first (it wins).
                "env_existing_key_is_replaced_in_place",
                base(),
                json!({"env": ["HOME=/cdi", "B=2", "B=3"]}),
                with(
                    base(),
                    "/process/env",
                    json!(["PATH=/bin", "HOME=/cdi", "B=3"]),
                ),
            ),
        ];
        for (name, input, e, want) in cases {
            check(name, oci(input), &edits(e), &oci(want));
        }
    }

    #[test]
    fn regression_env_with_an_existing_key_is_replaced_in_place() {
        // The Rust crate appends, leaving the image's HOME first, and the first one wins.
        check(
            "replace",
            oci(base()),
            &edits(json!({"env": ["HOME=/cdi"]})),
            &oci(with(
                base(),
                "/process/env",
                json!(["PATH=/bin", "HOME=/cdi"]),
            )),
        );
    }

    #[test]
    fn regression_mounts_are_depth_sorted_after_merging() {
        // The Rust crate keeps insertion order: /a added after /a/b would hide it.
        let input = with(
            base(),
            "/mounts",
            json!([{"destination": "/a/b", "source": "/h/b", "options": ["bind"]}]),
        );
        let want = with(
            base(),
            "/mounts",
            json!([
                {"destination": "/a", "source": "/h/a", "options": ["bind"]},
                {"destination": "/a/b", "source": "/h/b", "options": ["bind"]}
            ]),
        );
        let e = edits(
            json!({"mounts": [{"hostPath": "/h/a", "containerPath": "/a", "options": ["bind"]}]}),
        );
        check("depth", oci(input), &e, &oci(want));
    }

    #[test]
    fn device_node_edits() {
        let rule = |typ: &str, major: i64, minor: i64, access: &str| json!({"allow": true, "type": typ, "major": major, "minor": minor, "access": access});
        let deny = json!({"allow": false, "access": "rwm"});
        let cases = [
            (
                "fully specified, default permissions",
                base(),
                json!({"deviceNodes": [{"path": "/dev/nvidia0", "type": "c", "major": 195, "minor": 0}]}),
                with(
                    with(
                        base(),
                        "/linux/resources/devices",
                        json!([deny, rule("c", 195, 0, "rwm")]),
                    ),
                    "/linux/devices",
                    json!([{"path": "/dev/nvidia0", "type": "c", "major": 195, "minor": 0}]),
                ),
            ),
            (
                "permissions, owner and mode as given",
                base(),
                json!({"deviceNodes": [{"path": "/dev/b", "type": "b", "major": 8, "minor": 1,
                    "permissions": "rw", "fileMode": 0o640, "uid": 5, "gid": 6}]}),
                with(
                    with(
                        base(),
                        "/linux/resources/devices",
                        json!([deny, rule("b", 8, 1, "rw")]),
                    ),
                    "/linux/devices",
                    json!([{"path": "/dev/b", "type": "b", "major": 8, "minor": 1,
                        "fileMode": 0o640, "uid": 5, "gid": 6}]),
                ),
            ),
            (
                // Regression: an allow rule with empty access, which the kernel rejects.
                "none: the node and no rule",
                base(),
                json!({"deviceNodes": [{"path": "/dev/x", "type": "c", "major": 10, "minor": 1, "permissions": "none"}]}),
                with(
                    with(base(), "/linux/resources/devices", json!([deny])),
                    "/linux/devices",
                    json!([{"path": "/dev/x", "type": "c", "major": 10, "minor": 1}]),
                ),
            ),
            (
                "existing device at the same path is replaced",
                with(
                    base(),
                    "/linux/devices",
                    json!([{"path": "/dev/x", "type": "c", "major": 1, "minor": 1}, {"path": "/dev/y", "type": "c", "major": 1, "minor": 2}]),
                ),
                json!({"deviceNodes": [{"path": "/dev/x", "type": "c", "major": 10, "minor": 1}]}),
                with(
                    with(
                        base(),
                        "/linux/resources/devices",
                        json!([deny, rule("c", 10, 1, "rwm")]),
                    ),
                    "/linux/devices",
                    json!([{"path": "/dev/y", "type": "c", "major": 1, "minor": 2}, {"path": "/dev/x", "type": "c", "major": 10, "minor": 1}]),
                ),
            ),
            (
                "non-root process user owns the node",
                with(base(), "/process/user", json!({"uid": 1000, "gid": 100})),
                json!({"deviceNodes": [{"path": "/dev/x", "type": "c", "major": 10, "minor": 1}]}),
                with(
                    with(
                        with(base(), "/process/user", json!({"uid": 1000, "gid": 100})),
                        "/linux/resources/devices",
                        json!([deny, rule("c", 10, 1, "rwm")]),
                    ),
                    "/linux/devices",
                    json!([{"path": "/dev/x", "type": "c", "major": 10, "minor": 1, "uid": 1000, "gid": 100}]),
                ),
            ),
        ];
        // /dev/nvidia0, /dev/x ... do not exist here: fully specified nodes get no mode.
        for (name, input, e, want) in cases {
            check(name, oci(input), &edits(e), &oci(want));
        }
    }

    #[test]
    fn host_node_fills_type_numbers_and_mode() {
        // /dev/null is char 1:3 everywhere.
        let mode = std::fs::metadata("/dev/null").unwrap().permissions().mode() & 0o7777;
        let e = edits(json!({"deviceNodes": [{"path": "/dev/null-in", "hostPath": "/dev/null"}]}));
        let want = with(
            with(
                base(),
                "/linux/resources/devices",
                json!([{"allow": false, "access": "rwm"},
                       {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}]),
            ),
            "/linux/devices",
            json!([{"path": "/dev/null-in", "type": "c", "major": 1, "minor": 3, "fileMode": mode}]),
        );
        check("stat fill", oci(base()), &e, &oci(want));
    }

    /// Regression: a node with `major: -1` was refused at load; injected as written it would be
    /// a wildcard rule. Its numbers come from the host node instead.
    #[test]
    fn negative_numbers_are_taken_from_the_host_node() {
        let mode = std::fs::metadata("/dev/null").unwrap().permissions().mode() & 0o7777;
        let want = with(
            with(
                base(),
                "/linux/resources/devices",
                json!([{"allow": false, "access": "rwm"},
                       {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}]),
            ),
            "/linux/devices",
            json!([{"path": "/dev/null-in", "type": "c", "major": 1, "minor": 3, "fileMode": mode}]),
        );
        for (major, minor) in [(-1, 3), (1, -1), (-1, -1)] {
            let e = edits(
                json!({"deviceNodes": [{"path": "/dev/null-in", "hostPath": "/dev/null",
                                                  "type": "c", "major": major, "minor": minor}]}),
            );
            check(
                &format!("{major}:{minor}"),
                oci(base()),
                &e,
                &oci(want.clone()),
            );
        }
    }

    #[test]
    fn regression_file_mode_is_filled_from_the_host_node() {
        // Regression: the Rust crate leaves fileMode unset. A FIFO needs no root to make.
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        std::fs::set_permissions(&fifo, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = edits(json!({"deviceNodes": [{"path": "/dev/fifo", "hostPath": fifo}]}));
        let want = with(
            base(),
            "/linux/devices",
            json!([{"path": "/dev/fifo", "type": "p", "major": 0, "minor": 0, "fileMode": 0o640}]),
        );
        check("fifo", oci(base()), &e, &oci(want));
    }

    #[test]
    fn host_node_errors_name_the_device_and_path() {
        let cases = [
            (
                json!({"deviceNodes": [{"path": "/dev/none", "hostPath": "/nonexistent/dev0"}]}),
                "/nonexistent/dev0",
            ),
            (
                json!({"deviceNodes": [{"path": "/dev/x", "hostPath": "/etc/hostname"}]}),
                "not a device node",
            ),
            (
                json!({"deviceNodes": [{"path": "/dev/x", "hostPath": "/dev/null", "type": "b"}]}),
                "type \"c\"",
            ),
            // Regression: `u` was taken for a host char device; the reference library reports
            // a host type mismatch unless the node is fully specified.
            (
                json!({"deviceNodes": [{"path": "/dev/x", "hostPath": "/dev/null", "type": "u"}]}),
                "the spec says \"u\"",
            ),
        ];
        for (e, want) in cases {
            let mut spec = oci(base());
            let err = apply_edits(&mut spec, &[("v.com/c=x", &edits(e))])
                .unwrap_err()
                .to_string();
            assert!(err.contains("v.com/c=x") && err.contains(want), "{err}");
        }
    }

    #[test]
    fn mount_edits() {
        let cases = [
            (
                // Regression: the Rust crate keeps insertion order, so /dev would hide /dev/fake.
                "mounts_are_depth_sorted_after_merging",
                base(),
                json!({"mounts": [{"hostPath": "/h/lib", "containerPath": "/usr/lib/fake", "options": ["ro", "bind"]},
                                  {"hostPath": "/h/x", "containerPath": "/x", "type": "bind"}]}),
                with(
                    base(),
                    "/mounts",
                    json!([
                        {"destination": "/proc", "type": "proc", "source": "proc"},
                        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs"},
                        {"destination": "/x", "type": "bind", "source": "/h/x"},
                        {"destination": "/dev/pts", "type": "devpts", "source": "devpts"},
                        {"destination": "/usr/lib/fake", "source": "/h/lib", "options": ["ro", "bind"]}
                    ]),
                ),
            ),
            (
                "same container path is replaced",
                base(),
                json!({"mounts": [{"hostPath": "/h/pts", "containerPath": "/dev/pts", "options": ["bind"]}]}),
                with(
                    base(),
                    "/mounts",
                    json!([
                        {"destination": "/proc", "type": "proc", "source": "proc"},
                        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs"},
                        {"destination": "/dev/pts", "source": "/h/pts", "options": ["bind"]}
                    ]),
                ),
            ),
        ];
        for (name, input, e, want) in cases {
            check(name, oci(input), &edits(e), &oci(want));
        }
    }

    #[test]
    fn regression_mounts_get_id_mappings_under_a_user_namespace() {
        // Regression: the Rust crate ignores user namespaces; upstream maps bind mounts.
        let map = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        let userns = with(
            with(
                base(),
                "/linux",
                json!({"namespaces": [{"type": "user"}, {"type": "mount"}]}),
            ),
            "/mounts",
            json!([]),
        );
        let userns = with(userns.clone(), "/linux", {
            let mut l = userns["linux"].clone();
            l["uidMappings"] = map.clone();
            l["gidMappings"] = map.clone();
            l
        });
        let e = edits(json!({"mounts": [
            {"hostPath": "/h/lib", "containerPath": "/lib/fake", "options": ["ro", "rbind"]},
            {"hostPath": "tmpfs", "containerPath": "/scratch", "type": "tmpfs"}
        ]}));
        let want = with(
            userns.clone(),
            "/mounts",
            json!([
                {"destination": "/scratch", "type": "tmpfs", "source": "tmpfs"},
                {"destination": "/lib/fake", "source": "/h/lib", "options": ["ro", "rbind"],
                 "uidMappings": map, "gidMappings": map}
            ]),
        );
        check("userns", oci(userns), &e, &oci(want));
    }

    #[test]
    fn hook_edits() {
        let hook = |path: &str| json!({"path": path, "args": [path, "x"]});
        let cases = [
            (
                "every stage",
                base(),
                json!({"hooks": [
                    {"hookName": "prestart", "path": "/p", "args": ["/p", "x"]},
                    {"hookName": "createRuntime", "path": "/cr", "args": ["/cr", "x"]},
                    {"hookName": "createContainer", "path": "/cc", "args": ["/cc", "x"]},
                    {"hookName": "startContainer", "path": "/sc", "args": ["/sc", "x"]},
                    {"hookName": "poststart", "path": "/ps", "args": ["/ps", "x"]},
                    {"hookName": "poststop", "path": "/po", "args": ["/po", "x"], "env": ["A=1"], "timeout": 5}
                ]}),
                with(
                    base(),
                    "/hooks",
                    json!({
                        "prestart": [hook("/p")], "createRuntime": [hook("/cr")],
                        "createContainer": [hook("/cc")], "startContainer": [hook("/sc")],
                        "poststart": [hook("/ps")],
                        "poststop": [{"path": "/po", "args": ["/po", "x"], "env": ["A=1"], "timeout": 5}]
                    }),
                ),
            ),
            (
                "existing hooks kept, identical hook not repeated",
                with(
                    base(),
                    "/hooks",
                    json!({"createContainer": [hook("/user"), hook("/cc")]}),
                ),
                json!({"hooks": [{"hookName": "createContainer", "path": "/cc", "args": ["/cc", "x"]}]}),
                with(
                    base(),
                    "/hooks",
                    json!({"createContainer": [hook("/user"), hook("/cc")]}),
                ),
            ),
        ];
        for (name, input, e, want) in cases {
            check(name, oci(input), &edits(e), &oci(want));
        }
        let mut spec = oci(base());
        let bad = edits(json!({"hooks": [{"hookName": "preStart", "path": "/p"}]}));
        let err = apply_edits(&mut spec, &[("v.com/c=x", &bad)]).unwrap_err();
        assert!(err.to_string().contains("preStart"), "{err}");
    }

    #[test]
    fn gid_rdt_and_net_device_edits() {
        let cases = [
            (
                "additionalGids deduplicated, 0 skipped",
                with(
                    base(),
                    "/process/user",
                    json!({"uid": 0, "gid": 0, "additionalGids": [44]}),
                ),
                json!({"additionalGids": [0, 44, 45]}),
                with(
                    base(),
                    "/process/user",
                    json!({"uid": 0, "gid": 0, "additionalGids": [44, 45]}),
                ),
            ),
            (
                "intelRdt replaced",
                with(base(), "/linux/intelRdt", json!({"closID": "old"})),
                json!({"intelRdt": {"closID": "gpu", "schemata": ["L3:0=f"], "enableMonitoring": true}}),
                with(
                    base(),
                    "/linux/intelRdt",
                    json!({"closID": "gpu", "schemata": ["L3:0=f"], "enableMonitoring": true}),
                ),
            ),
            (
                "netDevices by host name",
                base(),
                json!({"netDevices": [{"hostInterfaceName": "eth9", "name": "net0"}]}),
                with(
                    base(),
                    "/linux/netDevices",
                    json!({"eth9": {"name": "net0"}}),
                ),
            ),
        ];
        for (name, input, e, want) in cases {
            check(name, oci(input), &edits(e), &oci(want));
        }
    }

    // --- the whole stage: registry + request + injection ---

    const NVIDIA: &str = r#"
cdiVersion: "0.6.0"
kind: nvidia.com/gpu
containerEdits:
  env: ["NVIDIA_DRIVER_CAPABILITIES=utility,compute"]
  mounts:
    - {hostPath: /h/libcuda.so.1, containerPath: /usr/lib/libcuda.so.1, options: [ro, bind]}
devices:
  - name: "0"
    annotations: {gpu.uuid: GPU-aaaa}
    containerEdits:
      deviceNodes: [{path: /dev/nvidia0, type: c, major: 195, minor: 0}]
  - name: "1"
    containerEdits:
      deviceNodes: [{path: /dev/nvidia1, type: c, major: 195, minor: 1}]
"#;

    /// Never the host's GPU ledger: [`run`] gives each call a private one instead.
    const NO_STATE_DIR: &str = "/nonexistent/cdirun-state";

    fn config_for(dirs: &[&Path]) -> Config {
        let mut config = Config::default();
        config.cdi.spec_dirs = dirs.iter().map(|d| d.to_path_buf()).collect();
        config.state_dir = NO_STATE_DIR.into();
        config
    }

    /// The CDI edit for container `c1`, with the config's state dir or, where it names none,
    /// a temp one that goes with the call (a plain request takes a ledger hold).
    fn run(spec: &mut Spec, config: &Config) -> Result<Claims, EditError> {
        let state = tempfile::tempdir().unwrap();
        let mut config = config.clone();
        if config.state_dir == Path::new(NO_STATE_DIR) {
            config.state_dir = state.path().to_owned();
        }
        let ctx = Context::new("c1", &config, Path::new("/run/cdirun"));
        Cdi.apply(spec, &ctx)
    }

    #[test]
    fn spec_edits_once_then_device_edits_and_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("nvidia.yaml"), NVIDIA).unwrap();
        let config = config_for(&[dir.path()]);
        let input = with(
            base(),
            "/process/env",
            json!(["PATH=/bin", "NVIDIA_VISIBLE_DEVICES=all"]),
        );
        let mut spec = oci(input.clone());
        run(&mut spec, &config).unwrap();
        let mut want = input;
        want["process"]["env"] = json!([
            "PATH=/bin",
            "NVIDIA_VISIBLE_DEVICES=all",
            "NVIDIA_DRIVER_CAPABILITIES=utility,compute"
        ]);
        want["mounts"] = json!([
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs"},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts"},
            {"destination": "/usr/lib/libcuda.so.1", "source": "/h/libcuda.so.1", "options": ["ro", "bind"]}
        ]);
        want["linux"]["devices"] = json!([
            {"path": "/dev/nvidia0", "type": "c", "major": 195, "minor": 0},
            {"path": "/dev/nvidia1", "type": "c", "major": 195, "minor": 1}
        ]);
        want["linux"]["resources"]["devices"] = json!([
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 195, "minor": 0, "access": "rwm"},
            {"allow": true, "type": "c", "major": 195, "minor": 1, "access": "rwm"}
        ]);
        assert_eq!(spec, oci(want));
        let once = spec.clone();
        run(&mut spec, &config).unwrap();
        assert_eq!(spec, once, "applying twice changed the config");
    }

    #[test]
    fn uuid_selects_by_annotation() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("nvidia.yaml"), NVIDIA).unwrap();
        let config = config_for(&[dir.path()]);
        let mut spec = oci(with(
            base(),
            "/process/env",
            json!(["NVIDIA_VISIBLE_DEVICES=GPU-aaaa"]),
        ));
        run(&mut spec, &config).unwrap();
        let devices = spec.linux().as_ref().unwrap().devices().clone().unwrap();
        assert_eq!(devices.len(), 1);
        assert_eq!(devices[0].path(), Path::new("/dev/nvidia0"));
    }

    #[test]
    fn unresolvable_devices_are_named_together_and_spec_is_untouched() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("nvidia.yaml"), NVIDIA).unwrap();
        std::fs::write(dir.path().join("broken.json"), "{").unwrap();
        let config = config_for(&[dir.path(), Path::new("/nonexistent/cdi")]);
        // With an annotation, the env is no request: its missing GPU 7 is not named.
        let mut input = with(
            base(),
            "/process/env",
            json!(["NVIDIA_VISIBLE_DEVICES=0,7"]),
        );
        input["annotations"] =
            json!({"cdi.k8s.io/x": "vendor.com/fpga=a,nvidia.com/gpu=1,vendor.com/fpga=b"});
        let mut spec = oci(input.clone());
        let err = run(&mut spec, &config).unwrap_err().to_string();
        assert_eq!(spec, oci(input));
        for want in [
            "vendor.com/fpga=a (annotation cdi.k8s.io/x), vendor.com/fpga=b (annotation cdi.k8s.io/x)",
            &dir.path().display().to_string(),
            "/nonexistent/cdi",
            "broken.json",
        ] {
            assert!(err.contains(want), "{want:?} not in {err}");
        }
        assert!(
            !err.contains("nvidia.com/gpu=7") && !err.contains("nvidia.com/gpu=1 "),
            "{err}"
        );
        // Alone, the env is the request, and each missing entry is named with its variable.
        let input = with(
            base(),
            "/process/env",
            json!(["NVIDIA_VISIBLE_DEVICES=0,7,8"]),
        );
        let mut spec = oci(input.clone());
        let err = run(&mut spec, &config).unwrap_err().to_string();
        assert_eq!(spec, oci(input));
        assert!(
            err.contains("nvidia.com/gpu=7 (NVIDIA_VISIBLE_DEVICES), nvidia.com/gpu=8 (NVIDIA_VISIBLE_DEVICES)"),
            "{err}"
        );
        assert!(!err.contains("nvidia.com/gpu=0 "), "{err}");
    }

    #[test]
    fn a_spec_env_edit_wins_over_every_duplicate_the_client_sent() {
        // Regression: the first client entry was replaced and the client's second one, later
        // in the list, was what the process saw.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("v.yaml"),
            "cdiVersion: 0.6.0\nkind: vendor.com/dev\n\
             devices: [{name: a, containerEdits: {env: [A=from-cdi]}}]\n",
        )
        .unwrap();
        let config = config_for(&[dir.path()]);
        let mut input = with(
            base(),
            "/process/env",
            json!(["A=client-1", "PATH=/bin", "A=client-2"]),
        );
        input["annotations"] = json!({"cdi.k8s.io/d": "vendor.com/dev=a"});
        let mut spec = oci(input.clone());
        run(&mut spec, &config).unwrap();
        let mut want = input;
        want["process"]["env"] = json!(["PATH=/bin", "A=from-cdi"]);
        assert_eq!(spec, oci(want));
    }

    #[test]
    fn the_precedence_rule_rewrites_or_voids_the_vendor_env() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("nvidia.yaml"), NVIDIA).unwrap();
        let mut config = config_for(&[dir.path()]);
        // (annotations, client env, want env, want device paths)
        type Case<'a> = (Value, Value, Value, &'a [&'a str]);
        let cases: [Case; 4] = [
            (
                json!({"cdi.k8s.io/gpu": "nvidia.com/gpu=1"}),
                json!(["NVIDIA_VISIBLE_DEVICES=all", "NVIDIA_VISIBLE_DEVICES=0"]),
                json!([
                    "NVIDIA_DRIVER_CAPABILITIES=utility,compute",
                    "NVIDIA_VISIBLE_DEVICES=1"
                ]),
                &["/dev/nvidia1"],
            ),
            (
                json!({"cdi.k8s.io/gpu": "nvidia.com/gpu=1"}),
                json!(["AMD_VISIBLE_DEVICES=all"]),
                json!([
                    "NVIDIA_DRIVER_CAPABILITIES=utility,compute",
                    "AMD_VISIBLE_DEVICES=void"
                ]),
                &["/dev/nvidia1"],
            ),
            (
                json!({"io.cdirun.gpu.count": "1"}),
                json!(["NVIDIA_VISIBLE_DEVICES=all"]),
                // The GPU edit rewrites it to what it picks.
                json!(["NVIDIA_VISIBLE_DEVICES=void"]),
                &[],
            ),
            (
                json!({}),
                json!(["NVIDIA_VISIBLE_DEVICES=0"]),
                json!(["NVIDIA_VISIBLE_DEVICES=void"]),
                &[],
            ),
        ];
        config.cdi.env_when_unprivileged = crate::config::EnvWhenUnprivileged::Ignore;
        for (annotations, env, want_env, want_paths) in cases {
            let mut input = with(base(), "/process/env", env.clone());
            input["annotations"] = annotations.clone();
            let mut spec = oci(input);
            run(&mut spec, &config).unwrap();
            let got = serde_json::to_value(&spec).unwrap();
            assert_eq!(got["process"]["env"], want_env, "{annotations} {env}");
            let paths: Vec<&str> = got["linux"]["devices"]
                .as_array()
                .map(|d| d.iter().map(|d| d["path"].as_str().unwrap()).collect())
                .unwrap_or_default();
            assert_eq!(paths, want_paths, "{annotations} {env}");
        }
    }

    #[test]
    fn nothing_requested_reads_no_spec_dir() {
        // An unreadable dir would be reported if it were scanned; nothing is requested, so the
        // stage is skipped and succeeds without touching the spec.
        let config = config_for(&[Path::new("/proc/self/fd/0/not-a-dir")]);
        let mut spec = oci(base());
        run(&mut spec, &config).unwrap();
        assert_eq!(spec, oci(base()));
    }

    #[test]
    fn identity_is_the_devices_own_char_and_block_nodes() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        std::fs::write(
            dir.path().join("v.yaml"),
            format!(
                "cdiVersion: 0.6.0\nkind: v.com/gpu\n\
                 containerEdits: {{deviceNodes: [{{path: /dev/ctl, type: c, major: 195, minor: 255}}]}}\n\
                 devices:\n\
                 - {{name: '0', containerEdits: {{deviceNodes: [{{path: /dev/ctl, type: c, major: 195, minor: 255}}, \
                   {{path: /dev/g0, type: u, major: 195, minor: 0}}, {{path: /dev/null-in, hostPath: /dev/null}}, \
                   {{path: /dev/disk, type: b, major: 8, minor: 0}}, {{path: /dev/f, hostPath: {}}}]}}}}\n\
                 - {{name: env, containerEdits: {{env: [A=1]}}}}\n",
                fifo.display()
            ),
        )
        .unwrap();
        let registry = Registry::load(&[dir.path().into()]);
        let got = identity(&registry, "v.com/gpu=0").unwrap();
        // The spec-level node is shared infrastructure; `u` is a char device; a FIFO is none.
        let want: BTreeSet<String> = ["c 195:0", "c 1:3", "b 8:0"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(got, want);
        assert!(identity(&registry, "v.com/gpu=env").unwrap().is_empty());
        assert!(identity(&registry, "v.com/gpu=missing").unwrap().is_empty());
    }

    #[test]
    fn a_device_held_exclusively_by_a_live_container_is_refused() {
        use crate::claims::Holder;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("nvidia.yaml"),
            format!(
                "{NVIDIA}  - name: GPU-bbbb\n    containerEdits:\n      deviceNodes: [{{path: /dev/nvidia1, type: c, major: 195, minor: 1}}]\n"
            ),
        )
        .unwrap();
        let mut config = config_for(&[dir.path()]);
        config.state_dir = dir.path().join("state");
        let live = Holder::current(Path::new("/run/other"), "holder");
        // No process has a pid above pid_max, and /run/gone holds no state.
        let dead = Holder {
            root: "/run/gone".into(),
            id: "dead".into(),
            creator_pid: i32::MAX,
            creator_start: 1,
        };
        let gpu = |name: &str, minor: u32| ledger::Gpu {
            name: format!("nvidia.com/gpu={name}"),
            nodes: [format!("c 195:{minor}")].into_iter().collect(),
        };
        let take = |gpus: &[ledger::Gpu], holder: &Holder, sharing| {
            let mut locked = ledger::lock(&config.state_dir).unwrap();
            locked.data = ledger::Ledger::default();
            for g in gpus {
                locked.data.take(std::slice::from_ref(g), holder, sharing);
            }
            locked.save().unwrap();
        };
        // (held, as, by, requested, error wanted)
        type Case<'a> = (
            &'a [ledger::Gpu],
            Sharing,
            &'a Holder,
            &'a str,
            Option<&'a str>,
        );
        let cases: [Case; 6] = [
            (
                &[gpu("1", 1)],
                Sharing::Exclusive,
                &live,
                "NVIDIA_VISIBLE_DEVICES=1",
                Some(
                    "CDI device nvidia.com/gpu=1 is held exclusively by container holder (root /run/other)",
                ),
            ),
            (
                &[gpu("1", 1)],
                Sharing::Exclusive,
                &live,
                "NVIDIA_VISIBLE_DEVICES=GPU-bbbb",
                Some(
                    "nvidia.com/gpu=GPU-bbbb shares host devices with nvidia.com/gpu=1, held exclusively by container holder",
                ),
            ),
            (
                &[gpu("0", 0)],
                Sharing::Exclusive,
                &live,
                "NVIDIA_VISIBLE_DEVICES=all",
                Some("nvidia.com/gpu=0 is held exclusively by container holder"),
            ),
            (
                &[gpu("1", 1)],
                Sharing::Mps,
                &live,
                "NVIDIA_VISIBLE_DEVICES=1",
                None,
            ),
            (
                &[gpu("1", 1)],
                Sharing::Exclusive,
                &dead,
                "NVIDIA_VISIBLE_DEVICES=1",
                None,
            ),
            (
                &[gpu("0", 0)],
                Sharing::Exclusive,
                &live,
                "NVIDIA_VISIBLE_DEVICES=1",
                None,
            ),
        ];
        for (held, sharing, holder, env, want) in cases {
            take(held, holder, sharing);
            let input = with(base(), "/process/env", json!([env]));
            let mut spec = oci(input.clone());
            match (run(&mut spec, &config), want) {
                (Ok(_), None) => {}
                (Err(err), Some(want)) => {
                    assert!(err.to_string().contains(want), "{env}: {err}");
                    assert_eq!(spec, oci(input), "{env}: spec changed");
                }
                (got, _) => panic!("{env} with {sharing:?}: {got:?}"),
            }
        }
    }

    #[test]
    fn a_plain_request_holds_its_devices_shared_and_a_dry_run_takes_nothing() {
        use crate::claims::{Claim, Holder};
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("nvidia.yaml"), NVIDIA).unwrap();
        let mut config = config_for(&[dir.path()]);
        config.state_dir = dir.path().join("state");
        let root = Path::new("/run/cdirun");
        let holder = Holder::current(root, "c1");
        let gpu = |minor: u32| ledger::Gpu {
            name: format!("nvidia.com/gpu={minor}"),
            nodes: [format!("c 195:{minor}")].into_iter().collect(),
        };
        let plain = with(base(), "/process/env", json!(["NVIDIA_VISIBLE_DEVICES=0"]));
        let want = Claims(vec![Claim::Gpu {
            devices: vec!["nvidia.com/gpu=0".into()],
            sharing: Sharing::Plain,
            holder: holder.clone(),
        }]);

        let mut spec = oci(plain.clone());
        assert_eq!(run(&mut spec, &config).unwrap(), want);
        let held = ledger::read(&config.state_dir).unwrap();
        assert_eq!(held.holders(&gpu(0)).count(), 1);
        // Shared: no exclusive request gets it; shared ones and other plain ones may.
        assert!(!held.available(&gpu(0), Sharing::Exclusive));
        assert!(held.available(&gpu(0), Sharing::Mps));
        assert!(held.available(&gpu(1), Sharing::Exclusive));
        ledger::release(&config.state_dir, &holder).unwrap();

        // explain: the claim is shown, nothing is written.
        let ctx = Context {
            dry_run: true,
            ..Context::new("c1", &config, root)
        };
        let mut spec = oci(plain);
        assert_eq!(Cdi.apply(&mut spec, &ctx).unwrap(), want);
        assert_eq!(
            ledger::read(&config.state_dir).unwrap(),
            ledger::Ledger::default()
        );

        // Devices of the kind an io.cdirun.gpu.* request allocates are the GPU edit's to hold.
        let mut input = base();
        input["annotations"] = json!({
            "cdi.k8s.io/gpu": "nvidia.com/gpu=1",
            "io.cdirun.gpu.sharing": "exclusive",
        });
        let mut spec = oci(input);
        assert_eq!(run(&mut spec, &config).unwrap(), Claims::default());
        assert_eq!(
            ledger::read(&config.state_dir).unwrap(),
            ledger::Ledger::default()
        );
    }
}

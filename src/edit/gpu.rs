//! The GPU edit: allocates the GPUs an `io.cdirun.gpu.*` request asks for, injects them through
//! the CDI module, records them in the node-wide ledger, sets the vendor env for the whole
//! allocation, sets compute mode DEFAULT for time-slicing, and sets the distributed env.
//!
//! Runs after the CDI edit. A GPU request is an explicit allocation, so under
//! [`request::precedence`] the vendor visible-devices variables request nothing here. GPUs named
//! by CDI annotations are already injected: with no `io.cdirun.gpu.count` they are the
//! allocation; with a count, cdirun picks devices of the vendor's kind itself and annotating
//! devices of that kind as well is an error. The ledger is locked from the read to the write, so
//! concurrent creates never share an exclusive GPU; nothing is written before every other step
//! of this edit succeeded.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use libcontainer::oci_spec::runtime::Spec;

use super::cdi::{self, CdiError};
use super::{Context, Edit, EditError};
use crate::cdi::Registry;
use crate::claims::gpu::{self as ledger, LedgerError};
use crate::claims::{Claim, Claims, Holder};
use crate::request::{
    self, AMD_VISIBLE_DEVICES, Count, Distributed, GPU_ALLOCATED, GpuRequest, RequestError,
    Sharing, VENDOR_ENV, Vendor,
};

/// `<smi> -i N -c DEFAULT` may take this long before it counts as failed.
const SMI_LIMIT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Cdi(#[from] CdiError),
    #[error(
        "io.cdirun.gpu.count asks cdirun to pick {kind} devices, but CDI annotations also name {}: drop the count to make the annotated devices the allocation, or drop them from the annotations",
        .named.join(", ")
    )]
    Conflict {
        kind: &'static str,
        named: Vec<String>,
    },
    #[error(
        "GPU {device} has no numeric index (its CDI name is not a number); {sharing} sharing needs GPUs named by index, as nvidia-ctk names them by default"
    )]
    NoIndex {
        device: String,
        sharing: &'static str,
    },
    #[error(
        "cannot set compute mode DEFAULT on GPU {gpu} for time-slicing with `{smi} -i {gpu} -c DEFAULT`: {message}"
    )]
    TimeSlice {
        smi: PathBuf,
        gpu: u32,
        message: String,
    },
    #[error("config.json has no process section to set {var} in")]
    NoProcess { var: &'static str },
    #[error(
        "io.cdirun.gpu.sharing={sharing} cannot work rootless: {why}; name the devices through CDI (a cdi.k8s.io/ annotation or --device vendor/class=name) or ask for io.cdirun.gpu.sharing=time-slice"
    )]
    Rootless {
        sharing: &'static str,
        why: &'static str,
    },
}

/// The GPU edit; skipped when no GPU or distributed annotation is present.
pub struct Gpu;

impl Edit for Gpu {
    fn name(&self) -> &'static str {
        "gpu"
    }

    fn apply(&self, spec: &mut Spec, ctx: &Context) -> Result<Claims, EditError> {
        let gpu = request::gpu_from_spec(spec, ctx.config).map_err(GpuError::from)?;
        let distributed = request::distributed_from_spec(spec).map_err(GpuError::from)?;
        if gpu.is_none() && distributed.is_none() {
            return Ok(Claims::default());
        }
        // config.json already carries an earlier pass's allocation: its env is not the client's.
        let ours_before = !previous_allocation(spec).is_empty();
        let mut edited = spec.clone();
        let mut env: Vec<(&'static str, String)> = Vec::new();
        let mut claims = Claims::default();
        // Held until the end of apply: the ledger is written last, under the same lock.
        let mut pending = None;
        if let Some(gpu) = gpu.as_ref().filter(|_| ctx.rootless) {
            let refused = match gpu.sharing {
                Sharing::Exclusive => Some((
                    "exclusive",
                    "the node-wide GPU ledger that makes a GPU exclusive is shared by every user, and a rootless runtime keeps a ledger of its own",
                )),
                Sharing::Mps => Some((
                    "mps",
                    "the MPS control daemon is the node's, started and stopped as root",
                )),
                _ => None,
            };
            if let Some((sharing, why)) = refused {
                return Err(GpuError::Rootless { sharing, why }.into());
            }
        }
        if let Some(gpu) = &gpu {
            let allocation = allocate(&mut edited, ctx, gpu)?;
            let names = allocation.names();
            env.extend(vendor_env(gpu.vendor, &names));
            // The image's AMD_VISIBLE_DEVICES is no request here: it describes the allocation.
            let amd_set = ctx.client_env.iter().any(|e| {
                e.split_once('=')
                    .is_some_and(|(k, _)| k == AMD_VISIBLE_DEVICES)
            });
            if gpu.vendor == Vendor::Amd && amd_set {
                env.push((
                    AMD_VISIBLE_DEVICES,
                    request::visible_value(AMD_VISIBLE_DEVICES, &names),
                ));
            }
            if gpu.sharing == Sharing::TimeSlice && !ctx.dry_run {
                for device in &names {
                    set_default_compute_mode(ctx, device)?;
                }
            }
            annotate(&mut edited, &names);
            claims.0.push(Claim::Gpu {
                devices: names,
                sharing: gpu.sharing,
                holder: allocation.holder.clone(),
            });
            pending = Some(allocation);
        }
        if let Some(dist) = &distributed {
            env.extend(distributed_env(dist, &ctx.config.gpu.nccl_socket_ifname));
        }
        set_env(&mut edited, ctx, &env, ours_before)?;
        if gpu.as_ref().is_some_and(|gpu| gpu.vendor == Vendor::Nvidia) {
            set_env_default(
                &mut edited,
                NVIDIA_DRIVER_CAPABILITIES,
                DEFAULT_DRIVER_CAPABILITIES,
            );
        }
        if let Some(allocation) = pending {
            allocation.commit(ctx.dry_run)?;
        }
        *spec = edited;
        Ok(claims)
    }
}

/// The chosen GPUs and the locked ledger they go into.
struct Allocation {
    devices: Vec<ledger::Gpu>,
    sharing: Sharing,
    holder: Holder,
    locked: Option<ledger::Locked>,
}

impl Allocation {
    fn names(&self) -> Vec<String> {
        names(&self.devices)
    }

    fn commit(mut self, dry_run: bool) -> Result<(), GpuError> {
        if let Some(locked) = self.locked.as_mut().filter(|_| !dry_run) {
            locked.data.take(&self.devices, &self.holder, self.sharing);
            locked.save().map_err(ledger::LedgerError::from)?;
        }
        Ok(())
    }
}

/// Chooses the GPUs (and injects the ones cdirun picked) under the ledger lock.
fn allocate(spec: &mut Spec, ctx: &Context, gpu: &GpuRequest) -> Result<Allocation, GpuError> {
    let kind = gpu.vendor.kind();
    let registry = Registry::load(&ctx.config.cdi.spec_dirs);
    let inventory = Inventory::load(&registry, kind);
    let named = named_devices(spec, ctx, &registry, kind)?;
    let previous = previous_allocation(spec);
    if gpu.count.is_some() && !named.is_empty() {
        return Err(GpuError::Conflict { kind, named });
    }
    let holder = Holder::current(ctx.root, ctx.container_id);
    let mut locked = if ctx.dry_run {
        None
    } else {
        Some(ledger::lock(&ctx.config.state_dir)?)
    };
    let mut view = match &locked {
        Some(locked) => locked.data.clone(),
        None => ledger::read(&ctx.config.state_dir)?,
    };
    for (device, stale) in view.reclaim(Holder::is_live) {
        tracing::info!(
            "reclaimed {device} from container {} (root {}), which no longer exists",
            stale.id,
            stale.root.display()
        );
    }
    let searched = |err: LedgerError| match err {
        LedgerError::Unmet(mut unmet) => {
            unmet.searched.clone_from(&registry.dirs);
            GpuError::Ledger(LedgerError::Unmet(unmet))
        }
        other => GpuError::Ledger(other),
    };
    let devices = if named.is_empty() {
        let candidates: Vec<ledger::Gpu> = inventory
            .singles()
            .into_iter()
            .filter(|g| {
                gpu.model
                    .as_deref()
                    .is_none_or(|m| has_model(&registry, &g.name, m))
            })
            // MPS daemons and nvidia-smi address a GPU by index.
            .filter(|g| gpu.sharing == Sharing::Exclusive || index(&g.name, gpu.sharing).is_ok())
            .collect();
        let count = gpu.count.unwrap_or(Count::N(1));
        let picked = view
            .pick(kind, gpu.model.as_deref(), &candidates, count, gpu.sharing)
            .map_err(searched)?;
        let picked_names = names(&picked);
        forget(spec, &registry, &previous, &picked_names);
        cdi::inject(spec, &registry, &picked_names)?;
        if ctx.rootless {
            cdi::bind_nodes(spec, &registry, &picked_names);
        }
        picked
    } else {
        let mut gpus: Vec<ledger::Gpu> = Vec::new();
        for name in &named {
            for member in inventory.expand(name) {
                if !gpus.contains(&member) {
                    gpus.push(member);
                }
            }
        }
        view.pick(kind, None, &gpus, Count::All, gpu.sharing)
            .map_err(searched)?
    };
    if let Some(locked) = &mut locked {
        locked.data = view;
    }
    Ok(Allocation {
        devices,
        sharing: gpu.sharing,
        holder,
        locked,
    })
}

fn names(gpus: &[ledger::Gpu]) -> Vec<String> {
    gpus.iter().map(|g| g.name.clone()).collect()
}

/// The devices of one kind, told apart by the host devices behind them ([`cdi::identity`]),
/// so that aliases count as one GPU and composites as none.
struct Inventory {
    /// Every device of the kind in natural order (index names first).
    devices: Vec<ledger::Gpu>,
}

impl Inventory {
    fn load(registry: &Registry, kind: &str) -> Self {
        let devices = registry
            .devices_of_kind(kind)
            .into_iter()
            .map(|name| {
                // A device whose nodes cannot be resolved is known by its name; injecting it
                // reports why it is broken.
                let nodes = cdi::identity(registry, &name).unwrap_or_default();
                ledger::Gpu { name, nodes }
            })
            .collect();
        Inventory { devices }
    }

    /// Whether `gpu` spans several GPUs: a generator's `all` device, or one whose nodes
    /// include those of two or more different other devices.
    fn is_composite(&self, gpu: &ledger::Gpu) -> bool {
        if gpu.name.ends_with("=all") {
            return true;
        }
        let mut parts: Vec<&BTreeSet<String>> = self
            .devices
            .iter()
            .map(|d| &d.nodes)
            .filter(|nodes| !nodes.is_empty() && **nodes != gpu.nodes)
            .filter(|nodes| nodes.is_subset(&gpu.nodes))
            .collect();
        parts.sort();
        parts.dedup();
        parts.len() >= 2
    }

    /// One entry per GPU: composites left out, and of several names for the same nodes (an
    /// index and a UUID) only the first in natural order, so the index name is the one used.
    fn singles(&self) -> Vec<ledger::Gpu> {
        let mut singles: Vec<ledger::Gpu> = Vec::new();
        for device in &self.devices {
            let alias = !device.nodes.is_empty() && singles.iter().any(|s| s.nodes == device.nodes);
            if !alias && !self.is_composite(device) {
                singles.push(device.clone());
            }
        }
        singles
    }

    /// The GPUs a device named through CDI stands for: the GPU it is a name of (as
    /// [`Inventory::singles`] names it), or every GPU a composite covers.
    fn expand(&self, name: &str) -> Vec<ledger::Gpu> {
        let device = self
            .devices
            .iter()
            .find(|d| d.name == name)
            .cloned()
            .unwrap_or_else(|| ledger::Gpu {
                name: name.to_owned(),
                nodes: BTreeSet::new(),
            });
        if device.nodes.is_empty() {
            return vec![device];
        }
        let singles = self.singles();
        if let Some(same) = singles.iter().find(|s| s.nodes == device.nodes) {
            return vec![same.clone()];
        }
        let members: Vec<ledger::Gpu> = singles
            .into_iter()
            .filter(|s| !s.nodes.is_empty() && s.nodes.is_subset(&device.nodes))
            .collect();
        if members.is_empty() {
            vec![device]
        } else {
            members
        }
    }
}

/// The devices of `kind` the client named through CDI, as the CDI edit resolved them
/// (composites such as `all` included: they are expanded into their GPUs).
fn named_devices(
    spec: &Spec,
    ctx: &Context,
    registry: &Registry,
    kind: &str,
) -> Result<Vec<String>, GpuError> {
    // Read from the client's env: a CDI spec's env edits (nvidia-ctk sets
    // NVIDIA_VISIBLE_DEVICES=void) are not requests.
    let mut client = spec.clone();
    if let Some(process) = client.process_mut() {
        process.set_env(Some(ctx.client_env.to_vec()));
    }
    let request = request::from_spec(&client, ctx.config)?;
    let resolved = cdi::resolve(registry, &request)?;
    let prefix = format!("{kind}=");
    Ok(resolved
        .into_iter()
        .filter(|q| q.starts_with(&prefix))
        .collect())
}

/// The devices an earlier pass of this edit allocated (a bundle created from twice).
fn previous_allocation(spec: &Spec) -> Vec<String> {
    spec.annotations()
        .as_ref()
        .and_then(|a| a.get(GPU_ALLOCATED))
        .map(|v| v.split(',').map(str::to_owned).collect())
        .unwrap_or_default()
}

/// Removes the device nodes (and their cgroup rules) of previously allocated devices that are
/// not in `keep`, so re-editing a bundle never leaves an old GPU visible.
fn forget(spec: &mut Spec, registry: &Registry, previous: &[String], keep: &[String]) {
    let paths: Vec<PathBuf> = previous
        .iter()
        .filter(|q| !keep.contains(q))
        .filter_map(|q| registry.get(q))
        .flat_map(|(_, device)| &device.container_edits.device_nodes)
        .map(|node| PathBuf::from(&node.path))
        .collect();
    let Some(linux) = spec.linux_mut().as_mut().filter(|_| !paths.is_empty()) else {
        return;
    };
    let mut nodes = linux.devices().clone().unwrap_or_default();
    let gone: Vec<(i64, i64)> = nodes
        .iter()
        .filter(|d| paths.contains(&d.path().to_path_buf()))
        .map(|d| (d.major(), d.minor()))
        .collect();
    nodes.retain(|d| !paths.contains(&d.path().to_path_buf()));
    linux.set_devices(Some(nodes));
    if let Some(mut resources) = linux.resources().clone() {
        if let Some(mut rules) = resources.devices().clone() {
            rules.retain(|r| {
                !gone
                    .iter()
                    .any(|(ma, mi)| r.major() == Some(*ma) && r.minor() == Some(*mi))
            });
            resources.set_devices(Some(rules));
        }
        linux.set_resources(Some(resources));
    }
}

/// Whether a device has an annotation ending in `model` equal (ignoring case) to `model`.
fn has_model(registry: &Registry, device: &str, model: &str) -> bool {
    registry.get(device).is_some_and(|(_, d)| {
        d.annotations.iter().any(|(key, value)| {
            key.to_ascii_lowercase().ends_with("model") && value.trim().eq_ignore_ascii_case(model)
        })
    })
}

fn annotate(spec: &mut Spec, devices: &[String]) {
    let mut annotations = spec.annotations().clone().unwrap_or_default();
    annotations.insert(GPU_ALLOCATED.to_owned(), devices.join(","));
    spec.set_annotations(Some(annotations));
}

/// The device name of a qualified name (`nvidia.com/gpu=2` -> `2`).
fn device_name(qualified: &str) -> &str {
    qualified
        .split_once('=')
        .map_or(qualified, |(_, name)| name)
}

/// The host GPU index of a device named by index.
pub fn index(qualified: &str, sharing: Sharing) -> Result<u32, GpuError> {
    device_name(qualified)
        .parse()
        .map_err(|_| GpuError::NoIndex {
            device: qualified.to_owned(),
            sharing: sharing.as_str(),
        })
}

/// The vendor's visible-devices env for `devices`: names for NVIDIA's variable, container
/// indices `0..n-1` for the rest (only the allocated nodes are visible inside).
pub fn vendor_env(vendor: Vendor, devices: &[String]) -> Vec<(&'static str, String)> {
    let indices: Vec<String> = (0..devices.len()).map(|i| i.to_string()).collect();
    let indices = indices.join(",");
    match vendor {
        Vendor::Nvidia => vec![
            (
                request::NVIDIA_VISIBLE_DEVICES,
                devices
                    .iter()
                    .map(|d| device_name(d))
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            ("CUDA_VISIBLE_DEVICES", indices),
        ],
        Vendor::Amd => vec![
            ("ROCR_VISIBLE_DEVICES", indices.clone()),
            ("HIP_VISIBLE_DEVICES", indices),
        ],
        Vendor::Intel => vec![("ZE_AFFINITY_MASK", indices)],
    }
}

/// `MASTER_ADDR`, `MASTER_PORT`, `WORLD_SIZE`, `RANK`, `LOCAL_RANK` and, for nccl,
/// `NCCL_SOCKET_IFNAME`.
pub fn distributed_env(dist: &Distributed, ifname: &str) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("MASTER_ADDR", dist.master_addr.clone()),
        ("MASTER_PORT", dist.master_port.to_string()),
        ("WORLD_SIZE", dist.world_size.to_string()),
        ("RANK", dist.rank.to_string()),
        ("LOCAL_RANK", dist.local_rank.to_string()),
    ];
    if dist.backend == "nccl" {
        env.push(("NCCL_SOCKET_IFNAME", ifname.to_owned()));
    }
    env
}

/// Sets each variable by key. A variable the client set itself keeps the client's value unless
/// `[gpu] override-user-env` is on; one this edit set on an earlier pass is not the client's.
/// The vendor visible-devices variables are always this edit's: under the precedence rule a
/// GPU request overrides them, so they describe the allocation.
fn set_env(
    spec: &mut Spec,
    ctx: &Context,
    vars: &[(&'static str, String)],
    ours_before: bool,
) -> Result<(), GpuError> {
    let Some((first, _)) = vars.first() else {
        return Ok(());
    };
    let process = spec
        .process_mut()
        .as_mut()
        .ok_or(GpuError::NoProcess { var: first })?;
    let mut env = process.env().clone().unwrap_or_default();
    for (key, value) in vars {
        let client_value = ctx
            .client_env
            .iter()
            .rev()
            .find_map(|e| e.split_once('=').filter(|(k, _)| k == key).map(|(_, v)| v));
        let visible = VENDOR_ENV.iter().any(|(var, _)| var == key);
        // The client's value is put back, not just left: a CDI spec's env edit (nvidia-ctk's
        // NVIDIA_VISIBLE_DEVICES=void) may have replaced it since.
        let value = match client_value {
            Some(client) if !visible && !ctx.config.gpu.override_user_env && !ours_before => {
                if client != value {
                    tracing::info!(
                        "{key} is set in config.json; keeping {client:?}, not {value:?}"
                    );
                }
                client
            }
            _ => value.as_str(),
        };
        cdi::set_env(&mut env, &format!("{key}={value}"));
    }
    process.set_env(Some(env));
    Ok(())
}

/// The driver features NVIDIA's container hooks and libraries mount; the toolkit's default.
const NVIDIA_DRIVER_CAPABILITIES: &str = "NVIDIA_DRIVER_CAPABILITIES";
const DEFAULT_DRIVER_CAPABILITIES: &str = "utility,compute";

/// Sets `key` only where neither the client nor a CDI spec already did.
fn set_env_default(spec: &mut Spec, key: &str, value: &str) {
    let Some(process) = spec.process_mut().as_mut() else {
        return;
    };
    let mut env = process.env().clone().unwrap_or_default();
    if !env
        .iter()
        .any(|e| e.split_once('=').is_some_and(|(k, _)| k == key))
    {
        env.push(format!("{key}={value}"));
        process.set_env(Some(env));
    }
}

/// `<smi> -i N -c DEFAULT`: lets several processes share the GPU by time-slicing.
fn set_default_compute_mode(ctx: &Context, device: &str) -> Result<(), GpuError> {
    let gpu = index(device, Sharing::TimeSlice)?;
    let smi = &ctx.config.time_slice.smi;
    let failed = |message: String| GpuError::TimeSlice {
        smi: smi.clone(),
        gpu,
        message,
    };
    let mut child = Command::new(smi)
        .args(["-i", &gpu.to_string(), "-c", "DEFAULT"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| failed(err.to_string()))?;
    let deadline = Instant::now() + SMI_LIMIT;
    while child
        .try_wait()
        .map_err(|e| failed(e.to_string()))?
        .is_none()
    {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(failed(format!("still running after {SMI_LIMIT:?}; killed")));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = child
        .wait_with_output()
        .map_err(|e| failed(e.to_string()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(failed(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    use super::*;
    use crate::config::Config;
    use crate::edit::apply_all;

    /// A temp node: 4 GPUs of each vendor kind in one spec dir (fully specified nodes, so no
    /// host node is needed), a state dir and a logging `nvidia-smi` stand-in.
    struct Node {
        dir: tempfile::TempDir,
        config: Config,
    }

    impl Node {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let cdi = dir.path().join("cdi");
            fs::create_dir(&cdi).unwrap();
            for (file, kind, major, models) in [
                (
                    "nvidia.yaml",
                    "nvidia.com/gpu",
                    195,
                    ["A100", "A100", "H100", "H100"],
                ),
                ("amd.yaml", "amd.com/gpu", 226, ["MI300"; 4]),
                ("intel.yaml", "intel.cdi.k8s.io/gpu", 227, ["Max"; 4]),
            ] {
                let devices: Vec<String> = (0..4)
                    .map(|i| {
                        format!(
                            "{{name: \"{i}\", annotations: {{gpu.model: {}}}, containerEdits: {{deviceNodes: [{{path: /dev/gpu{major}-{i}, type: c, major: {major}, minor: {i}}}]}}}}",
                            models[i]
                        )
                    })
                    .collect();
                fs::write(
                    cdi.join(file),
                    format!(
                        "cdiVersion: 0.6.0\nkind: {kind}\n{}devices: [{}]\n",
                        // As nvidia-ctk writes it: not a request, and not the client's value.
                        if major == 195 {
                            "containerEdits: {env: [NVIDIA_VISIBLE_DEVICES=void]}\n"
                        } else {
                            ""
                        },
                        devices.join(", ")
                    ),
                )
                .unwrap();
            }
            let smi = dir.path().join("smi");
            fs::write(
                &smi,
                format!(
                    "#!/bin/sh\necho \"$@\" >> {:?}\n[ -e {:?} ] && exit 9\nexit 0\n",
                    dir.path().join("smi.log"),
                    dir.path().join("smi.fail")
                ),
            )
            .unwrap();
            fs::set_permissions(&smi, fs::Permissions::from_mode(0o755)).unwrap();
            let mut config = Config::default();
            config.cdi.spec_dirs = vec![cdi];
            config.state_dir = dir.path().join("state");
            config.time_slice.smi = smi;
            Node { dir, config }
        }

        /// Replaces the NVIDIA spec with `devices` (YAML flow list) under nvidia-ctk's
        /// spec-level nodes, which every device shares and which are no GPU.
        fn nvidia(&self, devices: &str) {
            fs::write(
                self.config.cdi.spec_dirs[0].join("nvidia.yaml"),
                format!(
                    "cdiVersion: 0.6.0\nkind: nvidia.com/gpu\ncontainerEdits: {{deviceNodes: [\
                     {{path: /dev/nvidiactl, type: c, major: 195, minor: 255}}, \
                     {{path: /dev/nvidia-uvm, type: c, major: 510, minor: 0}}]}}\ndevices: [{devices}]\n"
                ),
            )
            .unwrap();
        }

        fn ledger(&self) -> Option<String> {
            fs::read_to_string(self.config.state_dir.join(ledger::LEDGER_FILE)).ok()
        }

        fn smi_calls(&self) -> String {
            fs::read_to_string(self.dir.path().join("smi.log")).unwrap_or_default()
        }

        fn create(&self, id: &str, spec: &mut Spec) -> Result<Claims, EditError> {
            self.run(id, spec, false)
        }

        fn run(&self, id: &str, spec: &mut Spec, dry_run: bool) -> Result<Claims, EditError> {
            let ctx = Context {
                dry_run,
                ..Context::new(id, &self.config, Path::new("/run/cdirun-test"))
            };
            // The slice edit's scope claim is not this module's business.
            apply_all(spec, &ctx)
                .map(|claims| claims.without_scopes())
                .map_err(|(err, taken)| {
                    assert_eq!(taken, Claims::default(), "a failed edit left claims");
                    err
                })
        }
    }

    fn spec(annotations: &[(&str, &str)], env: &[&str]) -> Spec {
        let mut spec = Spec::default();
        spec.set_annotations(Some(
            annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>(),
        ));
        let mut process = spec.process().clone().unwrap();
        process.set_env(Some(env.iter().map(|s| s.to_string()).collect()));
        spec.set_process(Some(process));
        // No cgroupsPath: the slice edit leaves the spec alone.
        spec
    }

    fn env(spec: &Spec) -> Vec<String> {
        spec.process().as_ref().unwrap().env().clone().unwrap()
    }

    fn nodes(spec: &Spec) -> Vec<String> {
        spec.linux()
            .as_ref()
            .unwrap()
            .devices()
            .iter()
            .flatten()
            .map(|d| d.path().display().to_string())
            .collect()
    }

    /// The GPUs the GPU edit allocated (a plain CDI request's hold is the CDI edit's).
    fn devices(claims: &Claims) -> Vec<String> {
        claims
            .0
            .iter()
            .find_map(|c| match c {
                Claim::Gpu {
                    devices, sharing, ..
                } if *sharing != Sharing::Plain => Some(devices.clone()),
                _ => None,
            })
            .unwrap_or_default()
    }

    #[test]
    fn vendor_env_table() {
        let cases: [(&str, &[&str], &[&str]); 3] = [
            (
                "nvidia",
                &["nvidia.com/gpu=0", "nvidia.com/gpu=1"],
                &[
                    "PATH=/bin",
                    "NVIDIA_VISIBLE_DEVICES=0,1",
                    "CUDA_VISIBLE_DEVICES=0,1",
                    "NVIDIA_DRIVER_CAPABILITIES=utility,compute",
                ],
            ),
            (
                "amd",
                &["amd.com/gpu=0", "amd.com/gpu=1", "amd.com/gpu=2"],
                &[
                    "PATH=/bin",
                    "ROCR_VISIBLE_DEVICES=0,1,2",
                    "HIP_VISIBLE_DEVICES=0,1,2",
                ],
            ),
            (
                "intel",
                &["intel.cdi.k8s.io/gpu=0"],
                &["PATH=/bin", "ZE_AFFINITY_MASK=0"],
            ),
        ];
        for (vendor, count_of, want) in cases {
            let node = Node::new();
            let count = count_of.len().to_string();
            let mut s = spec(
                &[
                    ("io.cdirun.gpu.count", &count),
                    ("io.cdirun.gpu.vendor", vendor),
                ],
                &["PATH=/bin"],
            );
            let claims = node.create("c1", &mut s).unwrap();
            assert_eq!(devices(&claims), *count_of, "{vendor}");
            // nvidia's spec-level NVIDIA_VISIBLE_DEVICES=void is replaced, not kept.
            let got: Vec<String> = env(&s)
                .into_iter()
                .filter(|e| vendor != "nvidia" || !e.ends_with("=void"))
                .collect();
            assert_eq!(got, *want, "{vendor}");
            assert_eq!(nodes(&s).len(), count_of.len(), "{vendor}");
        }
    }

    #[test]
    fn exclusive_allocation_never_shares_and_names_free_and_held() {
        let node = Node::new();
        let mut a = spec(&[("io.cdirun.gpu.count", "3")], &[]);
        assert_eq!(
            devices(&node.create("a", &mut a).unwrap()),
            ["nvidia.com/gpu=0", "nvidia.com/gpu=1", "nvidia.com/gpu=2"]
        );
        assert_eq!(
            nodes(&a),
            ["/dev/gpu195-0", "/dev/gpu195-1", "/dev/gpu195-2"]
        );
        let mut b = spec(&[("io.cdirun.gpu.count", "2")], &[]);
        let before = node.ledger();
        let err = node.create("b", &mut b).unwrap_err().to_string();
        assert!(
            err.contains("free: nvidia.com/gpu=3")
                && err.contains("nvidia.com/gpu=0 by a (exclusive)")
                && err.contains("nvidia.com/gpu=2 by a (exclusive)"),
            "{err}"
        );
        assert_eq!(node.ledger(), before, "a failed request changed the ledger");
        assert_eq!(
            b,
            spec(&[("io.cdirun.gpu.count", "2")], &[]),
            "spec changed"
        );
        // A shared request cannot go on an exclusive GPU either, but takes the free one.
        let mut c = spec(&[("io.cdirun.gpu.sharing", "time-slice")], &[]);
        assert_eq!(
            devices(&node.create("c", &mut c).unwrap()),
            ["nvidia.com/gpu=3"]
        );
        assert_eq!(node.smi_calls(), "-i 3 -c DEFAULT\n");
        let mut d = spec(&[("io.cdirun.gpu.sharing", "time-slice")], &[]);
        assert_eq!(
            devices(&node.create("d", &mut d).unwrap()),
            ["nvidia.com/gpu=3"]
        );
        // Release gives the GPUs back.
        let holder = Holder::current(Path::new("/run/cdirun-test"), "a");
        ledger::release(&node.config.state_dir, &holder).unwrap();
        assert_eq!(
            devices(&node.create("b", &mut b).unwrap()),
            ["nvidia.com/gpu=0", "nvidia.com/gpu=1"]
        );
    }

    #[test]
    fn model_filters_the_candidates() {
        let node = Node::new();
        let mut s = spec(
            &[
                ("io.cdirun.gpu.count", "2"),
                ("io.cdirun.gpu.model", "h100"),
            ],
            &[],
        );
        assert_eq!(
            devices(&node.create("a", &mut s).unwrap()),
            ["nvidia.com/gpu=2", "nvidia.com/gpu=3"]
        );
        let mut s = spec(&[("io.cdirun.gpu.model", "V100")], &[]);
        let err = node.create("b", &mut s).unwrap_err().to_string();
        assert!(
            err.contains("model \"V100\": no such GPU is defined in the CDI specs in"),
            "{err}"
        );
    }

    #[test]
    fn gpus_annotated_through_cdi_are_the_allocation_and_conflict_with_a_count() {
        let node = Node::new();
        let mut s = spec(
            &[
                ("io.cdirun.gpu.sharing", "exclusive"),
                ("cdi.k8s.io/gpu", "nvidia.com/gpu=2"),
            ],
            &["NVIDIA_VISIBLE_DEVICES=all"],
        );
        assert_eq!(
            devices(&node.create("a", &mut s).unwrap()),
            ["nvidia.com/gpu=2"]
        );
        // The image's `all` is no request and is rewritten, as is the spec's `void`.
        let visible: Vec<String> = env(&s)
            .into_iter()
            .filter(|e| e.starts_with("NVIDIA_VISIBLE_DEVICES="))
            .collect();
        assert_eq!(visible, ["NVIDIA_VISIBLE_DEVICES=2"]);
        assert_eq!(nodes(&s), ["/dev/gpu195-2"]);
        let mut s = spec(
            &[
                ("io.cdirun.gpu.sharing", "exclusive"),
                ("cdi.k8s.io/gpu", "nvidia.com/gpu=2"),
            ],
            &[],
        );
        let err = node.create("b", &mut s).unwrap_err().to_string();
        // The CDI edit refuses a device held exclusively before the GPU edit looks.
        assert!(
            err.contains("nvidia.com/gpu=2 is held exclusively by container a"),
            "{err}"
        );
        let mut s = spec(
            &[
                ("io.cdirun.gpu.count", "1"),
                ("cdi.k8s.io/x", "nvidia.com/gpu=0"),
            ],
            &[],
        );
        let err = node.create("c", &mut s).unwrap_err().to_string();
        assert!(
            err.contains("CDI annotations also name nvidia.com/gpu=0: drop the count"),
            "{err}"
        );
    }

    #[test]
    fn a_gpu_request_overrides_the_images_visible_devices() {
        // Regression: a count with the NVIDIA_VISIBLE_DEVICES=all every CUDA image carries was
        // refused as naming every GPU, and a GPU request with the variable naming a GPU gave
        // that GPU instead of one the ledger chose.
        let node = Node::new();
        let mut held = spec(&[("io.cdirun.gpu.count", "1")], &[]);
        node.create("held", &mut held).unwrap();
        type Case<'a> = (
            &'a [(&'a str, &'a str)],
            &'a [&'a str],
            &'a [&'a str],
            &'a [&'a str],
        );
        let cases: [Case; 4] = [
            (
                &[("io.cdirun.gpu.count", "1")],
                &["NVIDIA_VISIBLE_DEVICES=all"],
                &["nvidia.com/gpu=1"],
                &["NVIDIA_VISIBLE_DEVICES=1", "CUDA_VISIBLE_DEVICES=0"],
            ),
            (
                // GPU 0 is held: the variable asks for it, the ledger gives another.
                &[("io.cdirun.gpu.sharing", "exclusive")],
                &["NVIDIA_VISIBLE_DEVICES=0", "NVIDIA_VISIBLE_DEVICES=0"],
                &["nvidia.com/gpu=1"],
                &["NVIDIA_VISIBLE_DEVICES=1", "CUDA_VISIBLE_DEVICES=0"],
            ),
            (
                &[
                    ("io.cdirun.gpu.count", "2"),
                    ("io.cdirun.gpu.vendor", "amd"),
                ],
                &["AMD_VISIBLE_DEVICES=all", "NVIDIA_VISIBLE_DEVICES=all"],
                &["amd.com/gpu=0", "amd.com/gpu=1"],
                &[
                    "NVIDIA_VISIBLE_DEVICES=void",
                    "ROCR_VISIBLE_DEVICES=0,1",
                    "HIP_VISIBLE_DEVICES=0,1",
                    "AMD_VISIBLE_DEVICES=0,1",
                ],
            ),
            (
                // Another kind through CDI is no conflict; its vendor variable names it.
                &[
                    ("io.cdirun.gpu.count", "1"),
                    ("cdi.k8s.io/amd", "amd.com/gpu=3"),
                ],
                &["AMD_VISIBLE_DEVICES=all", "NVIDIA_VISIBLE_DEVICES=all"],
                &["nvidia.com/gpu=1"],
                &[
                    "AMD_VISIBLE_DEVICES=3",
                    "NVIDIA_VISIBLE_DEVICES=1",
                    "CUDA_VISIBLE_DEVICES=0",
                ],
            ),
        ];
        for (i, (annotations, client, want_devices, want_env)) in cases.iter().enumerate() {
            let mut s = spec(annotations, client);
            let id = format!("c{i}");
            let claims = node
                .create(&id, &mut s)
                .unwrap_or_else(|e| panic!("{annotations:?}: {e}"));
            assert_eq!(devices(&claims), *want_devices, "{annotations:?}");
            let got: Vec<String> = env(&s)
                .into_iter()
                .filter(|e| !e.starts_with("NVIDIA_DRIVER_CAPABILITIES="))
                .collect();
            assert_eq!(got, *want_env, "{annotations:?}");
            ledger::release(
                &node.config.state_dir,
                &Holder::current(Path::new("/run/cdirun-test"), &id),
            )
            .unwrap();
        }
    }

    #[test]
    fn client_env_wins_unless_the_config_overrides() {
        for (override_user_env, want) in [
            (false, "CUDA_VISIBLE_DEVICES=7"),
            (true, "CUDA_VISIBLE_DEVICES=0"),
        ] {
            let mut node = Node::new();
            node.config.gpu.override_user_env = override_user_env;
            let mut s = spec(
                &[
                    ("io.cdirun.gpu.count", "1"),
                    ("io.cdirun.distributed.rank", "0"),
                ],
                &["CUDA_VISIBLE_DEVICES=7", "MASTER_ADDR=mine"],
            );
            node.create("a", &mut s).unwrap();
            let env = env(&s);
            assert!(
                env.contains(&want.to_owned()),
                "{override_user_env}: {env:?}"
            );
            // Spec::default()'s hostname.
            let addr = if override_user_env {
                "MASTER_ADDR=youki"
            } else {
                "MASTER_ADDR=mine"
            };
            assert!(
                env.contains(&addr.to_owned()),
                "{override_user_env}: {env:?}"
            );
        }
    }

    #[test]
    fn driver_capabilities_default_only_fills_a_gap() {
        for (client, want) in [
            (None, "NVIDIA_DRIVER_CAPABILITIES=utility,compute"),
            (
                Some("NVIDIA_DRIVER_CAPABILITIES=all"),
                "NVIDIA_DRIVER_CAPABILITIES=all",
            ),
        ] {
            let node = Node::new();
            let mut s = spec(&[("io.cdirun.gpu.count", "1")], client.as_slice());
            node.create("a", &mut s).unwrap();
            let caps: Vec<String> = env(&s)
                .into_iter()
                .filter(|e| e.starts_with("NVIDIA_DRIVER_CAPABILITIES="))
                .collect();
            assert_eq!(caps, [want], "{client:?}");
        }
    }

    #[test]
    fn distributed_env_alone_takes_no_gpu() {
        let mut node = Node::new();
        node.config.gpu.nccl_socket_ifname = "ib0".into();
        let mut s = spec(
            &[
                ("io.cdirun.distributed.world-size", "4"),
                ("io.cdirun.distributed.rank", "3"),
            ],
            &[],
        );
        s.set_hostname(Some("trainer-0".into()));
        assert_eq!(node.create("a", &mut s).unwrap(), Claims::default());
        assert_eq!(
            env(&s),
            [
                "MASTER_ADDR=trainer-0",
                "MASTER_PORT=29500",
                "WORLD_SIZE=4",
                "RANK=3",
                "LOCAL_RANK=0",
                "NCCL_SOCKET_IFNAME=ib0"
            ]
        );
        assert_eq!(node.ledger(), None);
    }

    #[test]
    fn failed_time_slicing_holds_nothing() {
        let node = Node::new();
        fs::write(node.dir.path().join("smi.fail"), "").unwrap();
        let mut s = spec(
            &[
                ("io.cdirun.gpu.sharing", "time-slice"),
                ("io.cdirun.gpu.count", "2"),
            ],
            &[],
        );
        let err = node.create("a", &mut s).unwrap_err().to_string();
        assert!(
            err.contains("-i 0 -c DEFAULT") && err.contains("exit status: 9"),
            "{err}"
        );
        assert_eq!(node.ledger(), None);
    }

    #[test]
    fn dry_run_takes_nothing_and_runs_nothing() {
        let node = Node::new();
        let mut first = spec(&[("io.cdirun.gpu.count", "1")], &[]);
        node.create("a", &mut first).unwrap();
        let before = node.ledger();
        let mut s = spec(
            &[
                ("io.cdirun.gpu.count", "1"),
                ("io.cdirun.gpu.sharing", "time-slice"),
            ],
            &[],
        );
        let claims = node.run("explain", &mut s, true).unwrap();
        // The choice is computed against the real ledger (GPU 0 is held) ...
        assert_eq!(devices(&claims), ["nvidia.com/gpu=1"]);
        // ... but nothing is written and no program runs.
        assert_eq!(node.ledger(), before);
        assert_eq!(node.smi_calls(), "");
    }

    #[test]
    fn re_editing_an_edited_bundle_replaces_the_old_allocation() {
        let node = Node::new();
        let mut s = spec(&[("io.cdirun.gpu.count", "1")], &[]);
        node.create("a", &mut s).unwrap();
        // `a` still holds GPU 0; the same (already edited) config.json is created again.
        let claims = node.create("b", &mut s).unwrap();
        assert_eq!(devices(&claims), ["nvidia.com/gpu=1"]);
        assert_eq!(nodes(&s), ["/dev/gpu195-1"]);
        let env = env(&s);
        assert!(
            env.contains(&"NVIDIA_VISIBLE_DEVICES=1".to_owned()),
            "{env:?}"
        );
        assert!(
            env.contains(&"CUDA_VISIBLE_DEVICES=0".to_owned()),
            "{env:?}"
        );
        let rules = s
            .linux()
            .as_ref()
            .unwrap()
            .resources()
            .as_ref()
            .unwrap()
            .devices()
            .clone()
            .unwrap();
        assert!(
            !rules
                .iter()
                .any(|r| r.major() == Some(195) && r.minor() == Some(0)),
            "{rules:?}"
        );
    }

    /// A GPU named `name` on /dev/nvidia<minors> (and its render node), as nvidia-ctk writes it.
    fn ctk_device(name: &str, minors: &[u32]) -> String {
        let nodes: Vec<String> = minors
            .iter()
            .map(|m| {
                format!(
                    "{{path: /dev/nvidia{m}, type: c, major: 195, minor: {m}}}, \
                     {{path: /dev/dri/renderD{r}, type: c, major: 226, minor: {r}}}",
                    r = 128 + m
                )
            })
            .collect();
        format!(
            "{{name: \"{name}\", containerEdits: {{deviceNodes: [{}]}}}}",
            nodes.join(", ")
        )
    }

    /// nvidia-ctk's layout for two GPUs: by index, by UUID and `all`.
    fn ctk_spec() -> String {
        [
            ctk_device("0", &[0]),
            ctk_device("1", &[1]),
            ctk_device("GPU-0000-uuid0", &[0]),
            ctk_device("GPU-1111-uuid1", &[1]),
            ctk_device("all", &[0, 1]),
        ]
        .join(", ")
    }

    #[test]
    fn an_exclusive_composite_takes_every_gpu_it_covers() {
        // Regression: `all` was recorded as nothing (or one GPU), so a later request got GPU 1,
        // whose node the first container also had.
        let node = Node::new();
        node.nvidia(&ctk_spec());
        let mut a = spec(
            &[
                ("io.cdirun.gpu.sharing", "exclusive"),
                ("cdi.k8s.io/x", "nvidia.com/gpu=all"),
            ],
            &[],
        );
        assert_eq!(
            devices(&node.create("a", &mut a).unwrap()),
            ["nvidia.com/gpu=0", "nvidia.com/gpu=1"]
        );
        let ledger = node.ledger().unwrap();
        assert!(
            ledger.contains("c 195:1") && !ledger.contains("195:255"),
            "{ledger}"
        );
        let mut b = spec(&[("io.cdirun.gpu.count", "1")], &[]);
        let err = node.create("b", &mut b).unwrap_err().to_string();
        assert!(
            err.contains("free: none; held: nvidia.com/gpu=0 by a (exclusive), nvidia.com/gpu=1 by a (exclusive)"),
            "{err}"
        );
        // A composite over a held GPU is refused, naming the holder.
        let node = Node::new();
        node.nvidia(&ctk_spec());
        let mut one = spec(&[("io.cdirun.gpu.count", "1")], &[]);
        node.create("one", &mut one).unwrap();
        let mut all = spec(
            &[
                ("io.cdirun.gpu.sharing", "exclusive"),
                ("cdi.k8s.io/x", "nvidia.com/gpu=all"),
            ],
            &[],
        );
        let err = node.create("all", &mut all).unwrap_err().to_string();
        assert!(
            err.contains(
                "nvidia.com/gpu=all shares host devices with nvidia.com/gpu=0, held exclusively by container one"
            ),
            "{err}"
        );
        // Annotating `all` gives every GPU: a count on top is a conflict.
        let node = Node::new();
        node.nvidia(&ctk_spec());
        let mut both = spec(
            &[
                ("io.cdirun.gpu.count", "1"),
                ("cdi.k8s.io/x", "nvidia.com/gpu=all"),
            ],
            &[],
        );
        let err = node.create("both", &mut both).unwrap_err().to_string();
        assert!(
            err.contains("CDI annotations also name nvidia.com/gpu=all"),
            "{err}"
        );
    }

    #[test]
    fn aliases_are_one_gpu() {
        // Regression: two count=2 requests got `0,1` and the two UUID names: the same GPUs.
        let node = Node::new();
        node.nvidia(&ctk_spec());
        let mut a = spec(&[("io.cdirun.gpu.count", "2")], &[]);
        assert_eq!(
            devices(&node.create("a", &mut a).unwrap()),
            ["nvidia.com/gpu=0", "nvidia.com/gpu=1"]
        );
        let mut b = spec(&[("io.cdirun.gpu.count", "2")], &[]);
        let err = node.create("b", &mut b).unwrap_err().to_string();
        assert!(err.contains("free: none"), "{err}");
        let mut all = spec(&[("io.cdirun.gpu.count", "all")], &[]);
        let err = node.create("c", &mut all).unwrap_err().to_string();
        assert!(err.contains("cannot allocate all 2 exclusive"), "{err}");
        // A GPU named by its UUID is held as its index name, and blocks a count request.
        let node = Node::new();
        node.nvidia(&ctk_spec());
        let mut uuid = spec(
            &[
                ("io.cdirun.gpu.sharing", "exclusive"),
                ("cdi.k8s.io/x", "nvidia.com/gpu=GPU-0000-uuid0"),
            ],
            &[],
        );
        assert_eq!(
            devices(&node.create("u", &mut uuid).unwrap()),
            ["nvidia.com/gpu=0"]
        );
        let mut two = spec(&[("io.cdirun.gpu.count", "2")], &[]);
        let err = node.create("two", &mut two).unwrap_err().to_string();
        assert!(
            err.contains("only 2 exist") || err.contains("held: nvidia.com/gpu=0 by u (exclusive)"),
            "{err}"
        );
        let mut one = spec(&[("io.cdirun.gpu.count", "1")], &[]);
        assert_eq!(
            devices(&node.create("one", &mut one).unwrap()),
            ["nvidia.com/gpu=1"]
        );
    }

    #[test]
    fn shared_modes_pick_only_gpus_named_by_index() {
        // Regression: the least shared GPU was picked even when named by UUID only, and the
        // create then failed for want of an index.
        let node = Node::new();
        node.nvidia(&[ctk_device("0", &[0]), ctk_device("GPU-aaaa-1111", &[1])].join(", "));
        let mut a = spec(&[("io.cdirun.gpu.sharing", "time-slice")], &[]);
        assert_eq!(
            devices(&node.create("a", &mut a).unwrap()),
            ["nvidia.com/gpu=0"]
        );
        // GPU 0 is shared once, the UUID GPU not at all: still GPU 0.
        let mut b = spec(&[("io.cdirun.gpu.sharing", "time-slice")], &[]);
        assert_eq!(
            devices(&node.create("b", &mut b).unwrap()),
            ["nvidia.com/gpu=0"]
        );
        // Exclusive requests may use it.
        let mut c = spec(&[("io.cdirun.gpu.count", "1")], &[]);
        assert_eq!(
            devices(&node.create("c", &mut c).unwrap()),
            ["nvidia.com/gpu=GPU-aaaa-1111"]
        );
    }
}

//! What a container asks for, read from its config.json and cdirun's config without touching
//! anything else: CDI devices from annotations and from the vendor visible-devices variables,
//! the `io.cdirun.gpu.*` / `io.cdirun.mps.*` GPU request and the `io.cdirun.distributed.*` env.

use libcontainer::oci_spec::runtime::{Capability, Spec};

use crate::cdi::name;
use crate::config::{CdiConfig, Config, EnvWhenUnprivileged};

/// `NVIDIA_VISIBLE_DEVICES`: devices of the NVIDIA kind.
pub const NVIDIA_VISIBLE_DEVICES: &str = "NVIDIA_VISIBLE_DEVICES";
/// `AMD_VISIBLE_DEVICES`: devices of the AMD kind.
pub const AMD_VISIBLE_DEVICES: &str = "AMD_VISIBLE_DEVICES";
/// The CDI kind an unqualified NVIDIA entry belongs to.
pub const NVIDIA_KIND: &str = "nvidia.com/gpu";
/// The CDI kind an unqualified AMD entry belongs to.
pub const AMD_KIND: &str = "amd.com/gpu";

/// Vendor variables and the kind their unqualified entries mean, in the order they are read.
pub const VENDOR_ENV: [(&str, &str); 2] = [
    (NVIDIA_VISIBLE_DEVICES, NVIDIA_KIND),
    (AMD_VISIBLE_DEVICES, AMD_KIND),
];

/// Longest annotation key after the prefix (a Kubernetes name segment).
pub const MAX_ANNOTATION_KEY: usize = 63;

/// The CDI kind of Intel GPUs.
pub const INTEL_KIND: &str = "intel.cdi.k8s.io/gpu";

/// `io.cdirun.gpu.*`: the GPU request.
pub const GPU_PREFIX: &str = "io.cdirun.gpu.";
pub const GPU_COUNT: &str = "io.cdirun.gpu.count";
pub const GPU_VENDOR: &str = "io.cdirun.gpu.vendor";
pub const GPU_MODEL: &str = "io.cdirun.gpu.model";
pub const GPU_SHARING: &str = "io.cdirun.gpu.sharing";
/// Written by the GPU edit: the devices it allocated, so a later pass recognises its own env.
pub const GPU_ALLOCATED: &str = "io.cdirun.gpu.allocated";
/// `io.cdirun.mps.*`: per-container MPS limits.
pub const MPS_PREFIX: &str = "io.cdirun.mps.";
pub const MPS_THREAD_PERCENTAGE: &str = "io.cdirun.mps.active-thread-percentage";
pub const MPS_MEM_LIMIT: &str = "io.cdirun.mps.pinned-device-mem-limit";
/// `io.cdirun.distributed.*`: the distributed-training env.
pub const DIST_PREFIX: &str = "io.cdirun.distributed.";
pub const DIST_BACKEND: &str = "io.cdirun.distributed.backend";
pub const DIST_MASTER_ADDR: &str = "io.cdirun.distributed.master-addr";
pub const DIST_MASTER_PORT: &str = "io.cdirun.distributed.master-port";
pub const DIST_WORLD_SIZE: &str = "io.cdirun.distributed.world-size";
pub const DIST_RANK: &str = "io.cdirun.distributed.rank";
pub const DIST_LOCAL_RANK: &str = "io.cdirun.distributed.local-rank";

const GPU_KEYS: [&str; 5] = [GPU_COUNT, GPU_VENDOR, GPU_MODEL, GPU_SHARING, GPU_ALLOCATED];
const MPS_KEYS: [&str; 2] = [MPS_THREAD_PERCENTAGE, MPS_MEM_LIMIT];
const DIST_KEYS: [&str; 6] = [
    DIST_BACKEND,
    DIST_MASTER_ADDR,
    DIST_MASTER_PORT,
    DIST_WORLD_SIZE,
    DIST_RANK,
    DIST_LOCAL_RANK,
];
/// Backends the distributed annotations accept.
pub const BACKENDS: [&str; 3] = ["nccl", "gloo", "mpi"];
/// The default rendezvous port (PyTorch's).
pub const DEFAULT_MASTER_PORT: u16 = 29500;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error(
        "unknown annotation {key:?}: cdirun knows {}",
        .known.join(", ")
    )]
    UnknownKey {
        key: String,
        known: Vec<&'static str>,
    },
    #[error("invalid annotation {key}={value:?}: {why}")]
    Value {
        key: &'static str,
        value: String,
        why: String,
    },
    #[error(
        "GPU vendor {vendor:?} (annotation {GPU_VENDOR} or [gpu] default-vendor) is not supported on Linux: use nvidia, amd or intel"
    )]
    Vendor { vendor: String },
    #[error(
        "invalid CDI annotation key {key:?}: the part after {prefix:?} must be 1 to {MAX_ANNOTATION_KEY} characters of letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
    )]
    AnnotationKey { key: String, prefix: String },
    #[error("invalid CDI annotation {key:?}: {source}")]
    AnnotationValue {
        key: String,
        source: name::NameError,
    },
    #[error(
        "{var}={value:?} asks for devices, but the container has no CAP_SYS_ADMIN in its bounding set (process.capabilities.bounding) and [cdi] {ENV_WHEN_UNPRIVILEGED} = \"refuse\": allocate devices through a CDI annotation or io.cdirun.gpu.count, or unset {var}"
    )]
    EnvRefused { var: &'static str, value: String },
    #[error("invalid {var} entry {entry:?}: {source}")]
    EnvValue {
        var: &'static str,
        entry: String,
        source: name::NameError,
    },
}

/// Where a device request came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Annotation(String),
    Env(&'static str),
}

/// One requested CDI device, as asked: resolution against the specs happens in the CDI edit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Device {
    /// `vendor/class=name`.
    Qualified(String),
    /// Every device of a kind (`NVIDIA_VISIBLE_DEVICES=all`).
    All { kind: &'static str },
    /// A device of a kind by name, index or UUID (`NVIDIA_VISIBLE_DEVICES=0,GPU-…`).
    InKind {
        kind: &'static str,
        selector: String,
    },
}

impl Device {
    /// The request written as a qualified name.
    pub fn display_name(&self) -> String {
        match self {
            Device::Qualified(q) => q.clone(),
            Device::All { kind } => format!("{kind}=all"),
            Device::InKind { kind, selector } => format!("{kind}={selector}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requested {
    pub device: Device,
    pub source: Source,
}

/// Everything a container asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// CDI devices in request order (annotations by key, then NVIDIA, then AMD), without repeats.
    pub cdi: Vec<Requested>,
    /// The vendor visible-devices variables the client set, in [`VENDOR_ENV`] order, with the
    /// value that counts (the last definition).
    pub env: Vec<(&'static str, String)>,
    /// What those variables are, under [`precedence`].
    pub env_role: EnvRole,
}

/// What the vendor visible-devices variables are for one container, under [`precedence`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum EnvRole {
    /// Nothing explicit is asked for and env requests are accepted: the variables name devices.
    #[default]
    Request,
    /// An explicit allocation is present (`by` names it): the variables request nothing, and
    /// each one the client set is rewritten to the devices of its vendor that are allocated.
    Overridden { by: String },
    /// Nothing explicit is asked for and env requests are not accepted: the container gets no
    /// device from the variables, and each one that asks for devices is set to `void`.
    Ignored { why: IgnoredWhy },
}

/// Why env requests are not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IgnoredWhy {
    /// `[cdi] accept-env = false`.
    AcceptEnvOff,
    /// No CAP_SYS_ADMIN in the bounding set and `[cdi] env-when-unprivileged = "ignore"`.
    Unprivileged,
}

/// The value a vendor variable gets when it must not ask for anything (NVIDIA's own choice:
/// its hook and `nvidia-ctk`'s CDI specs read `void` as "no GPU").
pub const VOID: &str = "void";

/// What [`precedence`] looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrecedenceInputs<'a> {
    /// The first explicit allocation request, named for messages: a CDI annotation, an
    /// `io.cdirun.gpu.*` / `io.cdirun.mps.*` request, or an earlier pass's allocation marker.
    pub explicit: Option<String>,
    /// The first vendor variable whose value asks for devices, and that value.
    pub asking: Option<(&'static str, &'a str)>,
    /// CAP_SYS_ADMIN is in `process.capabilities.bounding`.
    pub privileged: bool,
}

/// The precedence rule for device requests, the one place it is decided:
/// 1. explicit allocations win: when a CDI annotation (what device plugins and DRA drivers
///    write) or an `io.cdirun.gpu.*` request is present, the vendor visible-devices variables
///    are not requests; they are rewritten to the allocation;
/// 2. otherwise the variables are requests, unless `[cdi] accept-env = false`;
/// 3. a container without CAP_SYS_ADMIN in its bounding set gets what
///    `[cdi] env-when-unprivileged` says for them: accept, ignore (no device) or refuse (an error).
pub fn precedence(inputs: &PrecedenceInputs, cdi: &CdiConfig) -> Result<EnvRole, RequestError> {
    if let Some(by) = &inputs.explicit {
        return Ok(EnvRole::Overridden { by: by.clone() });
    }
    let Some((var, value)) = inputs.asking else {
        return Ok(EnvRole::Request);
    };
    if !cdi.accept_env {
        return Ok(EnvRole::Ignored {
            why: IgnoredWhy::AcceptEnvOff,
        });
    }
    if inputs.privileged {
        return Ok(EnvRole::Request);
    }
    match cdi.env_when_unprivileged {
        EnvWhenUnprivileged::Accept => Ok(EnvRole::Request),
        EnvWhenUnprivileged::Ignore => Ok(EnvRole::Ignored {
            why: IgnoredWhy::Unprivileged,
        }),
        EnvWhenUnprivileged::Refuse => Err(RequestError::EnvRefused {
            var,
            value: value.to_owned(),
        }),
    }
}

/// Whether a visible-devices value asks for any device (`void`, `none` and empty do not).
pub fn asks_for_devices(value: &str) -> bool {
    !matches!(value.trim(), "" | "none" | VOID)
}

/// Whether CAP_SYS_ADMIN is in the container's bounding set (absent capabilities: no).
pub fn privileged(spec: &Spec) -> bool {
    spec.process()
        .as_ref()
        .and_then(|p| p.capabilities().as_ref())
        .and_then(|c| c.bounding().as_ref())
        .is_some_and(|bounding| bounding.contains(&Capability::SysAdmin))
}

impl Request {
    /// The variables to set after the devices (`allocated`, qualified names) are in: for
    /// [`EnvRole::Overridden`], each variable the client set gets its vendor's allocated
    /// devices (or `void`); for [`EnvRole::Ignored`], each one that asks gets `void`.
    pub fn env_rewrites(&self, allocated: &[String]) -> Vec<(&'static str, String)> {
        match &self.env_role {
            EnvRole::Request => Vec::new(),
            EnvRole::Overridden { .. } => self
                .env
                .iter()
                .map(|(var, _)| (*var, visible_value(var, allocated)))
                .collect(),
            EnvRole::Ignored { .. } => self
                .env
                .iter()
                .filter(|(_, value)| asks_for_devices(value))
                .map(|(var, _)| (*var, VOID.to_owned()))
                .collect(),
        }
    }

    /// One line per variable the rule overrode or ignored, saying why (for `explain` and logs).
    pub fn env_notes(&self) -> Vec<String> {
        match &self.env_role {
            EnvRole::Request => Vec::new(),
            EnvRole::Overridden { by } => self
                .env
                .iter()
                .map(|(var, value)| {
                    format!(
                        "{var}={value:?} is not a device request: {by} is an explicit allocation, which wins; {var} is rewritten to the allocated devices"
                    )
                })
                .collect(),
            EnvRole::Ignored { why } => {
                let why = match why {
                    IgnoredWhy::AcceptEnvOff => "[cdi] accept-env = false".to_owned(),
                    IgnoredWhy::Unprivileged => format!(
                        "the container has no CAP_SYS_ADMIN in its bounding set and [cdi] {ENV_WHEN_UNPRIVILEGED} = \"ignore\""
                    ),
                };
                self.env
                    .iter()
                    .filter(|(_, value)| asks_for_devices(value))
                    .map(|(var, value)| {
                        format!(
                            "{var}={value:?} is ignored ({why}): no device is injected for it and {var} is set to {VOID}"
                        )
                    })
                    .collect()
            }
        }
    }
}

/// The config key named in messages about unprivileged env requests.
pub const ENV_WHEN_UNPRIVILEGED: &str = "env-when-unprivileged";

/// The value of vendor variable `var` for `allocated` devices: those of its vendor, by device
/// name for its own kind (`nvidia.com/gpu=2` -> `2`) and qualified for the vendor's other kinds;
/// `void` when there are none.
pub fn visible_value(var: &str, allocated: &[String]) -> String {
    let Some((_, kind)) = VENDOR_ENV.iter().find(|(v, _)| *v == var) else {
        return VOID.to_owned();
    };
    let vendor = kind.split_once('/').map_or(*kind, |(vendor, _)| vendor);
    let own = format!("{kind}=");
    let names: Vec<&str> = allocated
        .iter()
        .filter(|q| q.split_once('/').is_some_and(|(v, _)| v == vendor))
        .map(|q| q.strip_prefix(&own).unwrap_or(q))
        .collect();
    if names.is_empty() {
        VOID.to_owned()
    } else {
        names.join(",")
    }
}

fn push(cdi: &mut Vec<Requested>, requested: Requested) {
    let name = requested.device.display_name();
    if !cdi.iter().any(|r| r.device.display_name() == name) {
        cdi.push(requested);
    }
}

/// Reads the request from `spec` under `config`, with [`precedence`] deciding what the vendor
/// visible-devices variables are.
pub fn from_spec(spec: &Spec, config: &Config) -> Result<Request, RequestError> {
    let mut request = Request::default();
    let mut first_cdi_key = None;
    if let Some(annotations) = spec.annotations() {
        let mut keys: Vec<&String> = annotations.keys().collect();
        keys.sort();
        for key in keys {
            let Some(prefix) = config
                .cdi
                .annotation_prefixes
                .iter()
                .find(|prefix| key.starts_with(prefix.as_str()))
            else {
                continue;
            };
            check_annotation_key(key, prefix)?;
            // One malformed name rejects the whole annotation: nothing from it is injected.
            // Names are not trimmed, as in the reference library: ", v.io/c=x" has the vendor
            // " v.io", which is malformed. (NVIDIA_VISIBLE_DEVICES tolerates spaces: the NVIDIA
            // toolkit does.)
            let names = annotations[key]
                .split(',')
                .map(|entry| {
                    name::parse_qualified(entry).map_err(|source| RequestError::AnnotationValue {
                        key: key.clone(),
                        source,
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            first_cdi_key.get_or_insert(key.as_str());
            for q in names {
                push(
                    &mut request.cdi,
                    Requested {
                        device: Device::Qualified(q.to_string()),
                        source: Source::Annotation(key.clone()),
                    },
                );
            }
        }
    }
    let env = spec
        .process()
        .as_ref()
        .and_then(|p| p.env().as_ref())
        .map(Vec::as_slice)
        .unwrap_or_default();
    request.env = VENDOR_ENV
        .iter()
        .filter_map(|(var, _)| env_value(env, var).map(|value| (*var, value.to_owned())))
        .collect();
    let explicit = first_cdi_key
        .map(|key| format!("CDI annotation {key}"))
        .or_else(|| gpu_key(spec).map(|key| format!("annotation {key}")))
        .or_else(|| {
            // NVIDIA_VISIBLE_DEVICES written by the GPU edit on an earlier pass over this
            // bundle describes that allocation; it is not a request.
            annotation(spec, GPU_ALLOCATED)
                .map(|_| format!("annotation {GPU_ALLOCATED} (an earlier allocation)"))
        });
    let inputs = PrecedenceInputs {
        explicit,
        asking: request
            .env
            .iter()
            .find(|(_, value)| asks_for_devices(value))
            .map(|(var, value)| (*var, value.as_str())),
        privileged: privileged(spec),
    };
    request.env_role = precedence(&inputs, &config.cdi)?;
    if request.env_role == EnvRole::Request {
        for (var, kind) in VENDOR_ENV {
            if let Some(value) = env_value(env, var) {
                for device in parse_visible(var, kind, value)? {
                    push(
                        &mut request.cdi,
                        Requested {
                            device,
                            source: Source::Env(var),
                        },
                    );
                }
            }
        }
    }
    Ok(request)
}

/// A GPU vendor cdirun can allocate for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vendor {
    Nvidia,
    Amd,
    Intel,
}

impl Vendor {
    /// `nvidia` | `amd` | `intel`; any other vendor is refused as not supported on Linux.
    pub fn parse(name: &str) -> Result<Self, RequestError> {
        match name.trim().to_ascii_lowercase().as_str() {
            "nvidia" => Ok(Vendor::Nvidia),
            "amd" => Ok(Vendor::Amd),
            "intel" => Ok(Vendor::Intel),
            _ => Err(RequestError::Vendor {
                vendor: name.to_owned(),
            }),
        }
    }

    /// The CDI kind whose devices are this vendor's GPUs.
    pub fn kind(self) -> &'static str {
        match self {
            Vendor::Nvidia => NVIDIA_KIND,
            Vendor::Amd => AMD_KIND,
            Vendor::Intel => INTEL_KIND,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Vendor::Nvidia => "nvidia",
            Vendor::Amd => "amd",
            Vendor::Intel => "intel",
        }
    }
}

/// How many GPUs a request wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    N(usize),
    All,
}

/// Whether the GPUs are the container's alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sharing {
    Exclusive,
    Mps,
    TimeSlice,
    /// A plain CDI or env request's hold in the GPU ledger: shared with the shared modes and
    /// other plain requests, never with an exclusive holder. No annotation asks for it.
    Plain,
}

impl Sharing {
    pub fn as_str(self) -> &'static str {
        match self {
            Sharing::Exclusive => "exclusive",
            Sharing::Mps => "mps",
            Sharing::TimeSlice => "time-slice",
            Sharing::Plain => "plain",
        }
    }
}

/// The `io.cdirun.gpu.*` and `io.cdirun.mps.*` annotations, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuRequest {
    /// `None`: the GPUs named through CDI, or one when none is.
    pub count: Option<Count>,
    pub vendor: Vendor,
    pub model: Option<String>,
    pub sharing: Sharing,
    /// CUDA_MPS_ACTIVE_THREAD_PERCENTAGE, as written (a number in (0, 100]).
    pub thread_percentage: Option<String>,
    /// CUDA_MPS_PINNED_DEVICE_MEM_LIMIT in MPS's own syntax (`0=1G,1=512M`).
    pub mem_limit: Option<String>,
}

/// The distributed-training env the `io.cdirun.distributed.*` annotations ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Distributed {
    pub backend: String,
    pub master_addr: String,
    pub master_port: u16,
    pub world_size: u32,
    pub rank: u32,
    pub local_rank: u32,
}

fn annotations(spec: &Spec) -> Vec<(&str, &str)> {
    let mut pairs: Vec<(&str, &str)> = spec
        .annotations()
        .iter()
        .flatten()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    pairs.sort();
    pairs
}

/// Refuses a key under one of cdirun's prefixes that cdirun does not know (a typo would
/// otherwise be ignored silently).
fn check_keys(spec: &Spec) -> Result<(), RequestError> {
    for (key, _) in annotations(spec) {
        for (prefix, known) in [
            (GPU_PREFIX, &GPU_KEYS[..]),
            (MPS_PREFIX, &MPS_KEYS[..]),
            (DIST_PREFIX, &DIST_KEYS[..]),
        ] {
            if key.starts_with(prefix) && !known.contains(&key) {
                return Err(RequestError::UnknownKey {
                    key: key.to_owned(),
                    known: known
                        .iter()
                        .copied()
                        .filter(|k| *k != GPU_ALLOCATED)
                        .collect(),
                });
            }
        }
    }
    Ok(())
}

fn annotation<'a>(spec: &'a Spec, key: &str) -> Option<&'a str> {
    spec.annotations()
        .as_ref()
        .and_then(|a| a.get(key))
        .map(|v| v.trim())
}

fn bad(key: &'static str, value: &str, why: impl Into<String>) -> RequestError {
    RequestError::Value {
        key,
        value: value.to_owned(),
        why: why.into(),
    }
}

/// The first (by name) `io.cdirun.gpu.*` or `io.cdirun.mps.*` annotation that asks for GPUs;
/// the allocation marker cdirun writes itself asks for nothing.
fn gpu_key(spec: &Spec) -> Option<&str> {
    annotations(spec)
        .into_iter()
        .map(|(k, _)| k)
        .find(|k| (k.starts_with(GPU_PREFIX) && *k != GPU_ALLOCATED) || k.starts_with(MPS_PREFIX))
}

/// The GPU request, `None` when no `io.cdirun.gpu.*` or `io.cdirun.mps.*` annotation is set.
pub fn gpu_from_spec(spec: &Spec, config: &Config) -> Result<Option<GpuRequest>, RequestError> {
    check_keys(spec)?;
    if gpu_key(spec).is_none() {
        return Ok(None);
    }
    let count = match annotation(spec, GPU_COUNT) {
        None => None,
        Some("all") => Some(Count::All),
        Some(text) => match text.parse::<usize>() {
            Ok(n) if n > 0 => Some(Count::N(n)),
            _ => return Err(bad(GPU_COUNT, text, "use a positive number or `all`")),
        },
    };
    let vendor = Vendor::parse(annotation(spec, GPU_VENDOR).unwrap_or(&config.gpu.default_vendor))?;
    let model = annotation(spec, GPU_MODEL).map(str::to_owned);
    if model.as_deref() == Some("") {
        return Err(bad(
            GPU_MODEL,
            "",
            "name a model, or leave the annotation out",
        ));
    }
    let sharing = match annotation(spec, GPU_SHARING) {
        None | Some("exclusive") => Sharing::Exclusive,
        Some("mps") => Sharing::Mps,
        Some("time-slice") => Sharing::TimeSlice,
        Some(other) => return Err(bad(GPU_SHARING, other, "use exclusive, mps or time-slice")),
    };
    if sharing != Sharing::Exclusive && vendor != Vendor::Nvidia {
        return Err(bad(
            GPU_SHARING,
            sharing.as_str(),
            format!(
                "{} sharing is NVIDIA-only; vendor is {}",
                sharing.as_str(),
                vendor.name()
            ),
        ));
    }
    let thread_percentage = annotation(spec, MPS_THREAD_PERCENTAGE).map(str::to_owned);
    if let Some(text) = &thread_percentage {
        match text.parse::<f64>() {
            Ok(p) if p > 0.0 && p <= 100.0 => {}
            _ => {
                return Err(bad(
                    MPS_THREAD_PERCENTAGE,
                    text,
                    "use a number above 0 and at most 100",
                ));
            }
        }
    }
    let mem_limit = annotation(spec, MPS_MEM_LIMIT).map(str::to_owned);
    if let Some(text) = &mem_limit {
        check_mem_limit(text).map_err(|why| bad(MPS_MEM_LIMIT, text, why))?;
    }
    if sharing != Sharing::Mps {
        for (key, value) in [
            (MPS_THREAD_PERCENTAGE, &thread_percentage),
            (MPS_MEM_LIMIT, &mem_limit),
        ] {
            if let Some(value) = value {
                return Err(bad(key, value, format!("needs {GPU_SHARING}=mps")));
            }
        }
    }
    Ok(Some(GpuRequest {
        count,
        vendor,
        model,
        sharing,
        thread_percentage,
        mem_limit,
    }))
}

/// MPS's pinned memory syntax: comma-separated `<device index>=<amount>[K|M|G]`.
fn check_mem_limit(text: &str) -> Result<(), String> {
    for entry in text.split(',') {
        let (device, amount) = entry
            .trim()
            .split_once('=')
            .ok_or_else(|| format!("entry {entry:?} is not <device index>=<amount>, e.g. 0=1G"))?;
        if device.parse::<u32>().is_err() {
            return Err(format!("device {device:?} in {entry:?} is not an index"));
        }
        let digits = amount.trim_end_matches(['K', 'M', 'G', 'k', 'm', 'g']);
        let suffix = amount.len() - digits.len();
        if digits.is_empty() || suffix > 1 || digits.parse::<u64>().map_or(true, |n| n == 0) {
            return Err(format!(
                "amount {amount:?} in {entry:?} is not a positive number with an optional K, M or G"
            ));
        }
    }
    Ok(())
}

/// The distributed env, `None` when no `io.cdirun.distributed.*` annotation is set.
pub fn distributed_from_spec(spec: &Spec) -> Result<Option<Distributed>, RequestError> {
    check_keys(spec)?;
    if !annotations(spec)
        .iter()
        .any(|(k, _)| k.starts_with(DIST_PREFIX))
    {
        return Ok(None);
    }
    let number = |key: &'static str, default: u32| -> Result<u32, RequestError> {
        match annotation(spec, key) {
            None => Ok(default),
            Some(text) => text
                .parse::<u32>()
                .map_err(|_| bad(key, text, "use a whole number")),
        }
    };
    let backend = annotation(spec, DIST_BACKEND).unwrap_or("nccl").to_owned();
    if !BACKENDS.contains(&backend.as_str()) {
        return Err(bad(
            DIST_BACKEND,
            &backend,
            format!("use one of {}", BACKENDS.join(", ")),
        ));
    }
    let master_addr = match annotation(spec, DIST_MASTER_ADDR) {
        Some("") => return Err(bad(DIST_MASTER_ADDR, "", "name a host or address")),
        Some(addr) => addr.to_owned(),
        None => spec
            .hostname()
            .clone()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".to_owned()),
    };
    let master_port = match annotation(spec, DIST_MASTER_PORT) {
        None => DEFAULT_MASTER_PORT,
        Some(text) => match text.parse::<u16>() {
            Ok(port) if port > 0 => port,
            _ => return Err(bad(DIST_MASTER_PORT, text, "use a port from 1 to 65535")),
        },
    };
    let world_size = number(DIST_WORLD_SIZE, 1)?;
    if world_size == 0 {
        return Err(bad(DIST_WORLD_SIZE, "0", "use at least 1"));
    }
    let rank = number(DIST_RANK, 0)?;
    if rank >= world_size {
        return Err(bad(
            DIST_RANK,
            &rank.to_string(),
            format!("must be below the world size {world_size}"),
        ));
    }
    let local_rank = number(DIST_LOCAL_RANK, 0)?;
    if local_rank >= world_size {
        return Err(bad(
            DIST_LOCAL_RANK,
            &local_rank.to_string(),
            format!("must be below the world size {world_size}"),
        ));
    }
    Ok(Some(Distributed {
        backend,
        master_addr,
        master_port,
        world_size,
        rank,
        local_rank,
    }))
}

fn check_annotation_key(key: &str, prefix: &str) -> Result<(), RequestError> {
    let rest = &key[prefix.len()..];
    let bytes = rest.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= MAX_ANNOTATION_KEY
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(RequestError::AnnotationKey {
            key: key.to_owned(),
            prefix: prefix.to_owned(),
        })
    }
}

/// The value of `var` in an OCI env list; the last definition wins, as in execve's consumers.
fn env_value<'a>(env: &'a [String], var: &str) -> Option<&'a str> {
    env.iter().rev().find_map(|entry| {
        entry
            .split_once('=')
            .filter(|(key, _)| *key == var)
            .map(|(_, value)| value)
    })
}

/// `all` | `none` | `void` | empty | comma-separated indices, UUIDs, names or qualified names.
fn parse_visible(
    var: &'static str,
    kind: &'static str,
    value: &str,
) -> Result<Vec<Device>, RequestError> {
    let value = value.trim();
    match value {
        // `none` still means "driver libraries but no device" to the NVIDIA hook; with CDI there
        // is nothing to inject for it, as for `void` and an empty value.
        "" | "none" | "void" => return Ok(Vec::new()),
        "all" => return Ok(vec![Device::All { kind }]),
        _ => {}
    }
    let mut devices = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        if entry.contains('=') {
            let q = name::parse_qualified(entry).map_err(|source| RequestError::EnvValue {
                var,
                entry: entry.to_owned(),
                source,
            })?;
            devices.push(Device::Qualified(q.to_string()));
        } else {
            name::check_device_name(entry).map_err(|why| RequestError::EnvValue {
                var,
                entry: entry.to_owned(),
                source: name::NameError::Device {
                    name: format!("{kind}={entry}"),
                    part: entry.to_owned(),
                    why,
                },
            })?;
            devices.push(Device::InKind {
                kind,
                selector: entry.to_owned(),
            });
        }
    }
    Ok(devices)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    type Pairs<'a> = &'a [(&'a str, &'a str)];

    fn spec(annotations: Pairs, env: &[&str]) -> Spec {
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
        spec
    }

    fn names(request: &Request) -> Vec<String> {
        request
            .cdi
            .iter()
            .map(|r| r.device.display_name())
            .collect()
    }

    #[test]
    fn request_table() {
        let cases: [(&str, Pairs, &[&str], &[&str]); 12] = [
            ("nothing", &[], &["PATH=/bin"], &[]),
            (
                "annotations sorted by key, deduplicated",
                &[
                    ("cdi.k8s.io/b", "vendor.com/gpu=1"),
                    ("cdi.k8s.io/a", "vendor.com/gpu=0,vendor.com/gpu=1"),
                    ("other.io/x", "not a device"),
                ],
                &[],
                &["vendor.com/gpu=0", "vendor.com/gpu=1"],
            ),
            (
                "nvidia all",
                &[],
                &["NVIDIA_VISIBLE_DEVICES=all"],
                &["nvidia.com/gpu=all"],
            ),
            ("nvidia none", &[], &["NVIDIA_VISIBLE_DEVICES=none"], &[]),
            ("nvidia void", &[], &["NVIDIA_VISIBLE_DEVICES=void"], &[]),
            ("nvidia empty", &[], &["NVIDIA_VISIBLE_DEVICES="], &[]),
            (
                "indices and uuids",
                &[],
                &["NVIDIA_VISIBLE_DEVICES=0, 2,GPU-8f6e"],
                &[
                    "nvidia.com/gpu=0",
                    "nvidia.com/gpu=2",
                    "nvidia.com/gpu=GPU-8f6e",
                ],
            ),
            (
                "qualified in env",
                &[],
                &["NVIDIA_VISIBLE_DEVICES=nvidia.com/mig=0:1"],
                &["nvidia.com/mig=0:1"],
            ),
            (
                "last definition wins",
                &[],
                &["NVIDIA_VISIBLE_DEVICES=0", "NVIDIA_VISIBLE_DEVICES=1"],
                &["nvidia.com/gpu=1"],
            ),
            (
                "amd",
                &[],
                &["AMD_VISIBLE_DEVICES=0,1"],
                &["amd.com/gpu=0", "amd.com/gpu=1"],
            ),
            (
                "NVIDIA before AMD, no repeats",
                &[],
                &["AMD_VISIBLE_DEVICES=0", "NVIDIA_VISIBLE_DEVICES=0,1,0"],
                &["nvidia.com/gpu=0", "nvidia.com/gpu=1", "amd.com/gpu=0"],
            ),
            (
                "intel by annotation",
                &[("cdi.k8s.io/gpu", "intel.cdi.k8s.io/gpu=card0")],
                &[],
                &["intel.cdi.k8s.io/gpu=card0"],
            ),
        ];
        let config = Config::default();
        for (name, annotations, env, want) in cases {
            let got = from_spec(&spec(annotations, env), &config)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(names(&got), want, "{name}");
        }
    }

    #[test]
    fn sources_are_recorded() {
        let config = Config::default();
        let got = from_spec(&spec(&[("cdi.k8s.io/k", "v.com/c=a")], &[]), &config).unwrap();
        assert_eq!(got.cdi[0].source, Source::Annotation("cdi.k8s.io/k".into()));
        let got = from_spec(&spec(&[], &["AMD_VISIBLE_DEVICES=1"]), &config).unwrap();
        assert_eq!(got.cdi[0].source, Source::Env(AMD_VISIBLE_DEVICES));
    }

    /// How a row of [`precedence_table`] sets the config.
    #[derive(Debug, Clone, Copy)]
    enum Knob {
        Default,
        Ignore,
        Refuse,
        AcceptEnvOff,
    }

    fn privileged_spec(mut spec: Spec) -> Spec {
        let mut process = spec.process().clone().unwrap();
        let mut caps = process.capabilities().clone().unwrap_or_default();
        let mut bounding = caps.bounding().clone().unwrap_or_default();
        bounding.insert(Capability::SysAdmin);
        caps.set_bounding(Some(bounding));
        process.set_capabilities(Some(caps));
        spec.set_process(Some(process));
        spec
    }

    /// The precedence rule, row by row: which devices a container asks for and what its vendor
    /// visible-devices variables are, for every mix of CDI annotations, `io.cdirun.gpu.*`
    /// requests, env, privilege and config.
    #[test]
    fn precedence_table() {
        let overridden = |by: &str| EnvRole::Overridden { by: by.into() };
        let unprivileged = EnvRole::Ignored {
            why: IgnoredWhy::Unprivileged,
        };
        let env_off = EnvRole::Ignored {
            why: IgnoredWhy::AcceptEnvOff,
        };
        let cdi_gpu = "CDI annotation cdi.k8s.io/gpu";
        type Want<'a> = Result<(&'a [&'a str], EnvRole), &'a str>;
        type Row<'a> = (&'a str, Pairs<'a>, &'a [&'a str], bool, Knob, Want<'a>);
        let rows: Vec<Row> = vec![
            (
                "nothing",
                &[],
                &[],
                false,
                Knob::Default,
                Ok((&[], EnvRole::Request)),
            ),
            (
                "env only, unprivileged, default: accepted (docker/podman -e)",
                &[],
                &["NVIDIA_VISIBLE_DEVICES=0"],
                false,
                Knob::Default,
                Ok((&["nvidia.com/gpu=0"], EnvRole::Request)),
            ),
            (
                "env only, unprivileged, ignore: no device",
                &[],
                &["NVIDIA_VISIBLE_DEVICES=all"],
                false,
                Knob::Ignore,
                Ok((&[], unprivileged.clone())),
            ),
            (
                "env only, unprivileged, refuse: an error naming the variable and the knob",
                &[],
                &["NVIDIA_VISIBLE_DEVICES=0"],
                false,
                Knob::Refuse,
                Err(
                    "NVIDIA_VISIBLE_DEVICES=\"0\" asks for devices, but the container has no CAP_SYS_ADMIN in its bounding set (process.capabilities.bounding) and [cdi] env-when-unprivileged = \"refuse\"",
                ),
            ),
            (
                "refuse names the first variable that asks",
                &[],
                &["NVIDIA_VISIBLE_DEVICES=void", "AMD_VISIBLE_DEVICES=1"],
                false,
                Knob::Refuse,
                Err("AMD_VISIBLE_DEVICES=\"1\" asks for devices"),
            ),
            (
                "env only, privileged, refuse: accepted",
                &[],
                &["NVIDIA_VISIBLE_DEVICES=0"],
                true,
                Knob::Refuse,
                Ok((&["nvidia.com/gpu=0"], EnvRole::Request)),
            ),
            (
                "env only, privileged, ignore: accepted",
                &[],
                &["AMD_VISIBLE_DEVICES=1"],
                true,
                Knob::Ignore,
                Ok((&["amd.com/gpu=1"], EnvRole::Request)),
            ),
            (
                "void, none and empty ask for nothing, so refuse has nothing to refuse",
                &[],
                &["NVIDIA_VISIBLE_DEVICES=void", "AMD_VISIBLE_DEVICES= none "],
                false,
                Knob::Refuse,
                Ok((&[], EnvRole::Request)),
            ),
            (
                "accept-env off: env never requests",
                &[],
                &["NVIDIA_VISIBLE_DEVICES=0"],
                true,
                Knob::AcceptEnvOff,
                Ok((&[], env_off)),
            ),
            (
                "annotation only",
                &[("cdi.k8s.io/gpu", "nvidia.com/gpu=1")],
                &[],
                false,
                Knob::Default,
                Ok((&["nvidia.com/gpu=1"], overridden(cdi_gpu))),
            ),
            (
                "annotation wins over env all (every CUDA image)",
                &[("cdi.k8s.io/gpu", "nvidia.com/gpu=1")],
                &["NVIDIA_VISIBLE_DEVICES=all"],
                true,
                Knob::Default,
                Ok((&["nvidia.com/gpu=1"], overridden(cdi_gpu))),
            ),
            (
                "annotation wins over env naming another GPU",
                &[("cdi.k8s.io/gpu", "nvidia.com/gpu=1")],
                &["NVIDIA_VISIBLE_DEVICES=0", "AMD_VISIBLE_DEVICES=0"],
                false,
                Knob::Default,
                Ok((&["nvidia.com/gpu=1"], overridden(cdi_gpu))),
            ),
            (
                "an annotation of another kind is an explicit allocation too",
                &[("cdi.k8s.io/fpga", "vendor.com/fpga=a")],
                &["NVIDIA_VISIBLE_DEVICES=all"],
                false,
                Knob::Default,
                Ok((
                    &["vendor.com/fpga=a"],
                    overridden("CDI annotation cdi.k8s.io/fpga"),
                )),
            ),
            (
                "explicit wins before refuse is considered",
                &[("cdi.k8s.io/gpu", "nvidia.com/gpu=1")],
                &["NVIDIA_VISIBLE_DEVICES=all"],
                false,
                Knob::Refuse,
                Ok((&["nvidia.com/gpu=1"], overridden(cdi_gpu))),
            ),
            (
                "a count wins over env all",
                &[(GPU_COUNT, "1")],
                &["NVIDIA_VISIBLE_DEVICES=all"],
                false,
                Knob::Refuse,
                Ok((&[], overridden("annotation io.cdirun.gpu.count"))),
            ),
            (
                "any io.cdirun.gpu.* request is explicit",
                &[(GPU_SHARING, "mps")],
                &["NVIDIA_VISIBLE_DEVICES=0"],
                false,
                Knob::Default,
                Ok((&[], overridden("annotation io.cdirun.gpu.sharing"))),
            ),
            (
                "an io.cdirun.mps.* request is explicit",
                &[(MPS_THREAD_PERCENTAGE, "50")],
                &["NVIDIA_VISIBLE_DEVICES=0"],
                false,
                Knob::Default,
                Ok((
                    &[],
                    overridden("annotation io.cdirun.mps.active-thread-percentage"),
                )),
            ),
            (
                "CDI annotations are named before io.cdirun.gpu.* keys",
                &[(GPU_COUNT, "1"), ("cdi.k8s.io/z", "amd.com/gpu=0")],
                &["NVIDIA_VISIBLE_DEVICES=all"],
                false,
                Knob::Default,
                Ok((
                    &["amd.com/gpu=0"],
                    overridden("CDI annotation cdi.k8s.io/z"),
                )),
            ),
            (
                "an earlier pass's allocation marker: its env is no request",
                &[(GPU_ALLOCATED, "nvidia.com/gpu=2")],
                &["NVIDIA_VISIBLE_DEVICES=2"],
                false,
                Knob::Default,
                Ok((
                    &[],
                    overridden("annotation io.cdirun.gpu.allocated (an earlier allocation)"),
                )),
            ),
            (
                "a malformed variable is no error when it is not a request",
                &[("cdi.k8s.io/gpu", "nvidia.com/gpu=1")],
                &["NVIDIA_VISIBLE_DEVICES=a b"],
                false,
                Knob::Default,
                Ok((&["nvidia.com/gpu=1"], overridden(cdi_gpu))),
            ),
            (
                "distributed annotations allocate nothing",
                &[(DIST_RANK, "0")],
                &["NVIDIA_VISIBLE_DEVICES=0"],
                false,
                Knob::Default,
                Ok((&["nvidia.com/gpu=0"], EnvRole::Request)),
            ),
            (
                "an annotation outside the CDI prefixes allocates nothing",
                &[("example.org/gpu", "nvidia.com/gpu=1")],
                &["NVIDIA_VISIBLE_DEVICES=0"],
                false,
                Knob::Default,
                Ok((&["nvidia.com/gpu=0"], EnvRole::Request)),
            ),
        ];
        for (name, annotations, env, privileged, knob, want) in rows {
            let mut config = Config::default();
            match knob {
                Knob::Default => {}
                Knob::Ignore => config.cdi.env_when_unprivileged = EnvWhenUnprivileged::Ignore,
                Knob::Refuse => config.cdi.env_when_unprivileged = EnvWhenUnprivileged::Refuse,
                Knob::AcceptEnvOff => config.cdi.accept_env = false,
            }
            let mut s = spec(annotations, env);
            if privileged {
                s = privileged_spec(s);
            }
            assert_eq!(super::privileged(&s), privileged, "{name}: privilege");
            match (from_spec(&s, &config), want) {
                (Ok(got), Ok((devices, role))) => {
                    assert_eq!(names(&got), devices, "{name}: devices");
                    assert_eq!(got.env_role, role, "{name}: role");
                }
                (Err(err), Err(message)) => {
                    assert!(err.to_string().contains(message), "{name}: {err}");
                }
                (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn env_rewrites_describe_the_allocation_or_void() {
        let request = |env: &[(&'static str, &str)], role: EnvRole| Request {
            cdi: Vec::new(),
            env: env.iter().map(|(k, v)| (*k, v.to_string())).collect(),
            env_role: role,
        };
        let over = EnvRole::Overridden {
            by: "CDI annotation cdi.k8s.io/gpu".into(),
        };
        let ignored = EnvRole::Ignored {
            why: IgnoredWhy::Unprivileged,
        };
        let both = [
            (NVIDIA_VISIBLE_DEVICES, "all"),
            (AMD_VISIBLE_DEVICES, "none"),
        ];
        let allocated: Vec<String> = [
            "nvidia.com/gpu=1",
            "amd.com/gpu=0",
            "nvidia.com/mig=0:1",
            "nvidia.company/gpu=9",
            "nvidia.com/gpu=3",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        type Case<'a> = (&'a str, Request, &'a [String], &'a [(&'a str, &'a str)]);
        let cases: [Case; 5] = [
            (
                "a request is left alone",
                request(&both, EnvRole::Request),
                &allocated,
                &[],
            ),
            (
                "overridden: each variable the client set, by vendor, own kind by name",
                request(&both, over.clone()),
                &allocated,
                &[
                    (NVIDIA_VISIBLE_DEVICES, "1,nvidia.com/mig=0:1,3"),
                    (AMD_VISIBLE_DEVICES, "0"),
                ],
            ),
            (
                "overridden with nothing of the vendor allocated: void",
                request(&both, over.clone()),
                &[],
                &[
                    (NVIDIA_VISIBLE_DEVICES, "void"),
                    (AMD_VISIBLE_DEVICES, "void"),
                ],
            ),
            (
                "overridden: a variable the client did not set stays unset",
                request(&[], over),
                &allocated,
                &[],
            ),
            (
                "ignored: only a variable that asks becomes void",
                request(&both, ignored),
                &[],
                &[(NVIDIA_VISIBLE_DEVICES, "void")],
            ),
        ];
        for (name, request, allocated, want) in cases {
            let got = request.env_rewrites(allocated);
            let got: Vec<(&str, &str)> = got.iter().map(|(k, v)| (*k, v.as_str())).collect();
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn env_notes_say_what_was_overridden_or_ignored_and_why() {
        let config = Config::default();
        let got = from_spec(
            &spec(
                &[("cdi.k8s.io/gpu", "nvidia.com/gpu=1")],
                &["NVIDIA_VISIBLE_DEVICES=all"],
            ),
            &config,
        )
        .unwrap();
        assert_eq!(
            got.env_notes(),
            [
                "NVIDIA_VISIBLE_DEVICES=\"all\" is not a device request: CDI annotation cdi.k8s.io/gpu is an explicit allocation, which wins; NVIDIA_VISIBLE_DEVICES is rewritten to the allocated devices"
            ]
        );
        let mut ignore = Config::default();
        ignore.cdi.env_when_unprivileged = EnvWhenUnprivileged::Ignore;
        let got = from_spec(
            &spec(
                &[],
                &["NVIDIA_VISIBLE_DEVICES=0", "AMD_VISIBLE_DEVICES=void"],
            ),
            &ignore,
        )
        .unwrap();
        assert_eq!(
            got.env_notes(),
            [
                "NVIDIA_VISIBLE_DEVICES=\"0\" is ignored (the container has no CAP_SYS_ADMIN in its bounding set and [cdi] env-when-unprivileged = \"ignore\"): no device is injected for it and NVIDIA_VISIBLE_DEVICES is set to void"
            ]
        );
        let got = from_spec(&spec(&[], &["NVIDIA_VISIBLE_DEVICES=0"]), &config).unwrap();
        assert!(got.env_notes().is_empty());
    }

    #[test]
    fn env_requests_can_be_turned_off_and_prefixes_configured() {
        let mut config = Config::default();
        config.cdi.accept_env = false;
        config.cdi.annotation_prefixes = vec!["example.org/cdi.".into()];
        let got = from_spec(
            &spec(
                &[
                    ("example.org/cdi.x", "v.com/c=a"),
                    ("cdi.k8s.io/y", "v.com/c=b"),
                ],
                &["NVIDIA_VISIBLE_DEVICES=all"],
            ),
            &config,
        )
        .unwrap();
        assert_eq!(names(&got), ["v.com/c=a"]);
    }

    #[test]
    fn malformed_requests_are_errors_naming_the_key_or_variable() {
        let config = Config::default();
        let cases: [(Pairs, &[&str], &str); 8] = [
            (&[("cdi.k8s.io/k", "v.com/c=a,bad")], &[], "cdi.k8s.io/k"),
            // Regression: names were trimmed, so a space after the comma passed.
            (
                &[("cdi.k8s.io/k", "v.com/c=ok, v.com/c=a:b")],
                &[],
                "\" v.com/c=a:b\"",
            ),
            (&[("cdi.k8s.io/k", "v.com/c=ok ")], &[], "cdi.k8s.io/k"),
            (&[("cdi.k8s.io/k", "")], &[], "cdi.k8s.io/k"),
            (&[("cdi.k8s.io/-k", "v.com/c=a")], &[], "cdi.k8s.io/-k"),
            (&[("cdi.k8s.io/", "v.com/c=a")], &[], "cdi.k8s.io/"),
            (
                &[],
                &["NVIDIA_VISIBLE_DEVICES=0,v.com=x"],
                "NVIDIA_VISIBLE_DEVICES",
            ),
            (&[], &["AMD_VISIBLE_DEVICES=a b"], "AMD_VISIBLE_DEVICES"),
        ];
        for (annotations, env, want) in cases {
            let err = from_spec(&spec(annotations, env), &config).unwrap_err();
            assert!(err.to_string().contains(want), "{err}");
        }
        let long = format!("cdi.k8s.io/{}", "k".repeat(64));
        let err = from_spec(&spec(&[(long.as_str(), "v.com/c=a")], &[]), &config).unwrap_err();
        assert!(matches!(err, RequestError::AnnotationKey { .. }));
        let ok = format!("cdi.k8s.io/{}", "k".repeat(63));
        assert!(from_spec(&spec(&[(ok.as_str(), "v.com/c=a")], &[]), &config).is_ok());
    }
}

#[cfg(test)]
mod gpu_tests {
    use std::collections::HashMap;

    use super::*;

    fn spec(annotations: &[(&str, &str)]) -> Spec {
        let mut spec = Spec::default();
        spec.set_annotations(Some(
            annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>(),
        ));
        spec
    }

    #[test]
    fn gpu_request_table() {
        let config = Config::default();
        type Case<'a> = (
            &'a str,
            &'a [(&'a str, &'a str)],
            Option<(Option<Count>, Vendor, Sharing)>,
        );
        let cases: [Case; 7] = [
            ("nothing", &[("other", "x")], None),
            (
                "sharing alone: vendor from config, count open",
                &[(GPU_SHARING, "exclusive")],
                Some((None, Vendor::Nvidia, Sharing::Exclusive)),
            ),
            (
                "count and vendor",
                &[(GPU_COUNT, "2"), (GPU_VENDOR, "AMD")],
                Some((Some(Count::N(2)), Vendor::Amd, Sharing::Exclusive)),
            ),
            (
                "all intel",
                &[(GPU_COUNT, "all"), (GPU_VENDOR, "intel")],
                Some((Some(Count::All), Vendor::Intel, Sharing::Exclusive)),
            ),
            (
                "mps with limits",
                &[
                    (GPU_SHARING, "mps"),
                    (MPS_THREAD_PERCENTAGE, "50"),
                    (MPS_MEM_LIMIT, "0=1G,1=512M"),
                ],
                Some((None, Vendor::Nvidia, Sharing::Mps)),
            ),
            (
                "time-slice",
                &[(GPU_SHARING, "time-slice"), (GPU_COUNT, "1")],
                Some((Some(Count::N(1)), Vendor::Nvidia, Sharing::TimeSlice)),
            ),
            (
                "only the allocation marker is no request",
                &[(GPU_ALLOCATED, "nvidia.com/gpu=0")],
                None,
            ),
        ];
        for (name, annotations, want) in cases {
            let got = gpu_from_spec(&spec(annotations), &config)
                .unwrap_or_else(|e| panic!("{name}: {e}"))
                .map(|r| (r.count, r.vendor, r.sharing));
            assert_eq!(got, want, "{name}");
        }
        let mut amd = Config::default();
        amd.gpu.default_vendor = "amd".into();
        let got = gpu_from_spec(&spec(&[(GPU_COUNT, "1")]), &amd)
            .unwrap()
            .unwrap();
        assert_eq!(got.vendor, Vendor::Amd);
    }

    #[test]
    fn bad_gpu_requests_name_the_key_and_value() {
        let config = Config::default();
        let cases: [(&[(&str, &str)], &str); 12] = [
            (&[(GPU_COUNT, "0")], "io.cdirun.gpu.count=\"0\""),
            (&[(GPU_COUNT, "two")], "io.cdirun.gpu.count=\"two\""),
            (&[(GPU_VENDOR, "apple")], "\"apple\""),
            (&[(GPU_SHARING, "fair")], "\"fair\""),
            (&[(GPU_MODEL, "")], GPU_MODEL),
            (&[("io.cdirun.gpu.cuont", "1")], "io.cdirun.gpu.cuont"),
            (&[(GPU_VENDOR, "amd"), (GPU_SHARING, "mps")], "NVIDIA-only"),
            (
                &[(GPU_SHARING, "mps"), (MPS_THREAD_PERCENTAGE, "0")],
                MPS_THREAD_PERCENTAGE,
            ),
            (
                &[(GPU_SHARING, "mps"), (MPS_THREAD_PERCENTAGE, "101")],
                MPS_THREAD_PERCENTAGE,
            ),
            (&[(GPU_SHARING, "mps"), (MPS_MEM_LIMIT, "1G")], "0=1G"),
            (&[(GPU_SHARING, "mps"), (MPS_MEM_LIMIT, "0=1T")], "\"1T\""),
            (
                &[(MPS_THREAD_PERCENTAGE, "50")],
                "needs io.cdirun.gpu.sharing=mps",
            ),
        ];
        for (annotations, want) in cases {
            let err = gpu_from_spec(&spec(annotations), &config).unwrap_err();
            assert!(err.to_string().contains(want), "{annotations:?}: {err}");
        }
        let err = gpu_from_spec(&spec(&[(GPU_VENDOR, "apple")]), &config).unwrap_err();
        assert!(err.to_string().contains("not supported on Linux"), "{err}");
    }

    #[test]
    fn distributed_table() {
        let d = |backend: &str, addr: &str, port, world, rank, local| Distributed {
            backend: backend.into(),
            master_addr: addr.into(),
            master_port: port,
            world_size: world,
            rank,
            local_rank: local,
        };
        type Case<'a> = (
            &'a [(&'a str, &'a str)],
            Option<&'a str>,
            Option<Distributed>,
        );
        let cases: [Case; 4] = [
            (&[], None, None),
            (
                &[(DIST_WORLD_SIZE, "1")],
                None,
                Some(d("nccl", "localhost", 29500, 1, 0, 0)),
            ),
            (
                &[(DIST_RANK, "0")],
                Some("node-a"),
                Some(d("nccl", "node-a", 29500, 1, 0, 0)),
            ),
            (
                &[
                    (DIST_BACKEND, "gloo"),
                    (DIST_MASTER_ADDR, "10.0.0.1"),
                    (DIST_MASTER_PORT, "1234"),
                    (DIST_WORLD_SIZE, "8"),
                    (DIST_RANK, "5"),
                    (DIST_LOCAL_RANK, "1"),
                ],
                Some("ignored"),
                Some(d("gloo", "10.0.0.1", 1234, 8, 5, 1)),
            ),
        ];
        for (annotations, hostname, want) in cases {
            let mut s = spec(annotations);
            s.set_hostname(hostname.map(str::to_owned));
            assert_eq!(distributed_from_spec(&s).unwrap(), want, "{annotations:?}");
        }
        let bad: [(&[(&str, &str)], &str); 6] = [
            (&[(DIST_BACKEND, "tcp")], "\"tcp\""),
            (&[(DIST_MASTER_PORT, "0")], DIST_MASTER_PORT),
            (&[(DIST_MASTER_PORT, "70000")], DIST_MASTER_PORT),
            (&[(DIST_WORLD_SIZE, "0")], DIST_WORLD_SIZE),
            (
                &[(DIST_WORLD_SIZE, "2"), (DIST_RANK, "2")],
                "below the world size 2",
            ),
            (
                &[("io.cdirun.distributed.size", "2")],
                "io.cdirun.distributed.size",
            ),
        ];
        for (annotations, want) in bad {
            let err = distributed_from_spec(&spec(annotations)).unwrap_err();
            assert!(err.to_string().contains(want), "{annotations:?}: {err}");
        }
    }
}

//! What a container asks for, read from its config.json and cdirun's config without touching
//! anything else: CDI devices from annotations and from the vendor visible-devices variables,
//! the `io.cdirun.gpu.*` / `io.cdirun.mps.*` GPU request and the `io.cdirun.distributed.*` env.
//!
//! This file holds the request and its reading entry point, [`from_spec`], with what every part
//! shares: the errors and the reading of annotations. The vendor visible-devices variables, with
//! the precedence rule that decides what they are, are in `vendor_env`; the GPU request is in
//! `gpu` and the distributed-training env in `distributed`.

use libcontainer::oci_spec::runtime::Spec;

use crate::cdi::name;
use crate::config::Config;

mod distributed;
mod gpu;
mod vendor_env;

pub use distributed::{
    BACKENDS, DEFAULT_MASTER_PORT, DIST_BACKEND, DIST_LOCAL_RANK, DIST_MASTER_ADDR,
    DIST_MASTER_PORT, DIST_PREFIX, DIST_RANK, DIST_WORLD_SIZE, Distributed, distributed_from_spec,
};
pub use gpu::{
    Count, GPU_ALLOCATED, GPU_COUNT, GPU_MODEL, GPU_PREFIX, GPU_SHARING, GPU_VENDOR, GpuRequest,
    INTEL_KIND, MPS_MEM_LIMIT, MPS_PREFIX, MPS_THREAD_PERCENTAGE, Sharing, Vendor, gpu_from_spec,
};
pub use vendor_env::{
    AMD_KIND, AMD_VISIBLE_DEVICES, ENV_WHEN_UNPRIVILEGED, EnvRole, IgnoredWhy, NVIDIA_KIND,
    NVIDIA_VISIBLE_DEVICES, PrecedenceInputs, VENDOR_ENV, VOID, asks_for_devices, precedence,
    privileged, visible_value,
};

use distributed::DIST_KEYS;
use gpu::{GPU_KEYS, MPS_KEYS, gpu_key};
use vendor_env::{env_value, parse_visible};

/// Longest annotation key after the prefix (a Kubernetes name segment).
pub const MAX_ANNOTATION_KEY: usize = 63;

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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    pub(super) type Pairs<'a> = &'a [(&'a str, &'a str)];

    /// A spec with these annotations and the default process.
    pub(super) fn annotated(annotations: &[(&str, &str)]) -> Spec {
        let mut spec = Spec::default();
        spec.set_annotations(Some(
            annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>(),
        ));
        spec
    }

    /// A spec with these annotations and a process with this env.
    pub(super) fn spec(annotations: Pairs, env: &[&str]) -> Spec {
        let mut spec = annotated(annotations);
        let mut process = spec.process().clone().unwrap();
        process.set_env(Some(env.iter().map(|s| s.to_string()).collect()));
        spec.set_process(Some(process));
        spec
    }

    pub(super) fn names(request: &Request) -> Vec<String> {
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

//! What a container asks for, read from its config.json and cdirun's config without touching
//! anything else: CDI devices from annotations and from the vendor visible-devices variables.

use libcontainer::oci_spec::runtime::Spec;

use crate::cdi::name;
use crate::config::Config;

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

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error(
        "invalid CDI annotation key {key:?}: the part after {prefix:?} must be 1 to {MAX_ANNOTATION_KEY} characters of letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
    )]
    AnnotationKey { key: String, prefix: String },
    #[error("invalid CDI annotation {key:?}: {source}")]
    AnnotationValue {
        key: String,
        source: name::NameError,
    },
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
}

/// Reads the request from `spec` under `config`.
pub fn from_spec(spec: &Spec, config: &Config) -> Result<Request, RequestError> {
    let mut request = Request::default();
    let mut push = |requested: Requested| {
        let name = requested.device.display_name();
        if !request.cdi.iter().any(|r| r.device.display_name() == name) {
            request.cdi.push(requested);
        }
    };
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
            let names = annotations[key]
                .split(',')
                .map(|entry| {
                    name::parse_qualified(entry.trim()).map_err(|source| {
                        RequestError::AnnotationValue {
                            key: key.clone(),
                            source,
                        }
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            for q in names {
                push(Requested {
                    device: Device::Qualified(q.to_string()),
                    source: Source::Annotation(key.clone()),
                });
            }
        }
    }
    if config.cdi.accept_env {
        let env = spec
            .process()
            .as_ref()
            .and_then(|p| p.env().as_ref())
            .map(Vec::as_slice)
            .unwrap_or_default();
        for (var, kind) in VENDOR_ENV {
            if let Some(value) = env_value(env, var) {
                for device in parse_visible(var, kind, value)? {
                    push(Requested {
                        device,
                        source: Source::Env(var),
                    });
                }
            }
        }
    }
    Ok(request)
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
                    ("cdi.k8s.io/a", "vendor.com/gpu=0, vendor.com/gpu=1"),
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
                "annotations before env, no repeats",
                &[("cdi.k8s.io/x", "nvidia.com/gpu=0")],
                &["NVIDIA_VISIBLE_DEVICES=0,1", "AMD_VISIBLE_DEVICES=0"],
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
        let got = from_spec(
            &spec(&[("cdi.k8s.io/k", "v.com/c=a")], &["AMD_VISIBLE_DEVICES=1"]),
            &Config::default(),
        )
        .unwrap();
        assert_eq!(got.cdi[0].source, Source::Annotation("cdi.k8s.io/k".into()));
        assert_eq!(got.cdi[1].source, Source::Env(AMD_VISIBLE_DEVICES));
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
        let cases: [(Pairs, &[&str], &str); 6] = [
            (&[("cdi.k8s.io/k", "v.com/c=a,bad")], &[], "cdi.k8s.io/k"),
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

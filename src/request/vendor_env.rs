//! The vendor visible-devices variables (`NVIDIA_VISIBLE_DEVICES`, `AMD_VISIBLE_DEVICES`): how
//! their values name devices, the precedence rule that decides whether they are requests, and
//! what they are rewritten to when they are not.

use libcontainer::oci_spec::runtime::{Capability, Spec};

use super::{Device, Request, RequestError};
use crate::cdi::name;
use crate::config::{CdiConfig, EnvWhenUnprivileged};

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

/// The value of `var` in an OCI env list; the last definition wins, as in execve's consumers.
pub(super) fn env_value<'a>(env: &'a [String], var: &str) -> Option<&'a str> {
    env.iter().rev().find_map(|entry| {
        entry
            .split_once('=')
            .filter(|(key, _)| *key == var)
            .map(|(_, value)| value)
    })
}

/// `all` | `none` | `void` | empty | comma-separated indices, UUIDs, names or qualified names.
pub(super) fn parse_visible(
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
    use super::*;
    use crate::config::Config;
    use crate::request::tests::{Pairs, names, spec};
    use crate::request::{
        DIST_RANK, GPU_ALLOCATED, GPU_COUNT, GPU_SHARING, MPS_THREAD_PERCENTAGE, from_spec,
    };

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
}

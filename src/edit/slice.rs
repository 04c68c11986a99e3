//! Cgroup placement: puts every container in a slice its owner holds, or refuses it before
//! anything is created.
//!
//! cdirun acts for one owner (config `owner`). The target slice is `io.cdirun.slice` or
//! `[slices] default`; it must belong to that owner. With the cgroupfs driver the client's
//! cgroupsPath is nested under the target slice (podman's `/libpod_parent/libpod-<id>` becomes
//! `/workload.slice/libpod_parent/libpod-<id>`), except for `[slices] respect` prefixes, used as
//! sent, and paths already in a slice of the owner. With `--systemd-cgroup` the slice part of
//! `slice:prefix:name` is replaced by the target slice's unit; on a v1 or hybrid host the unit
//! is then laid out as a cgroupfs path (see [`Driver::SystemdLayout`]). This module is pure: creating the
//! slice and placing the process happen in `create`, from the claim this edit returns.

use std::path::{Path, PathBuf};

use libcontainer::oci_spec::runtime::Spec;

use super::{Context, Edit, EditError};
use crate::cgroup::owners::expand_slice_unit;
use crate::cgroup::{CgroupPath, Driver, OwnerError, Owners};
use crate::claims::{Claim, Claims};

/// Annotation naming the slice (or scope) a container goes in: a path such as
/// `pact.slice/pact-gpu.slice` or `workload.slice/train.scope`, or a slice unit name such as
/// `pact-gpu.slice`.
pub const SLICE_ANNOTATION: &str = "io.cdirun.slice";
/// Prefix cdirun gives a systemd scope when the client sent no cgroupsPath (as runc does).
pub const SYSTEMD_PREFIX: &str = "cdirun";

const FROM_ANNOTATION: &str = "annotation io.cdirun.slice";
const FROM_DEFAULT: &str = "config [slices] default";
const FROM_CLIENT: &str = "cgroupsPath";

#[derive(Debug, thiserror::Error)]
pub enum SliceError {
    #[error("config.json has no \"linux\" section; cdirun runs Linux containers only")]
    NotLinux,
    #[error(transparent)]
    Path(#[from] OwnerError),
    #[error("cgroupsPath {path:?} is not UTF-8")]
    NotUtf8 { path: PathBuf },
    #[error(
        "{source_name} asks for slice {slice}, which belongs to owner {owner:?}; cdirun acts for {acting:?} (config `owner`)"
    )]
    Foreign {
        source_name: &'static str,
        slice: String,
        owner: String,
        acting: String,
    },
    #[error(
        "{source_name} asks for {slice}, which no owner holds in [slices.owners] ({owners}); cdirun acts for {acting:?}, which owns only its own slices"
    )]
    Unowned {
        source_name: &'static str,
        slice: String,
        owners: String,
        acting: String,
    },
    #[error(
        "{source_name} {path} names a slice itself; a container needs its own cgroup below the slice"
    )]
    SliceItself {
        source_name: &'static str,
        path: String,
    },
    #[error(
        "cgroupsPath {path:?} is not in the systemd form slice:prefix:name (--systemd-cgroup); prefix and name must be plain names"
    )]
    SystemdForm { path: String },
    #[error(
        "slice {slice} has no systemd unit name (--systemd-cgroup); nest slices as systemd does, e.g. pact.slice/pact-gpu.slice"
    )]
    NotSystemdUnit { slice: String },
    #[error(
        "annotation io.cdirun.slice names scope {scope}; a scope target needs the cgroupfs driver, with --systemd-cgroup name a slice"
    )]
    ScopeNeedsCgroupfs { scope: String },
    #[error(
        "{source_name} {path} has the component {component:?}, which names a cgroup interface file or starts with a controller prefix ({prefixes}.); name slices and containers otherwise"
    )]
    InterfaceName {
        source_name: &'static str,
        path: String,
        component: String,
        prefixes: String,
    },
    #[error("config [slices] respect entry {entry:?} is invalid: {cause}")]
    BadRespect { entry: String, cause: OwnerError },
}

/// Decides the container's cgroupsPath (see the module doc) and claims its scope.
pub struct Placement;

impl Edit for Placement {
    fn name(&self) -> &'static str {
        "slice"
    }

    fn apply(&self, spec: &mut Spec, ctx: &Context) -> Result<Claims, EditError> {
        if ctx.skip_cgroups {
            // No cgroup to apply them to (runc's rootless containers without one ignore them).
            if let Some(linux) = spec.linux_mut().as_mut() {
                if linux.resources().is_some() {
                    tracing::warn!(
                        "rootless without a delegated cgroup: linux.resources are not applied"
                    );
                    linux.set_resources(None);
                }
            }
            return Ok(Claims::default());
        }
        let annotation = spec
            .annotations()
            .as_ref()
            .and_then(|a| a.get(SLICE_ANNOTATION))
            .cloned();
        let linux = spec.linux_mut().as_mut().ok_or(SliceError::NotLinux)?;
        let plan = plan(linux.cgroups_path().as_deref(), annotation.as_deref(), ctx)?;
        linux.set_cgroups_path(Some(plan.cgroups_path));
        Ok(Claims(plan.scope.into_iter().chain(plan.unit).collect()))
    }
}

/// Where a container's cgroup goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub cgroups_path: PathBuf,
    /// cgroupfs only: the scope claim (the systemd driver leaves the scope to systemd).
    pub scope: Option<Claim>,
    /// [`Driver::SystemdLayout`] only: the scope unit cdirun registers with systemd for it.
    pub unit: Option<Claim>,
}

/// The placement decision, pure: client cgroupsPath + annotation + config → cgroupsPath.
pub fn plan(
    client: Option<&Path>,
    annotation: Option<&str>,
    ctx: &Context,
) -> Result<Plan, SliceError> {
    let owners = Owners::from_table(&ctx.config.slices.owners)?;
    let acting = ctx.config.owner.as_str();
    owners.hierarchy_of(acting)?;
    let check = Check {
        owners: &owners,
        acting,
    };
    let target = match annotation.map(str::trim) {
        Some(value) => check.owned(
            no_interface_names(CgroupPath::parse_slice(value)?, FROM_ANNOTATION)?,
            FROM_ANNOTATION,
        )?,
        None => check.owned(
            no_interface_names(
                CgroupPath::parse_slice(&ctx.config.slices.default)?,
                FROM_DEFAULT,
            )?,
            FROM_DEFAULT,
        )?,
    };
    let respect = ctx
        .config
        .slices
        .respect
        .iter()
        .map(|entry| {
            CgroupPath::parse(entry).map_err(|cause| SliceError::BadRespect {
                entry: entry.clone(),
                cause,
            })
        })
        .filter(|parsed| !matches!(parsed, Ok(path) if path.is_root()))
        .collect::<Result<Vec<_>, _>>()?;
    let respected = |path: &CgroupPath| respect.iter().any(|prefix| path.starts_with(prefix));
    let client = client
        .map(|path| {
            path.to_str().ok_or_else(|| SliceError::NotUtf8 {
                path: path.to_owned(),
            })
        })
        .transpose()?;
    let id = ctx.container_id;
    let plan = match ctx.cgroup_driver {
        Driver::Cgroupfs => cgroupfs_plan(client, target, &check, respected, id)?,
        Driver::Systemd => return Ok(systemd_unit(client, &target, &check, respected, id)?.plan()),
        // An absolute path is this edit's own earlier result (applying twice changes nothing).
        Driver::SystemdLayout if client.is_some_and(|c| c.starts_with('/')) => {
            cgroupfs_plan(client, target, &check, respected, id).map(with_unit)?
        }
        Driver::SystemdLayout => {
            systemd_unit(client, &target, &check, respected, id)?.cgroupfs_plan()?
        }
    };
    // The client's part and the id: a cgroup path made as directories in every hierarchy.
    let path = CgroupPath::parse(&plan.cgroups_path.to_string_lossy())?;
    let source_name = if client.is_some_and(|c| !c.is_empty()) {
        FROM_CLIENT
    } else {
        "container id in cgroup path"
    };
    no_interface_names(path, source_name)?;
    Ok(plan)
}

/// `path`, unless one of its components names a cgroup interface file (`cgroup.procs`,
/// `tasks`) or starts with a controller prefix (`memory.`): refused before anything exists,
/// where libcontainer would fail half-way with "Not a directory".
fn no_interface_names(
    path: CgroupPath,
    source_name: &'static str,
) -> Result<CgroupPath, SliceError> {
    match path
        .components()
        .iter()
        .find(|c| crate::cgroup::owners::is_interface_name(c))
    {
        None => Ok(path),
        Some(component) => Err(SliceError::InterfaceName {
            source_name,
            path: path.to_string(),
            component: component.clone(),
            prefixes: crate::cgroup::owners::INTERFACE_PREFIXES.join("., "),
        }),
    }
}

/// A cgroup laid out where systemd puts a unit (`/<slices>/<name>.scope`) is that unit: its
/// scope and slice names, from the path alone (so applying the edit twice keeps the claim).
fn with_unit(mut plan: Plan) -> Plan {
    let path = CgroupPath::parse(&plan.cgroups_path.to_string_lossy()).ok();
    plan.unit = path.and_then(|path| {
        let (name, parents) = path.components().split_last()?;
        let slice = match parents.last() {
            None => "-.slice".to_owned(),
            Some(slice) if slice.ends_with(".slice") => slice.clone(),
            Some(_) => return None,
        };
        name.ends_with(".scope").then(|| Claim::Unit {
            name: name.clone(),
            slice,
        })
    });
    plan
}

struct Check<'a> {
    owners: &'a Owners,
    acting: &'a str,
}

impl Check<'_> {
    /// `path` if the acting owner holds it, else the error naming the slice and its owner.
    fn owned(&self, path: CgroupPath, source_name: &'static str) -> Result<CgroupPath, SliceError> {
        match self.owners.owner_of(&path) {
            Some(owner) if owner == self.acting => Ok(path),
            Some(owner) => Err(SliceError::Foreign {
                source_name,
                slice: path.to_string(),
                owner: owner.to_owned(),
                acting: self.acting.to_owned(),
            }),
            None => Err(SliceError::Unowned {
                source_name,
                slice: path.to_string(),
                owners: self.owners.describe(),
                acting: self.acting.to_owned(),
            }),
        }
    }
}

fn is_scope(path: &CgroupPath) -> bool {
    path.last().is_some_and(|last| last.ends_with(".scope"))
}

fn is_slice(path: &CgroupPath) -> bool {
    path.last().is_some_and(|last| last.ends_with(".slice"))
}

fn cgroupfs_plan(
    client: Option<&str>,
    target: CgroupPath,
    check: &Check,
    respected: impl Fn(&CgroupPath) -> bool,
    id: &str,
) -> Result<Plan, SliceError> {
    let scoped = |path: CgroupPath, slice: Option<CgroupPath>| Plan {
        cgroups_path: path.absolute(),
        scope: Some(Claim::Scope {
            path: path.absolute(),
            slice: slice.map(|s| s.absolute()),
        }),
        unit: None,
    };
    let parent_of_scope = |scope: &CgroupPath| {
        let mut parts = scope.components().to_vec();
        parts.pop();
        CgroupPath::parse(&parts.join("/")).unwrap_or_default()
    };
    let Some(client) = client.filter(|c| !c.is_empty()) else {
        return Ok(if is_scope(&target) {
            let slice = parent_of_scope(&target);
            scoped(target, Some(slice))
        } else {
            let path = target.child(id);
            scoped(path, Some(target))
        });
    };
    let path = CgroupPath::parse(client)?;
    if path.is_root() || is_slice(&path) {
        return Err(SliceError::SliceItself {
            source_name: FROM_CLIENT,
            path: client.to_owned(),
        });
    }
    if respected(&path) {
        return Ok(scoped(path, None));
    }
    match check.owners.owner_of(&path) {
        // Already in a slice of this owner (a client that knows, or this edit run before).
        Some(owner) if owner == check.acting => {
            let slice = if is_scope(&target) && path == target {
                parent_of_scope(&target)
            } else if path.starts_with(&target) {
                target
            } else {
                check.owners.root_of(&path).cloned().unwrap_or(target)
            };
            Ok(scoped(path, Some(slice)))
        }
        Some(_) => Err(check.owned(path, FROM_CLIENT).unwrap_err()),
        None if is_scope(&target) => {
            let slice = parent_of_scope(&target);
            Ok(scoped(target, Some(slice)))
        }
        None => Ok(scoped(target.join(&path), Some(target))),
    }
}

/// A systemd scope unit: `slice:prefix:name`, the unit `prefix-name.scope` in `slice`.
struct SystemdUnit {
    slice: String,
    prefix: String,
    name: String,
    /// The slice as systemd nests it; `None` when the client's own slice is used as sent.
    owned_slice: Option<CgroupPath>,
}

impl SystemdUnit {
    /// For libcontainer's systemd manager: cgroupsPath in the systemd form.
    fn plan(self) -> Plan {
        Plan {
            cgroups_path: format!("{}:{}:{}", self.slice, self.prefix, self.name).into(),
            scope: None,
            unit: None,
        }
    }

    /// For [`Driver::SystemdLayout`]: the path systemd gives the unit, made as a cgroupfs scope.
    fn cgroupfs_plan(self) -> Result<Plan, SliceError> {
        let slice = expand_slice_unit(&self.slice).ok_or_else(|| SliceError::NotSystemdUnit {
            slice: self.slice.clone(),
        })?;
        let path = slice.child(&format!("{}-{}.scope", self.prefix, self.name));
        Ok(with_unit(Plan {
            cgroups_path: path.absolute(),
            scope: Some(Claim::Scope {
                path: path.absolute(),
                slice: self.owned_slice.map(|s| s.absolute()),
            }),
            unit: None,
        }))
    }
}

fn systemd_unit(
    client: Option<&str>,
    target: &CgroupPath,
    check: &Check,
    respected: impl Fn(&CgroupPath) -> bool,
    id: &str,
) -> Result<SystemdUnit, SliceError> {
    if is_scope(target) {
        return Err(SliceError::ScopeNeedsCgroupfs {
            scope: target.to_string(),
        });
    }
    let unit = target
        .slice_unit()
        .ok_or_else(|| SliceError::NotSystemdUnit {
            slice: target.to_string(),
        })?;
    let plain = |part: &str| !part.contains('/') && part != ".." && part != ".";
    let (slice, prefix, name) = match client.filter(|c| !c.is_empty()) {
        None => (String::new(), SYSTEMD_PREFIX.to_owned(), id.to_owned()),
        Some(client) => {
            let bad = || SliceError::SystemdForm {
                path: client.to_owned(),
            };
            let parts: Vec<&str> = client.split(':').collect();
            let [slice, prefix, name] = parts[..] else {
                return Err(bad());
            };
            if name.is_empty() || !plain(prefix) || !plain(name) {
                return Err(bad());
            }
            (slice.to_owned(), prefix.to_owned(), name.to_owned())
        }
    };
    let owned = |slice: String, path: CgroupPath| (slice, Some(path));
    let (slice, owned_slice) = if slice.is_empty() {
        owned(unit, target.clone())
    } else {
        let path = expand_slice_unit(&slice).ok_or_else(|| SliceError::SystemdForm {
            path: client.unwrap_or_default().to_owned(),
        })?;
        match check.owners.owner_of(&path) {
            _ if !path.is_root() && respected(&path) => (slice, None),
            Some(owner) if owner == check.acting => owned(slice, path),
            Some(_) => return Err(check.owned(path, FROM_CLIENT).unwrap_err()),
            None => owned(unit, target.clone()),
        }
    };
    Ok(SystemdUnit {
        slice,
        prefix,
        name,
        owned_slice,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::config::Config;

    fn config(respect: &[&str]) -> Config {
        let mut config = Config::default();
        config.slices.respect = respect.iter().map(|s| s.to_string()).collect();
        config
    }

    fn ctx(config: &Config, systemd: bool) -> Context<'_> {
        Context {
            cgroup_driver: if systemd {
                Driver::Systemd
            } else {
                Driver::Cgroupfs
            },
            ..Context::new("c1", config, Path::new("/run/cdirun"))
        }
    }

    fn spec(path: Option<&str>, annotation: Option<&str>) -> Spec {
        let mut spec = Spec::default();
        spec.linux_mut()
            .as_mut()
            .unwrap()
            .set_cgroups_path(path.map(PathBuf::from));
        if let Some(value) = annotation {
            spec.set_annotations(Some(HashMap::from([(
                SLICE_ANNOTATION.to_owned(),
                value.to_owned(),
            )])));
        }
        spec
    }

    fn scope(path: &str, slice: Option<&str>) -> Claims {
        Claims(vec![Claim::Scope {
            path: path.into(),
            slice: slice.map(PathBuf::from),
        }])
    }

    /// (name, cgroupsPath, annotation, respect, systemd, want cgroupsPath, want slice of the
    /// scope claim; `None` with a cgroupfs path means a respected path, no slice)
    type Case = (
        &'static str,
        Option<&'static str>,
        Option<&'static str>,
        &'static [&'static str],
        bool,
        &'static str,
        Option<&'static str>,
    );

    #[test]
    fn placement_table() {
        let cases: &[Case] = &[
            (
                "absent",
                None,
                None,
                &[],
                false,
                "/workload.slice/c1",
                Some("/workload.slice"),
            ),
            (
                "podman",
                Some("/libpod_parent/libpod-c1"),
                None,
                &[],
                false,
                "/workload.slice/libpod_parent/libpod-c1",
                Some("/workload.slice"),
            ),
            (
                "ctr",
                Some("/default/c1"),
                None,
                &[],
                false,
                "/workload.slice/default/c1",
                Some("/workload.slice"),
            ),
            (
                "relative",
                Some("ns/c1"),
                None,
                &[],
                false,
                "/workload.slice/ns/c1",
                Some("/workload.slice"),
            ),
            (
                "messy path normalized",
                Some("//ns/./c1/"),
                None,
                &[],
                false,
                "/workload.slice/ns/c1",
                Some("/workload.slice"),
            ),
            (
                "CRI without respect is nested",
                Some("/kubepods/burstable/pod1/c1"),
                None,
                &[],
                false,
                "/workload.slice/kubepods/burstable/pod1/c1",
                Some("/workload.slice"),
            ),
            (
                "CRI respected",
                Some("/kubepods/burstable/pod1/c1"),
                None,
                &["/kubepods"],
                false,
                "/kubepods/burstable/pod1/c1",
                None,
            ),
            (
                "respect is by component",
                Some("/kubepods-x/c1"),
                None,
                &["/kubepods"],
                false,
                "/workload.slice/kubepods-x/c1",
                Some("/workload.slice"),
            ),
            (
                "conformance",
                Some("/cgrouptest/c1"),
                None,
                &["/cgrouptest"],
                false,
                "/cgrouptest/c1",
                None,
            ),
            (
                "already owned",
                Some("/workload.slice/x/c1"),
                None,
                &[],
                false,
                "/workload.slice/x/c1",
                Some("/workload.slice"),
            ),
            (
                "annotation path",
                Some("/libpod_parent/c1"),
                Some("workload.slice/train.slice"),
                &[],
                false,
                "/workload.slice/train.slice/libpod_parent/c1",
                Some("/workload.slice/train.slice"),
            ),
            (
                "annotation unit",
                None,
                Some("workload-train.slice"),
                &[],
                false,
                "/workload.slice/workload-train.slice/c1",
                Some("/workload.slice/workload-train.slice"),
            ),
            (
                "annotation scope",
                Some("/libpod_parent/c1"),
                Some("/workload.slice/job.scope"),
                &[],
                false,
                "/workload.slice/job.scope",
                Some("/workload.slice"),
            ),
            (
                "systemd absent",
                None,
                None,
                &[],
                true,
                "workload.slice:cdirun:c1",
                None,
            ),
            (
                "systemd podman",
                Some("machine.slice:libpod:c1"),
                None,
                &[],
                true,
                "workload.slice:libpod:c1",
                None,
            ),
            (
                "systemd empty slice",
                Some(":cri-containerd:c1"),
                None,
                &[],
                true,
                "workload.slice:cri-containerd:c1",
                None,
            ),
            (
                "systemd owned kept",
                Some("workload-batch.slice:crio:c1"),
                None,
                &[],
                true,
                "workload-batch.slice:crio:c1",
                None,
            ),
            (
                "systemd respected",
                Some("kubepods-burstable.slice:cri-containerd:c1"),
                None,
                &["/kubepods.slice"],
                true,
                "kubepods-burstable.slice:cri-containerd:c1",
                None,
            ),
            (
                "systemd annotation",
                Some("system.slice:docker:c1"),
                Some("workload-gpu.slice"),
                &[],
                true,
                "workload-gpu.slice:docker:c1",
                None,
            ),
        ];
        for (name, input, annotation, respect, systemd, want, slice) in cases {
            let config = config(respect);
            let ctx = ctx(&config, *systemd);
            let mut got = spec(*input, *annotation);
            let claims = Placement.apply(&mut got, &ctx).unwrap();
            assert_eq!(got, spec(Some(want), *annotation), "{name}");
            let want_claims = if *systemd {
                Claims::default()
            } else {
                scope(want, *slice)
            };
            assert_eq!(claims, want_claims, "{name}");
            // idempotent
            let again = Placement.apply(&mut got, &ctx).unwrap();
            assert_eq!(got, spec(Some(want), *annotation), "{name} (twice)");
            assert_eq!(again, want_claims, "{name} (twice)");
        }
    }

    /// The CRI plugin asks for cgroups inside the kubelet's pod cgroup; the embedded defaults
    /// keep them there with either driver, and the systemd layout on v1 nests as systemd does.
    #[test]
    fn kubelet_pods_keep_their_cgroup_by_default() {
        let config = Config::default();
        let cases = [
            (
                Driver::Cgroupfs,
                "/kubepods/besteffort/pod1/c1",
                "/kubepods/besteffort/pod1/c1",
            ),
            (
                Driver::Systemd,
                "kubepods-besteffort-pod1.slice:cri-containerd:c1",
                "kubepods-besteffort-pod1.slice:cri-containerd:c1",
            ),
            (
                Driver::SystemdLayout,
                "kubepods-besteffort-pod1.slice:cri-containerd:c1",
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/cri-containerd-c1.scope",
            ),
            // Whole components only: not the kubelet's.
            (
                Driver::Cgroupfs,
                "/kubepods-x/c1",
                "/workload.slice/kubepods-x/c1",
            ),
        ];
        for (driver, input, want) in cases {
            let ctx = Context {
                cgroup_driver: driver,
                ..Context::new("c1", &config, Path::new("/run/cdirun"))
            };
            let mut got = spec(Some(input), None);
            Placement.apply(&mut got, &ctx).unwrap();
            assert_eq!(got, spec(Some(want), None), "{driver:?} {input}");
        }
    }

    /// `--systemd-cgroup` on a v1 or hybrid host: the unit systemd would make, as a cgroupfs
    /// scope at systemd's path (never the literal `slice:prefix:name` directory).
    #[test]
    fn systemd_units_on_v1_are_laid_out_as_systemd_nests_them() {
        // (name, cgroupsPath, annotation, respect, want cgroupsPath, want slice of the claim)
        type LayoutCase<'a> = (
            &'a str,
            Option<&'a str>,
            Option<&'a str>,
            &'a [&'a str],
            &'a str,
            Option<&'a str>,
        );
        let cases: &[LayoutCase] = &[
            (
                "absent",
                None,
                None,
                &[],
                "/workload.slice/cdirun-c1.scope",
                Some("/workload.slice"),
            ),
            (
                "foreign slice replaced",
                Some("machine.slice:libpod:c1"),
                None,
                &[],
                "/workload.slice/libpod-c1.scope",
                Some("/workload.slice"),
            ),
            (
                "owned sub-slice kept",
                Some("workload-batch.slice:crio:c1"),
                None,
                &[],
                "/workload.slice/workload-batch.slice/crio-c1.scope",
                Some("/workload.slice/workload-batch.slice"),
            ),
            (
                "respected",
                Some("kubepods-burstable.slice:cri-containerd:c1"),
                None,
                &["/kubepods.slice"],
                "/kubepods.slice/kubepods-burstable.slice/cri-containerd-c1.scope",
                None,
            ),
            (
                "annotation",
                Some("system.slice:docker:c1"),
                Some("workload-gpu.slice"),
                &[],
                "/workload.slice/workload-gpu.slice/docker-c1.scope",
                Some("/workload.slice/workload-gpu.slice"),
            ),
        ];
        for (name, input, annotation, respect, want, slice) in cases {
            let config = config(respect);
            let ctx = Context {
                cgroup_driver: Driver::SystemdLayout,
                ..Context::new("c1", &config, Path::new("/run/cdirun"))
            };
            let mut got = spec(*input, *annotation);
            let claims = Placement.apply(&mut got, &ctx).unwrap();
            assert_eq!(got, spec(Some(want), *annotation), "{name}");
            let (parent, unit) = want.rsplit_once('/').unwrap();
            let unit = Claim::Unit {
                name: unit.to_owned(),
                slice: parent.rsplit('/').next().unwrap().to_owned(),
            };
            let mut want_claims = scope(want, *slice);
            want_claims.0.push(unit.clone());
            assert_eq!(claims, want_claims, "{name}");
            // Idempotent: the second run sees the cgroupfs path and keeps it, and the unit.
            let again = Placement.apply(&mut got, &ctx).unwrap();
            assert_eq!(got, spec(Some(want), *annotation), "{name} (twice)");
            assert_eq!(
                again.scope().map(|(path, _)| path),
                Some(Path::new(want)),
                "{name}"
            );
            assert_eq!(again.0.last(), Some(&unit), "{name} (twice)");
        }
    }

    #[test]
    fn pact_owner_places_in_its_sub_slices() {
        let mut config = config(&[]);
        config.owner = "pact".into();
        config.slices.default = "pact-infra.slice".into();
        let mut got = spec(Some("/ns/c1"), Some("pact-gpu.slice"));
        Placement.apply(&mut got, &ctx(&config, false)).unwrap();
        assert_eq!(
            got,
            spec(
                Some("/pact.slice/pact-gpu.slice/ns/c1"),
                Some("pact-gpu.slice")
            )
        );
        let mut got = spec(None, None);
        Placement.apply(&mut got, &ctx(&config, false)).unwrap();
        assert_eq!(got, spec(Some("/pact.slice/pact-infra.slice/c1"), None));
    }

    /// (name, cgroupsPath, annotation, systemd, words the error must contain)
    type Refusal = (
        &'static str,
        Option<&'static str>,
        Option<&'static str>,
        bool,
        &'static [&'static str],
    );

    #[test]
    fn refusals_name_the_slice_and_its_owner_and_leave_the_spec_alone() {
        let cases: &[Refusal] = &[
            (
                "foreign annotation",
                None,
                Some("pact.slice"),
                false,
                &["/pact.slice", "\"pact\"", "\"workload\""],
            ),
            (
                "foreign sub-slice unit",
                None,
                Some("pact-gpu.slice"),
                false,
                &["/pact.slice/pact-gpu.slice", "\"pact\""],
            ),
            (
                "prefix is not ownership",
                None,
                Some("workload.slice-extra"),
                false,
                &[
                    "/workload.slice-extra",
                    "no owner",
                    "workload = /workload.slice",
                ],
            ),
            (
                "dot dot in annotation",
                None,
                Some("workload.slice/../pact.slice"),
                false,
                &["\"..\"", "workload.slice/../pact.slice"],
            ),
            (
                "dot dot in cgroupsPath",
                Some("/ns/../../pact.slice/c1"),
                None,
                false,
                &["\"..\"", "/ns/../../pact.slice/c1"],
            ),
            (
                "absolute escape to the root",
                None,
                Some("/"),
                false,
                &["asks for /", "no owner"],
            ),
            (
                "absolute escape elsewhere",
                None,
                Some("/system.slice"),
                false,
                &["/system.slice", "no owner"],
            ),
            (
                "foreign cgroupsPath",
                Some("/pact.slice/pact-audit.slice/c1"),
                None,
                false,
                &["cgroupsPath", "/pact.slice/pact-audit.slice/c1", "\"pact\""],
            ),
            (
                "cgroupsPath is the root",
                Some("/"),
                None,
                false,
                &["names a slice itself"],
            ),
            (
                "cgroupsPath is a slice",
                Some("/workload.slice"),
                None,
                false,
                &["/workload.slice", "names a slice itself"],
            ),
            (
                "systemd foreign",
                Some("pact-network.slice:x:c1"),
                None,
                true,
                &["/pact.slice/pact-network.slice", "\"pact\""],
            ),
            (
                "systemd escape in name",
                Some("system.slice:x:../c1"),
                None,
                true,
                &["system.slice:x:../c1", "slice:prefix:name"],
            ),
            (
                "systemd two parts",
                Some("system.slice:c1"),
                None,
                true,
                &["slice:prefix:name"],
            ),
            (
                "systemd scope target",
                None,
                Some("workload.slice/job.scope"),
                true,
                &["job.scope", "cgroupfs"],
            ),
            (
                "interface file in annotation",
                None,
                Some("workload.slice/cgroup.procs"),
                false,
                &[
                    "annotation io.cdirun.slice",
                    "\"cgroup.procs\"",
                    "interface file",
                ],
            ),
            (
                "v1 tasks file in annotation",
                None,
                Some("workload.slice/tasks"),
                false,
                &["/workload.slice/tasks", "\"tasks\""],
            ),
            (
                "controller prefix in annotation",
                None,
                Some("workload.slice/memory.limit_in_bytes"),
                false,
                &["\"memory.limit_in_bytes\"", "controller prefix"],
            ),
            (
                "controller prefix below a good slice",
                None,
                Some("workload.slice/train.slice/cpu.weight"),
                false,
                &["\"cpu.weight\""],
            ),
            (
                "interface file in cgroupsPath",
                Some("/ns/pids.max"),
                None,
                false,
                &["cgroupsPath", "\"pids.max\""],
            ),
            (
                "interface file as the systemd slice",
                None,
                Some("workload.slice/cgroup.threads"),
                true,
                &["\"cgroup.threads\""],
            ),
            (
                "systemd non-unit slice",
                None,
                Some("workload.slice/train.slice"),
                true,
                &["/workload.slice/train.slice", "systemd unit"],
            ),
        ];
        let config = config(&[]);
        for (name, input, annotation, systemd, words) in cases {
            let mut got = spec(*input, *annotation);
            let before = got.clone();
            let err = Placement
                .apply(&mut got, &ctx(&config, *systemd))
                .expect_err(name)
                .to_string();
            for word in *words {
                assert!(err.contains(word), "{name}: {err:?} lacks {word:?}");
            }
            assert_eq!(got, before, "{name}");
        }
    }

    #[test]
    fn config_errors_are_refused() {
        let mut unknown_owner = config(&[]);
        unknown_owner.owner = "nobody".into();
        let mut foreign_default = config(&[]);
        foreign_default.slices.default = "pact.slice".into();
        let mut bad_respect = config(&[]);
        bad_respect.slices.respect = vec!["/a/../b".into()];
        for (config, word) in [
            (unknown_owner, "\"nobody\""),
            (foreign_default, "[slices] default"),
            (bad_respect, "respect entry \"/a/../b\""),
        ] {
            let err = Placement
                .apply(&mut spec(None, None), &ctx(&config, false))
                .unwrap_err()
                .to_string();
            assert!(err.contains(word), "{err}");
        }
    }

    #[test]
    fn a_container_id_with_a_controller_prefix_is_refused_as_a_cgroup_name() {
        let config = Config::default();
        let ctx = Context::new("memory.c1", &config, Path::new("/run/cdirun"));
        let mut got = spec(None, None);
        let err = Placement.apply(&mut got, &ctx).unwrap_err().to_string();
        for word in ["container id", "/workload.slice/memory.c1", "\"memory.c1\""] {
            assert!(err.contains(word), "{err:?} lacks {word:?}");
        }
        assert_eq!(got, spec(None, None));
        // A dot elsewhere is a plain name.
        let ctx = Context::new("train.v2", &config, Path::new("/run/cdirun"));
        let mut got = spec(None, None);
        Placement.apply(&mut got, &ctx).unwrap();
        assert_eq!(got, spec(Some("/workload.slice/train.v2"), None));
    }

    #[test]
    fn non_linux_spec_is_refused_and_untouched() {
        let config = Config::default();
        let mut spec = Spec::default();
        spec.set_linux(None);
        let before = spec.clone();
        assert!(Placement.apply(&mut spec, &ctx(&config, false)).is_err());
        assert_eq!(spec, before);
    }
}

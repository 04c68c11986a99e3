//! One CDI spec file: its serde model (unknown fields are errors), parsing from JSON or YAML,
//! and validation that reports every problem with the field it is in.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::name;

/// Spec versions cdirun loads, oldest first (the reference library's accepted range).
pub const VERSIONS: [&str; 8] = [
    "0.3.0", "0.4.0", "0.5.0", "0.6.0", "0.7.0", "0.8.0", "1.0.0", "1.1.0",
];

pub use crate::engine::hook_stage::HOOK_STAGES;

/// `permissions` value that asks for a device cgroup rule granting no access.
pub const NO_PERMISSIONS: &str = "none";

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Spec {
    pub cdi_version: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub devices: Vec<Device>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_edits: Option<ContainerEdits>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Device {
    pub name: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub container_edits: ContainerEdits,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ContainerEdits {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_nodes: Vec<DeviceNode>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<Hook>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<Mount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intel_rdt: Option<IntelRdt>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub additional_gids: Vec<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub net_devices: Vec<NetDevice>,
}

impl ContainerEdits {
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeviceNode {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<String>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub typ: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub major: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minor: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_mode: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Mount {
    pub host_path: String,
    pub container_path: String,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub typ: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Hook {
    pub hook_name: String,
    pub path: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IntelRdt {
    #[serde(default, rename = "closID", skip_serializing_if = "Option::is_none")]
    pub clos_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l3_cache_schema: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_bw_schema: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schemata: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_monitoring: Option<bool>,
    /// Before 1.1.0 only (replaced by `enableMonitoring`).
    #[serde(default, rename = "enableCMT", skip_serializing_if = "Option::is_none")]
    pub enable_cmt: Option<bool>,
    /// Before 1.1.0 only (replaced by `enableMonitoring`).
    #[serde(default, rename = "enableMBM", skip_serializing_if = "Option::is_none")]
    pub enable_mbm: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NetDevice {
    pub host_interface_name: String,
    pub name: String,
}

/// One thing wrong with a spec: the field (a path like `devices[2].containerEdits.env[0]`) and
/// what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub field: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("cannot read CDI spec {path}: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("CDI spec {path} is not a .json or .yaml file")]
    Extension { path: PathBuf },
    #[error("invalid CDI spec {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid CDI spec {path}: {}", join(problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

fn join(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(Problem::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl SpecError {
    /// Every problem as (field, message); a read or parse error is one problem without a field.
    pub fn problems(&self) -> Vec<Problem> {
        match self {
            SpecError::Invalid { problems, .. } => problems.clone(),
            SpecError::Read { cause, .. } => vec![Problem {
                field: String::new(),
                message: format!("cannot read: {cause}"),
            }],
            SpecError::Extension { .. } => vec![Problem {
                field: String::new(),
                message: "not a .json or .yaml file".into(),
            }],
            SpecError::Parse { message, .. } => vec![Problem {
                field: String::new(),
                message: message.clone(),
            }],
        }
    }
}

/// Whether `path` names a spec file by its extension.
pub fn is_spec_file(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("json" | "yaml")
    )
}

/// Reads, parses and validates one spec file.
pub fn load(path: &Path) -> Result<Spec, SpecError> {
    let bytes = std::fs::read(path).map_err(|cause| SpecError::Read {
        path: path.to_owned(),
        cause,
    })?;
    let spec = parse(&bytes, path)?;
    let problems = validate(&spec);
    if problems.is_empty() {
        Ok(spec)
    } else {
        Err(SpecError::Invalid {
            path: path.to_owned(),
            problems,
        })
    }
}

/// Parses spec bytes as JSON or YAML by the file's extension; `path` also names it in errors.
pub fn parse(bytes: &[u8], path: &Path) -> Result<Spec, SpecError> {
    let parse_error = |message: String| SpecError::Parse {
        path: path.to_owned(),
        message: message.replace('\n', " "),
    };
    match path.extension().and_then(|e| e.to_str()) {
        Some("json") => serde_json::from_slice(bytes).map_err(|e| parse_error(e.to_string())),
        Some("yaml") => serde_yaml::from_slice(bytes).map_err(|e| parse_error(e.to_string())),
        _ => Err(SpecError::Extension {
            path: path.to_owned(),
        }),
    }
}

/// Every problem in `spec`: version gate, names, required fields, edit syntax.
pub fn validate(spec: &Spec) -> Vec<Problem> {
    let mut v = Validator::default();
    v.spec(spec);
    v.problems
}

/// The place of `version` in VERSIONS. As in the reference library, one leading `v` is allowed
/// (`v0.5.0` is `0.5.0`): NVIDIA's generator and others write it.
fn version_index(version: &str) -> Option<usize> {
    let version = version.strip_prefix('v').unwrap_or(version);
    VERSIONS.iter().position(|known| *known == version)
}

#[derive(Default)]
struct Validator {
    problems: Vec<Problem>,
    /// (field, the spec version that field needs).
    needs: Vec<(String, &'static str)>,
}

impl Validator {
    fn problem(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            field: field.into(),
            message: message.into(),
        });
    }

    fn need(&mut self, field: impl Into<String>, version: &'static str) {
        self.needs.push((field.into(), version));
    }

    fn spec(&mut self, spec: &Spec) {
        let declared = version_index(&spec.cdi_version);
        if declared.is_none() {
            self.problem(
                "cdiVersion",
                format!(
                    "unsupported version {:?}: cdirun loads {} to {}",
                    spec.cdi_version,
                    VERSIONS[0],
                    VERSIONS[VERSIONS.len() - 1]
                ),
            );
        }
        match name::parse_kind(&spec.kind) {
            Ok((_, class)) => {
                if class.contains('.') {
                    self.need("kind", "0.6.0");
                }
            }
            Err(why) => self.problem("kind", why),
        }
        if !spec.annotations.is_empty() {
            self.need("annotations", "0.6.0");
        }
        self.annotations("annotations", &spec.annotations);
        if let Some(edits) = &spec.container_edits {
            self.edits("containerEdits", edits, declared);
        }
        if spec.devices.is_empty() {
            self.problem("devices", "a spec needs at least one device");
        }
        let mut seen = BTreeMap::new();
        for (i, device) in spec.devices.iter().enumerate() {
            let field = format!("devices[{i}]");
            if let Some(first) = seen.insert(device.name.as_str(), i) {
                self.problem(
                    format!("{field}.name"),
                    format!(
                        "device {:?} is defined twice (also devices[{first}])",
                        device.name
                    ),
                );
            }
            self.device(&field, device, declared);
        }
        if let Some(declared) = declared {
            let needs = std::mem::take(&mut self.needs);
            for (field, version) in needs {
                if version_index(version).is_some_and(|need| need > declared) {
                    self.problem(
                        field,
                        format!(
                            "needs cdiVersion {version} or later, but the spec declares {}",
                            spec.cdi_version
                        ),
                    );
                }
            }
        }
    }

    fn annotations(&mut self, field: &str, annotations: &BTreeMap<String, String>) {
        for key in annotations.keys() {
            if key.is_empty() {
                self.problem(field, "empty annotation key");
            }
        }
    }

    fn device(&mut self, field: &str, device: &Device, declared: Option<usize>) {
        match name::check_device_name(&device.name) {
            Err(why) => self.problem(
                format!("{field}.name"),
                format!("invalid device name {:?}: {why}", device.name),
            ),
            Ok(()) => {
                if !device.name.as_bytes()[0].is_ascii_alphabetic() {
                    self.need(format!("{field}.name"), "0.5.0");
                }
            }
        }
        if !device.annotations.is_empty() {
            self.need(format!("{field}.annotations"), "0.6.0");
        }
        self.annotations(&format!("{field}.annotations"), &device.annotations);
        let edits_field = format!("{field}.containerEdits");
        if device.container_edits.is_empty() {
            self.problem(&edits_field, "a device needs at least one container edit");
        }
        self.edits(&edits_field, &device.container_edits, declared);
    }

    fn env(&mut self, field: &str, env: &[String]) {
        for (i, entry) in env.iter().enumerate() {
            if entry.find('=').is_none_or(|at| at == 0) {
                self.problem(
                    format!("{field}[{i}]"),
                    format!("invalid environment variable {entry:?}: expected KEY=VALUE"),
                );
            }
        }
    }

    fn edits(&mut self, field: &str, edits: &ContainerEdits, declared: Option<usize>) {
        self.env(&format!("{field}.env"), &edits.env);
        for (i, node) in edits.device_nodes.iter().enumerate() {
            self.device_node(&format!("{field}.deviceNodes[{i}]"), node);
        }
        for (i, hook) in edits.hooks.iter().enumerate() {
            let f = format!("{field}.hooks[{i}]");
            if !HOOK_STAGES.contains(&hook.hook_name.as_str()) {
                self.problem(
                    format!("{f}.hookName"),
                    format!(
                        "invalid hook name {:?}: use one of {}",
                        hook.hook_name,
                        HOOK_STAGES.join(", ")
                    ),
                );
            }
            if hook.path.is_empty() {
                self.problem(format!("{f}.path"), "empty hook path");
            }
            self.env(&format!("{f}.env"), &hook.env);
        }
        for (i, mount) in edits.mounts.iter().enumerate() {
            let f = format!("{field}.mounts[{i}]");
            if mount.host_path.is_empty() {
                self.problem(format!("{f}.hostPath"), "empty mount host path");
            }
            if mount.container_path.is_empty() {
                self.problem(format!("{f}.containerPath"), "empty mount container path");
            }
            if mount.typ.as_deref().is_some_and(|t| !t.is_empty()) {
                self.need(format!("{f}.type"), "0.4.0");
            }
        }
        if let Some(rdt) = &edits.intel_rdt {
            self.intel_rdt(&format!("{field}.intelRdt"), rdt, declared);
        }
        if !edits.additional_gids.is_empty() {
            self.need(format!("{field}.additionalGids"), "0.7.0");
        }
        if !edits.net_devices.is_empty() {
            self.need(format!("{field}.netDevices"), "1.1.0");
        }
        let mut hosts = BTreeMap::new();
        let mut names = BTreeMap::new();
        for (i, dev) in edits.net_devices.iter().enumerate() {
            let f = format!("{field}.netDevices[{i}]");
            if dev.host_interface_name.is_empty() {
                self.problem(
                    format!("{f}.hostInterfaceName"),
                    "empty host interface name",
                );
            } else if let Some(first) = hosts.insert(dev.host_interface_name.as_str(), i) {
                self.problem(
                    format!("{f}.hostInterfaceName"),
                    format!(
                        "host interface {:?} is also netDevices[{first}]",
                        dev.host_interface_name
                    ),
                );
            }
            if dev.name.is_empty() {
                self.problem(format!("{f}.name"), "empty interface name");
            } else if let Some(first) = names.insert(dev.name.as_str(), i) {
                self.problem(
                    format!("{f}.name"),
                    format!("interface name {:?} is also netDevices[{first}]", dev.name),
                );
            }
        }
    }

    fn device_node(&mut self, f: &str, node: &DeviceNode) {
        if node.path.is_empty() {
            self.problem(format!("{f}.path"), "empty device path");
        }
        if node.host_path.as_deref().is_some_and(|p| !p.is_empty()) {
            self.need(format!("{f}.hostPath"), "0.5.0");
        }
        if let Some(typ) = &node.typ {
            if !matches!(typ.as_str(), "" | "b" | "c" | "u" | "p") {
                self.problem(
                    format!("{f}.type"),
                    format!("invalid device type {typ:?}: use b, c, u or p"),
                );
            }
        }
        // Any major and minor is accepted, as by the reference library: a negative one is read
        // as absent when the node is injected (edit/cdi.rs), never as a cgroup wildcard.
        if let Some(perms) = &node.permissions {
            let valid = perms.is_empty()
                || perms == NO_PERMISSIONS
                || perms.chars().all(|c| matches!(c, 'r' | 'w' | 'm'));
            if !valid {
                self.problem(
                    format!("{f}.permissions"),
                    format!("invalid permissions {perms:?}: use a combination of r, w, m, or none"),
                );
            }
        }
    }

    fn intel_rdt(&mut self, f: &str, rdt: &IntelRdt, declared: Option<usize>) {
        self.need(f, "0.7.0");
        if let Some(clos) = &rdt.clos_id {
            // A CLOS is a resctrl directory name; "/" names the root CLOS.
            let invalid = clos != "/"
                && (clos.len() >= 4096
                    || clos == "."
                    || clos == ".."
                    || clos.contains(['/', '\n']));
            if invalid {
                self.problem(format!("{f}.closID"), format!("invalid closID {clos:?}"));
            }
        }
        if rdt.schemata.is_some() {
            self.need(format!("{f}.schemata"), "1.1.0");
        }
        if rdt.enable_monitoring.is_some() {
            self.need(format!("{f}.enableMonitoring"), "1.1.0");
        }
        let v110 = version_index("1.1.0");
        if declared.is_some() && declared >= v110 {
            for (key, set) in [
                ("enableCMT", rdt.enable_cmt.is_some()),
                ("enableMBM", rdt.enable_mbm.is_some()),
            ] {
                if set {
                    self.problem(
                        format!("{f}.{key}"),
                        "not valid from cdiVersion 1.1.0: use enableMonitoring",
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Result<Spec, SpecError> {
        parse(text.as_bytes(), Path::new("/cdi/t.yaml"))
    }

    fn fields(text: &str) -> Vec<String> {
        validate(&yaml(text).unwrap())
            .into_iter()
            .map(|p| p.field)
            .collect()
    }

    const GOOD: &str = r#"
cdiVersion: "0.5.0"
kind: vendor.com/gpu
containerEdits:
  env: ["SPEC=1"]
devices:
  - name: gpu0
    containerEdits:
      deviceNodes:
        - path: /dev/vgpu0
          hostPath: /dev/vgpu0
          permissions: rw
"#;

    #[test]
    fn a_good_spec_has_no_problems() {
        assert_eq!(fields(GOOD), Vec::<String>::new());
    }

    #[test]
    fn json_and_yaml_parse_to_the_same_spec() {
        let json = r#"{"cdiVersion":"0.5.0","kind":"vendor.com/gpu",
            "containerEdits":{"env":["SPEC=1"]},
            "devices":[{"name":"gpu0","containerEdits":{"deviceNodes":[
              {"path":"/dev/vgpu0","hostPath":"/dev/vgpu0","permissions":"rw"}]}}]}"#;
        let from_json = parse(json.as_bytes(), Path::new("t.json")).unwrap();
        assert_eq!(from_json, yaml(GOOD).unwrap());
    }

    #[test]
    fn unknown_fields_are_errors_naming_the_field() {
        let err =
            yaml("cdiVersion: 0.5.0\nkind: v.com/c\ndevices: []\ncontainerEdit: {}\n").unwrap_err();
        assert!(err.to_string().contains("containerEdit"), "{err}");
        let err = parse(
            br#"{"cdiVersion":"0.5.0","kind":"v.com/c","devices":[{"name":"a","containerEdits":{"env":["A=1"],"mountz":[]}}]}"#,
            Path::new("/x.json"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("mountz"), "{err}");
        assert!(err.to_string().contains("/x.json"), "{err}");
    }

    #[test]
    fn other_extensions_are_refused() {
        assert!(matches!(
            parse(b"{}", Path::new("a.yml")),
            Err(SpecError::Extension { .. })
        ));
    }

    #[test]
    fn validation_table() {
        let cases: [(&str, &str, &[&str]); 18] = [
            (
                "unsupported version",
                "cdiVersion: 0.2.0\nkind: v.com/c\ndevices: [{name: a, containerEdits: {env: [A=1]}}]",
                &["cdiVersion"],
            ),
            (
                "no devices",
                "cdiVersion: 0.3.0\nkind: v.com/c\ndevices: []",
                &["devices"],
            ),
            (
                "empty device edits",
                "cdiVersion: 0.3.0\nkind: v.com/c\ndevices: [{name: a}]",
                &["devices[0].containerEdits"],
            ),
            (
                "bad kind",
                "cdiVersion: 0.3.0\nkind: vendor\ndevices: [{name: a, containerEdits: {env: [A=1]}}]",
                &["kind"],
            ),
            (
                "bad and duplicate device names",
                "cdiVersion: 0.3.0\nkind: v.com/c\ndevices: [{name: a-, containerEdits: {env: [A=1]}}, {name: b, containerEdits: {env: [A=1]}}, {name: b, containerEdits: {env: [A=1]}}]",
                &["devices[0].name", "devices[2].name"],
            ),
            (
                "bad env",
                "cdiVersion: 0.3.0\nkind: v.com/c\ndevices: [{name: a, containerEdits: {env: [A=1, =x, NOEQ]}}]",
                &[
                    "devices[0].containerEdits.env[1]",
                    "devices[0].containerEdits.env[2]",
                ],
            ),
            (
                "bad hook stage and empty path",
                "cdiVersion: 0.3.0\nkind: v.com/c\ndevices: [{name: a, containerEdits: {hooks: [{hookName: preStart, path: ''}]}}]",
                &[
                    "devices[0].containerEdits.hooks[0].hookName",
                    "devices[0].containerEdits.hooks[0].path",
                ],
            ),
            (
                "bad node type, number, permissions",
                "cdiVersion: 0.3.0\nkind: v.com/c\ndevices: [{name: a, containerEdits: {deviceNodes: [{path: /dev/x, type: x, major: -1, permissions: rwx}]}}]",
                &[
                    "devices[0].containerEdits.deviceNodes[0].type",
                    "devices[0].containerEdits.deviceNodes[0].permissions",
                ],
            ),
            // Regression: the reference library accepts a leading `v` and negative numbers, and
            // a spec refused here hid every device of its file.
            (
                "leading v, negative major and minor",
                "cdiVersion: v0.5.0\nkind: v.com/c\ndevices: [{name: a, containerEdits: {deviceNodes: [{path: /dev/x, type: c, major: -1, minor: -1, hostPath: /dev/y}]}}]",
                &[],
            ),
            (
                "leading v still gates fields",
                "cdiVersion: v0.4.0\nkind: v.com/c\ndevices: [{name: a, containerEdits: {deviceNodes: [{path: /dev/x, hostPath: /dev/y}]}}]",
                &["devices[0].containerEdits.deviceNodes[0].hostPath"],
            ),
            (
                "only one lower-case leading v",
                "cdiVersion: vv0.5.0\nkind: v.com/c\ndevices: [{name: a, containerEdits: {env: [A=1]}}]",
                &["cdiVersion"],
            ),
            (
                "upper-case V",
                "cdiVersion: V0.5.0\nkind: v.com/c\ndevices: [{name: a, containerEdits: {env: [A=1]}}]",
                &["cdiVersion"],
            ),
            (
                "hostPath needs 0.5.0",
                "cdiVersion: 0.4.0\nkind: v.com/c\ndevices: [{name: a, containerEdits: {deviceNodes: [{path: /dev/x, hostPath: /dev/y}]}}]",
                &["devices[0].containerEdits.deviceNodes[0].hostPath"],
            ),
            (
                "mount type needs 0.4.0",
                "cdiVersion: 0.3.0\nkind: v.com/c\ndevices: [{name: a, containerEdits: {mounts: [{hostPath: /a, containerPath: /b, type: bind}]}}]",
                &["devices[0].containerEdits.mounts[0].type"],
            ),
            (
                "additionalGids needs 0.7.0",
                "cdiVersion: 0.6.0\nkind: v.com/c\ndevices: [{name: a, containerEdits: {additionalGids: [5]}}]",
                &["devices[0].containerEdits.additionalGids"],
            ),
            (
                "netDevices and schemata need 1.1.0",
                "cdiVersion: 1.0.0\nkind: v.com/c\ncontainerEdits: {intelRdt: {schemata: [x], enableMonitoring: true}}\ndevices: [{name: a, containerEdits: {netDevices: [{hostInterfaceName: eth1, name: net1}]}}]",
                &[
                    "containerEdits.intelRdt.schemata",
                    "containerEdits.intelRdt.enableMonitoring",
                    "devices[0].containerEdits.netDevices",
                ],
            ),
            (
                "legacy intelRdt fields refused from 1.1.0",
                "cdiVersion: 1.1.0\nkind: v.com/c\ndevices: [{name: a, containerEdits: {intelRdt: {closID: c, enableCMT: true}}}]",
                &["devices[0].containerEdits.intelRdt.enableCMT"],
            ),
            (
                "annotations and digit names need 0.6.0 / 0.5.0",
                "cdiVersion: 0.3.0\nkind: v.com/c\nannotations: {a: b}\ndevices: [{name: '0', containerEdits: {env: [A=1]}}]",
                &["annotations", "devices[0].name"],
            ),
        ];
        for (name, text, want) in cases {
            let mut got = fields(text);
            got.sort();
            let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
            want.sort();
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn load_reports_file_and_every_problem() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.yaml");
        std::fs::write(
            &path,
            "cdiVersion: 0.3.0\nkind: v.com/c\ndevices: [{name: a, containerEdits: {env: [x, y]}}]",
        )
        .unwrap();
        let err = load(&path).unwrap_err();
        assert_eq!(err.problems().len(), 2);
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("env[0]") && msg.contains("env[1]"), "{msg}");
    }
}

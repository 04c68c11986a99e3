//! Bad input, generated: config.json, CDI specs, hooks.d files, annotations, cgroupsPath and
//! the config file. Whatever the input, the parsers and the pure edits never panic, and every
//! error names the bad part (the file, and the field, key, line or value where one is at fault).
//!
//! Pure library calls: no root, no containers. Case counts are kept small so this runs in
//! seconds.

use std::collections::HashMap;
use std::path::Path;

use libcontainer::oci_spec::runtime::Spec;
use proptest::prelude::*;
use serde_json::{Value, json};

use cdirun::cdi::spec as cdi_spec;
use cdirun::config::Config;
use cdirun::hooksd::{Definition, HooksdError};
use cdirun::{bundle, edit, request};

fn cases(n: u32) -> ProptestConfig {
    ProptestConfig {
        cases: n,
        // A failure is shrunk, but never for long.
        max_shrink_iters: 256,
        ..ProptestConfig::default()
    }
}

/// Strings that stress parsers: empty, spaces, separators, `..`, unicode, control characters.
fn nasty() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("..".to_owned()),
        Just("/".to_owned()),
        Just(" ".to_owned()),
        "[a-z0-9./=,:_-]{1,12}",
        "[\\PC]{0,12}",
        "[\\x00-\\x1f\"\\\\]{1,4}",
    ]
}

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        nasty().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(nasty(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

// ---- config.json -------------------------------------------------------------------------

/// A realistic config.json, as `cdirun spec` writes it plus the fields clients add.
fn base_config_json() -> Value {
    let mut spec = serde_json::to_value(Spec::default()).unwrap();
    spec["linux"]["cgroupsPath"] = json!("/libpod_parent/libpod-abc");
    spec["annotations"] = json!({"io.cdirun.gpu.count": "1"});
    spec["hostname"] = json!("box");
    spec
}

/// JSON pointers of fields a client sets; the property replaces one with any value.
const CONFIG_FIELDS: &[&str] = &[
    "/ociVersion",
    "/process/args",
    "/process/env",
    "/process/cwd",
    "/process/user/uid",
    "/process/capabilities/bounding",
    "/process/rlimits",
    "/root/path",
    "/root/readonly",
    "/hostname",
    "/mounts",
    "/mounts/0/destination",
    "/mounts/1/options",
    "/linux/namespaces",
    "/linux/namespaces/0/type",
    "/linux/cgroupsPath",
    "/linux/maskedPaths",
    "/annotations",
];

const MARK: &str = "\u{1}cdirun-prop-mark\u{1}";

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn config_json_bytes_never_panic_and_errors_name_the_file(
        bytes in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let path = Path::new("/bundle/config.json");
        if let Err(err) = bundle::parse(&bytes, path) {
            prop_assert!(err.to_string().starts_with("/bundle/config.json:"), "{err}");
        }
    }

    /// One field of a valid config.json replaced by any JSON value: either it still parses,
    /// or the error points at the line of that field.
    #[test]
    fn config_json_bad_field_is_reported_at_its_line(
        field in prop::sample::select(CONFIG_FIELDS),
        value in json_value(),
    ) {
        let mut spec = base_config_json();
        *spec.pointer_mut(field).expect("the base config has every listed field") = json!(MARK);
        let marked = serde_json::to_string_pretty(&spec).unwrap();
        let mark = serde_json::to_string(MARK).unwrap();
        let line = marked.lines().position(|l| l.contains(&mark)).unwrap() + 1;
        // The compact value stays on the marked line.
        let text = marked.replace(&mark, &serde_json::to_string(&value).unwrap());
        let path = Path::new("/bundle/config.json");
        if let Err(err) = bundle::parse(text.as_bytes(), path) {
            let message = err.to_string();
            prop_assert!(
                message.starts_with(&format!("/bundle/config.json:{line}:")),
                "{field} = {value} on line {line}: {message}"
            );
        }
    }
}

// ---- the config file -----------------------------------------------------------------------

/// (table, key) of every config key, with a well-typed value.
const CONFIG_KEYS: &[(&str, &str, &str)] = &[
    ("", "owner", "\"workload\""),
    ("", "state-dir", "\"/run/s\""),
    ("cdi", "spec-dirs", "[\"/etc/cdi\"]"),
    ("cdi", "annotation-prefixes", "[\"cdi.k8s.io/\"]"),
    ("cdi", "accept-env", "true"),
    ("cdi", "env-when-unprivileged", "\"ignore\""),
    ("gpu", "default-vendor", "\"nvidia\""),
    ("gpu", "nccl-socket-ifname", "\"eth0\""),
    ("mps", "lifetime", "\"per_run\""),
    ("mps", "root", "\"/run/mps\""),
    ("mps", "control", "\"nvidia-cuda-mps-control\""),
    ("time-slice", "smi", "\"nvidia-smi\""),
    ("slices", "default", "\"workload.slice\""),
    ("slices", "respect", "[]"),
    ("hooks", "dirs", "[\"/etc/cdirun/hooks.d\"]"),
    ("hooks", "on-error", "\"fail\""),
];

fn toml_line(table: &str, key: &str, value: &str) -> String {
    if table.is_empty() {
        format!("{key} = {value}\n")
    } else {
        format!("[{table}]\n{key} = {value}\n")
    }
}

/// TOML values of every type.
fn toml_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        "[a-z_]{0,8}".prop_map(|s| format!("{s:?}")),
        Just("[1, 2]".to_owned()),
        Just("[\"a\", 1]".to_owned()),
        Just("{ a = 1 }".to_owned()),
        Just("1979-05-27T07:32:00Z".to_owned()),
        Just("3.5".to_owned()),
    ]
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn config_file_text_never_panics_and_errors_name_the_file(text in "[\\PC\\n]{0,200}") {
        if let Err(err) = Config::parse(&text, Path::new("/etc/cdirun/config.toml")) {
            let message = err.to_string();
            prop_assert!(message.contains("/etc/cdirun/config.toml"), "{message}");
            prop_assert!(!message.contains('\n'), "one line: {message:?}");
        }
    }

    /// A known key with a value of any type: accepted only when it is the key's type, and an
    /// error names the key.
    #[test]
    fn config_file_wrong_type_names_the_key(
        entry in prop::sample::select(CONFIG_KEYS),
        value in toml_value(),
    ) {
        let (table, key, good) = entry;
        prop_assert!(
            Config::parse(&toml_line(table, key, good), Path::new("/c.toml")).is_ok(),
            "the well-typed value of {key} is accepted"
        );
        if let Err(err) = Config::parse(&toml_line(table, key, &value), Path::new("/c.toml")) {
            let message = err.to_string();
            prop_assert!(message.contains("/c.toml") && message.contains(key), "{message}");
        }
    }

    /// Keys the config does not know are refused by name, in every table.
    #[test]
    fn config_file_unknown_key_is_named(
        table in prop::sample::select(&["", "cdi", "gpu", "mps", "time-slice", "slices", "hooks"][..]),
        key in "[a-z][a-z0-9-]{0,15}",
    ) {
        let known = CONFIG_KEYS.iter().any(|(t, k, _)| *t == table && *k == key)
            || (table.is_empty() && ["cdi", "gpu", "mps", "time-slice", "slices", "hooks"].contains(&key.as_str()))
            || (table == "slices" && ["owners", "limits"].contains(&key.as_str()));
        prop_assume!(!known);
        let err = Config::parse(&toml_line(table, &key, "1"), Path::new("/c.toml"))
            .expect_err("an unknown key is an error");
        let message = err.to_string();
        prop_assert!(message.contains(&format!("unknown field `{key}`")), "{message}");
    }
}

// ---- CDI specs -----------------------------------------------------------------------------

/// A valid CDI spec with one device.
fn base_cdi_spec() -> Value {
    json!({
        "cdiVersion": "0.6.0",
        "kind": "vendor.example.com/gpu",
        "containerEdits": {
            "env": ["VENDOR_CAPS=compute"],
            "mounts": [{"hostPath": "/opt/lib", "containerPath": "/usr/lib/vendor",
                        "options": ["ro", "bind"]}],
            "hooks": [{"hookName": "createContainer", "path": "/usr/bin/vendor-hook"}]
        },
        "devices": [{
            "name": "gpu0",
            "containerEdits": {
                "env": ["VENDOR_DEVICE=0"],
                "deviceNodes": [{"path": "/dev/vendor0", "type": "c", "major": 195, "minor": 0}]
            }
        }]
    })
}

/// (JSON pointer, the field name validation problems use for it).
const CDI_FIELDS: &[(&str, &str)] = &[
    ("/cdiVersion", "cdiVersion"),
    ("/kind", "kind"),
    ("/containerEdits/env/0", "containerEdits.env[0]"),
    (
        "/containerEdits/mounts/0/hostPath",
        "containerEdits.mounts[0].hostPath",
    ),
    (
        "/containerEdits/mounts/0/containerPath",
        "containerEdits.mounts[0].containerPath",
    ),
    (
        "/containerEdits/hooks/0/hookName",
        "containerEdits.hooks[0].hookName",
    ),
    (
        "/containerEdits/hooks/0/path",
        "containerEdits.hooks[0].path",
    ),
    ("/devices/0/name", "devices[0].name"),
    (
        "/devices/0/containerEdits/env/0",
        "devices[0].containerEdits.env[0]",
    ),
    (
        "/devices/0/containerEdits/deviceNodes/0/path",
        "devices[0].containerEdits.deviceNodes[0].path",
    ),
    (
        "/devices/0/containerEdits/deviceNodes/0/type",
        "devices[0].containerEdits.deviceNodes[0].type",
    ),
];

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn cdi_spec_bytes_never_panic_and_errors_name_the_file(
        bytes in prop::collection::vec(any::<u8>(), 0..256),
        yaml in any::<bool>(),
    ) {
        let path = Path::new(if yaml { "/etc/cdi/v.yaml" } else { "/etc/cdi/v.json" });
        match cdi_spec::parse(&bytes, path) {
            Err(err) => prop_assert!(err.to_string().contains(path.to_str().unwrap()), "{err}"),
            Ok(spec) => { cdi_spec::validate(&spec); }
        }
    }

    /// One string field of a valid spec replaced by any string: the spec either stays valid, or
    /// every problem is about that field.
    #[test]
    fn cdi_spec_bad_field_is_the_only_problem_named(
        field in prop::sample::select(CDI_FIELDS),
        value in nasty(),
    ) {
        let (pointer, name) = field;
        let mut spec = base_cdi_spec();
        *spec.pointer_mut(pointer).unwrap() = json!(value);
        let bytes = serde_json::to_vec(&spec).unwrap();
        let parsed = match cdi_spec::parse(&bytes, Path::new("/etc/cdi/v.json")) {
            Ok(parsed) => parsed,
            Err(err) => {
                // An enum-like field (a device node type) may be refused by the parser itself.
                prop_assert!(err.to_string().contains("/etc/cdi/v.json"), "{err}");
                return Ok(());
            }
        };
        for problem in cdi_spec::validate(&parsed) {
            prop_assert!(
                problem.field == name,
                "{pointer} = {value:?}: problem in another field: {problem}"
            );
        }
    }
}

// ---- hooks.d -------------------------------------------------------------------------------

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn hooks_file_text_never_panics_and_errors_name_the_file(text in "[\\PC\\n]{0,200}") {
        let file = Path::new("/etc/cdirun/hooks.d/50-x.json");
        if let Err(err) = Definition::parse(&text, file, &|_| true) {
            prop_assert!(err.to_string().contains("/etc/cdirun/hooks.d/50-x.json"), "{err}");
        }
    }

    /// Any value in any field of a valid definition, current or legacy schema: an error names
    /// the file, and an unknown stage is named with the field it is in.
    #[test]
    fn hooks_file_bad_field_is_named(
        legacy in any::<bool>(),
        field in 0usize..4,
        value in json_value(),
    ) {
        let mut def = if legacy {
            json!({"hook": "/usr/bin/h", "arguments": ["a"], "stages": ["prestart"],
                   "cmds": [".*"], "annotations": ["^a$"], "hasbindmounts": false})
        } else {
            json!({"version": "1.0.0", "hook": {"path": "/usr/bin/h", "args": ["h"]},
                   "when": {"annotations": {"^a$": "^b$"}, "commands": [".*"]},
                   "stages": ["prestart"]})
        };
        let pointer = match (legacy, field) {
            (_, 0) => "/stages/0",
            (true, 1) => "/cmds/0",
            (false, 1) => "/when/commands/0",
            (true, 2) => "/annotations/0",
            (false, 2) => "/when/annotations/^a$",
            (true, _) => "/hook",
            (false, _) => "/hook/path",
        };
        *def.pointer_mut(pointer).unwrap() = value.clone();
        let file = Path::new("/h.d/x.json");
        match Definition::parse(&def.to_string(), file, &|_| true) {
            Ok(_) => {}
            Err(HooksdError::Stage { stage, field, .. }) => {
                prop_assert_eq!(pointer, "/stages/0");
                prop_assert_eq!(field, "stages");
                prop_assert_eq!(Some(stage.as_str()), value.as_str());
            }
            Err(err) => prop_assert!(err.to_string().contains("/h.d/x.json"), "{err}"),
        }
    }
}

// ---- annotations -----------------------------------------------------------------------------

const CDIRUN_KEYS: &[&str] = &[
    request::GPU_COUNT,
    request::GPU_VENDOR,
    request::GPU_MODEL,
    request::GPU_SHARING,
    request::MPS_THREAD_PERCENTAGE,
    request::MPS_MEM_LIMIT,
    request::DIST_BACKEND,
    request::DIST_MASTER_ADDR,
    request::DIST_MASTER_PORT,
    request::DIST_WORLD_SIZE,
    request::DIST_RANK,
    request::DIST_LOCAL_RANK,
    "cdi.k8s.io/x",
    "io.cdirun.slice",
];

fn spec_with(annotations: &[(String, String)], env: &[String]) -> Spec {
    let mut spec = Spec::default();
    spec.set_annotations(Some(annotations.iter().cloned().collect::<HashMap<_, _>>()));
    if let Some(process) = spec.process_mut() {
        process.set_env(Some(env.to_vec()));
    }
    spec
}

/// Runs every request reader; returns the errors.
fn read_requests(spec: &Spec, config: &Config) -> Vec<String> {
    let mut errors = Vec::new();
    if let Err(err) = request::from_spec(spec, config) {
        errors.push(err.to_string());
    }
    if let Err(err) = request::gpu_from_spec(spec, config) {
        errors.push(err.to_string());
    }
    if let Err(err) = request::distributed_from_spec(spec) {
        errors.push(err.to_string());
    }
    errors
}

fn names(message: &str, text: &str) -> bool {
    message.contains(text) || message.contains(&format!("{text:?}"))
}

proptest! {
    #![proptest_config(cases(256))]

    /// A known key with any value, or any key under cdirun's and CDI's prefixes: every error
    /// names the key, and a value error names the value too.
    #[test]
    fn annotation_errors_name_the_key(
        known in prop::sample::select(CDIRUN_KEYS),
        suffix in prop::option::of("[\\PC]{0,10}"),
        value in nasty(),
    ) {
        let key = match &suffix {
            None => known.to_owned(),
            Some(suffix) if known.starts_with("cdi.k8s.io/") => format!("cdi.k8s.io/{suffix}"),
            Some(suffix) => format!("io.cdirun.{suffix}"),
        };
        let spec = spec_with(&[(key.clone(), value.clone())], &[]);
        for message in read_requests(&spec, &Config::default()) {
            prop_assert!(names(&message, &key), "{key}={value:?}: {message}");
            // Values are read trimmed, and named as read.
            if message.starts_with("invalid annotation ") && !message.contains("annotation key") {
                prop_assert!(names(&message, value.trim()), "{key}={value:?}: {message}");
            }
        }
    }

    /// NVIDIA_VISIBLE_DEVICES / AMD_VISIBLE_DEVICES with any value: an error names the variable
    /// and the bad entry.
    #[test]
    fn visible_devices_env_errors_name_the_variable(
        var in prop::sample::select(&["NVIDIA_VISIBLE_DEVICES", "AMD_VISIBLE_DEVICES"][..]),
        value in "[\\PC]{0,16}",
    ) {
        let spec = spec_with(&[], &[format!("{var}={value}")]);
        if let Err(err) = request::from_spec(&spec, &Config::default()) {
            let message = err.to_string();
            prop_assert!(message.contains(var), "{var}={value:?}: {message}");
        }
    }
}

// ---- cgroupsPath ---------------------------------------------------------------------------

/// cgroupsPath-like strings: components that are slices, `..`, `.`, empty, or anything.
fn cgroups_path() -> impl Strategy<Value = String> {
    let component = prop_oneof![
        Just("workload.slice".to_owned()),
        Just("workload.slice-extra".to_owned()),
        Just("pact.slice".to_owned()),
        Just("pact-gpu.slice".to_owned()),
        Just("kubepods".to_owned()),
        Just("..".to_owned()),
        Just(".".to_owned()),
        Just(String::new()),
        "[a-z0-9_.:-]{1,10}",
        "[\\PC]{1,6}",
    ];
    (any::<bool>(), prop::collection::vec(component, 0..5)).prop_map(|(absolute, parts)| {
        format!("{}{}", if absolute { "/" } else { "" }, parts.join("/"))
    })
}

proptest! {
    #![proptest_config(cases(512))]

    /// Placement never lets a container out of the acting owner's slice (or the kubelet's pod
    /// tree, respected by default): the result is below workload.slice or /kubepods, without
    /// `..`; a refusal names where the bad path came from.
    #[test]
    fn cgroups_path_stays_in_the_owned_slice_or_is_refused_by_name(
        client in prop::option::of(cgroups_path()),
        slice in prop::option::of(cgroups_path()),
        systemd in any::<bool>(),
    ) {
        let config = Config::default();
        let ctx = edit::Context {
            cgroup_driver: if systemd { cdirun::cgroup::Driver::Systemd } else { cdirun::cgroup::Driver::Cgroupfs },
            ..edit::Context::new("c1", &config, Path::new("/run/cdirun"))
        };
        let result = edit::slice::plan(
            client.as_deref().map(Path::new),
            slice.as_deref(),
            &ctx,
        );
        match result {
            Ok(plan) => {
                let path = plan.cgroups_path.to_str().unwrap().to_owned();
                // The kubelet's pod tree ([slices] respect by default) is used as sent.
                let kubelet = |path: &str| {
                    config.slices.respect.iter().any(|prefix| {
                        path == prefix || path.starts_with(&format!("{prefix}/"))
                    })
                };
                if systemd {
                    prop_assert!(
                        path.starts_with("workload.slice:") || path.starts_with("kubepods"),
                        "{client:?} -> {path}"
                    );
                } else {
                    prop_assert!(
                        path.starts_with("/workload.slice/") || kubelet(&path),
                        "{client:?} -> {path}"
                    );
                    prop_assert!(!path.split('/').any(|c| c == ".."), "{client:?} -> {path}");
                }
            }
            Err(err) => {
                // Named by where it came from, or by the path itself (as normalized).
                let message = err.to_string();
                let normalized = |text: &str| {
                    text.split('/').filter(|c| !c.is_empty() && *c != ".").collect::<Vec<_>>().join("/")
                };
                let named = ["cgroupsPath", "io.cdirun.slice", "cgroup path"]
                    .iter()
                    .any(|what| message.contains(what))
                    || [&client, &slice].iter().any(|input| {
                        input.as_deref().is_some_and(|i| message.contains(&normalized(i)))
                    });
                prop_assert!(named, "{client:?} / {slice:?}: {message}");
            }
        }
    }
}

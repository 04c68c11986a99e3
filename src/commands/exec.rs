//! `exec`: run a process inside a running container (`--process FILE` or argv), in the
//! foreground (its exit status is ours) or with `--detach`.
//!
//! The process is always handed to libcontainer as a file. With argv it is built as runc builds
//! it: the container's own process (user, cwd, capabilities, rlimits, ...) with the command and
//! the flags laid over it. libcontainer's own argv mode starts from an empty process instead, so
//! an exec in a container that runs as `nobody` would run as root in `/` and ignore `--tty`.

use std::path::Path;

use anyhow::{Context, Result, bail};
use libcontainer::oci_spec::runtime::Spec;
use serde_json::{Map, Value, json};

use super::Globals;
use crate::engine;

pub fn exec(args: liboci_cli::Exec, globals: &Globals) -> Result<i32> {
    let id = &args.container_id;
    // Refuse early with runc's message rather than libcontainer's state-file error.
    let container = crate::engine::load(&globals.root, id)?;
    engine::exec::refuse_own_user_namespace(&container)?;
    let spec = crate::bundle::load(container.bundle())?;
    let process = match &args.process {
        Some(path) => from_file(path)?,
        None => from_flags(&args, &spec)?,
    };
    check(&process)?;
    if process.get("terminal") == Some(&Value::Bool(true))
        && args.detach
        && args.console_socket.is_none()
    {
        bail!("a detached exec with a terminal needs --console-socket to send the terminal to");
    }
    let tenant = engine::exec::Tenant {
        root: &globals.root,
        console_socket: args.console_socket.as_deref(),
        pid_file: args.pid_file.as_deref().map(super::absolute).transpose()?,
        preserve_fds: args.preserve_fds,
        detach: args.detach,
        ignore_paused: args.ignore_paused,
        sub_cgroup: args.cgroup.clone(),
        rootless: globals.rootless,
    };
    let pid = engine::exec::exec(&tenant, &container, &spec, &process)
        .with_context(|| format!("cannot exec in container {id:?}"))?;
    if args.detach {
        return Ok(0);
    }
    super::run::wait_forwarding(pid)
}

/// `--process FILE`: the file as it is (runc ignores the other process flags then), with runc's
/// zero value for a missing `user`, which libcontainer would refuse.
fn from_file(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read process file {}", path.display()))?;
    let mut process: Value = serde_json::from_str(&text)
        .with_context(|| format!("{}: invalid process JSON", path.display()))?;
    let Some(fields) = process.as_object_mut() else {
        bail!("{}: a process must be a JSON object", path.display());
    };
    fields
        .entry("user")
        .or_insert_with(|| json!({"uid": 0, "gid": 0}));
    Ok(process)
}

/// argv and flags: the container's process from its config.json, with the command, `--tty`,
/// `--env` (replacing a variable of the same name), `--cwd`, `--user`, `--additional-gids`,
/// `--cap`, `--no-new-privs`, `--apparmor` and `--process-label` laid over it as runc does.
fn from_flags(args: &liboci_cli::Exec, spec: &Spec) -> Result<Value> {
    let mut process = match serde_json::to_value(spec.process())? {
        Value::Object(fields) => fields,
        _ => Map::new(),
    };
    process.insert("args".into(), json!(args.command));
    process.insert("terminal".into(), Value::Bool(args.tty));
    set_env(&mut process, &args.env);
    if let Some(cwd) = &args.cwd {
        process.insert("cwd".into(), json!(cwd));
    }
    if args.no_new_privs {
        process.insert("noNewPrivileges".into(), Value::Bool(true));
    }
    if let Some(profile) = &args.apparmor {
        process.insert("apparmorProfile".into(), json!(profile));
    }
    if let Some(label) = &args.process_label {
        process.insert("selinuxLabel".into(), json!(label));
    }
    set_user(&mut process, args.user, &args.additional_gids);
    add_caps(&mut process, &args.cap);
    Ok(Value::Object(process))
}

fn set_env(process: &mut Map<String, Value>, overrides: &[(String, String)]) {
    let mut env: Vec<String> = process
        .get("env")
        .and_then(Value::as_array)
        .map(|entries| {
            entries
                .iter()
                .filter_map(|e| e.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    for (key, value) in overrides {
        env.retain(|entry| entry.split('=').next() != Some(key.as_str()));
        env.push(format!("{key}={value}"));
    }
    process.insert("env".into(), json!(env));
}

/// `--user uid[:gid]` replaces the ids; `--additional-gids` adds to the container's own.
fn set_user(process: &mut Map<String, Value>, user: Option<(u32, Option<u32>)>, gids: &[u32]) {
    let entry = process.entry("user").or_insert_with(|| json!({}));
    if !entry.is_object() {
        *entry = json!({});
    }
    let Value::Object(fields) = entry else {
        return;
    };
    if let Some((uid, gid)) = user {
        fields.insert("uid".into(), json!(uid));
        if let Some(gid) = gid {
            fields.insert("gid".into(), json!(gid));
        }
    }
    fields.entry("uid").or_insert(json!(0));
    fields.entry("gid").or_insert(json!(0));
    if !gids.is_empty() {
        let list = fields.entry("additionalGids").or_insert_with(|| json!([]));
        if let Value::Array(list) = list {
            list.extend(gids.iter().map(|gid| json!(gid)));
        }
    }
}

/// `--cap` joins the bounding, effective and permitted sets, and the ambient one only when the
/// container has inheritable capabilities (without them ambient ones cannot be raised).
fn add_caps(process: &mut Map<String, Value>, caps: &[String]) {
    if caps.is_empty() {
        return;
    }
    let entry = process.entry("capabilities").or_insert_with(|| json!({}));
    let Value::Object(sets) = entry else {
        return;
    };
    let mut targets = vec!["bounding", "effective", "permitted"];
    if sets.get("inheritable").is_some_and(|v| !v.is_null()) {
        targets.push("ambient");
    }
    for set in targets {
        let list = sets.entry(set).or_insert_with(|| json!([]));
        if let Value::Array(list) = list {
            for cap in caps {
                if !list.iter().any(|c| c.as_str() == Some(cap)) {
                    list.push(json!(cap));
                }
            }
        }
    }
}

/// runc's checks of an exec process, in its words, before anything starts.
fn check(process: &Value) -> Result<()> {
    let has_args = process
        .get("args")
        .and_then(Value::as_array)
        .is_some_and(|args| !args.is_empty());
    if !has_args {
        bail!("process args cannot be empty: name a command after the container id");
    }
    match process.get("cwd").and_then(Value::as_str) {
        None | Some("") => bail!("process cwd cannot be empty"),
        Some(cwd) if !cwd.starts_with('/') => {
            bail!("cwd {cwd:?} must be an absolute path")
        }
        Some(_) => Ok(()),
    }
}

//! `explain`: runs create's edit pipeline on a copy of a bundle's config.json and prints what
//! would change, which vendor env the device-request precedence rule overrode or ignored and
//! why, and which claims it would take. Nothing is written, no claim is taken, no
//! daemon is started and no container is created.

use std::collections::BTreeSet;

use anyhow::{Context as _, Result, anyhow};
use serde_json::Value;

use super::Globals;
use crate::cli::ExplainArgs;
use crate::config::{self, Config};
use crate::{bundle, edit, request};

pub fn explain(args: ExplainArgs, globals: &Globals) -> Result<()> {
    let loaded = Config::load(std::env::var_os(config::ENV_VAR).as_deref())?;
    let bundle = super::absolute(&args.bundle)?;
    let original = bundle::Config::load(&bundle)?.source;
    let mut spec = original.clone();
    let hierarchies = crate::cgroup::Hierarchies::discover()
        .context("cannot read the cgroup mounts from /proc/self/mountinfo")?;
    let ctx = edit::Context {
        cgroup_driver: crate::cgroup::Driver::for_host(globals.systemd_cgroup, &hierarchies)
            .map_err(|err| anyhow!(err).context("create would fail"))?,
        dry_run: true,
        ..edit::Context::new(&args.id, &loaded.config, &globals.root)
    };
    // A dry run: the GPU and MPS edits compute their choice from the ledger and references as
    // they are but write nothing, start nothing and run nothing. So nothing is released here
    // either: releasing a claim would free what a live container that shares the id holds.
    let claims = edit::apply_all(&mut spec, &ctx)
        .map_err(|(err, _)| anyhow!(err).context("create would fail"))?;
    // And the mount fix-ups the engine makes on the way to libcontainer: the diff below is what
    // create would write into config.json.
    crate::engine::mounts::fix(&mut spec)
        .map_err(|err| anyhow!(err).context("create would fail"))?;

    let config = match &loaded.path {
        Some(path) => path.display().to_string(),
        None => "embedded defaults".to_owned(),
    };
    use std::fmt::Write as _;
    let mut out = String::new();
    writeln!(out, "bundle: {}", bundle.display())?;
    writeln!(out, "config: {config}")?;
    // The precedence rule's verdict on the vendor visible-devices variables, said in words:
    // the diff alone shows a rewritten value, not why.
    let notes = request::from_spec(&original, &loaded.config)?.env_notes();
    if !notes.is_empty() {
        writeln!(out, "env:")?;
        for note in notes {
            writeln!(out, "  {note}")?;
        }
    }
    let mut lines = Vec::new();
    diff(
        "",
        &serde_json::to_value(&original)?,
        &serde_json::to_value(&spec)?,
        &mut lines,
    );
    if lines.is_empty() {
        writeln!(out, "config.json: no changes")?;
    } else {
        writeln!(out, "config.json changes:")?;
        for line in lines {
            writeln!(out, "  {line}")?;
        }
    }
    if claims.0.is_empty() {
        writeln!(out, "claims: none")?;
    } else {
        writeln!(out, "claims:")?;
        for claim in &claims.0 {
            writeln!(out, "  {}", serde_json::to_string(claim)?)?;
        }
    }
    super::print(&out)?;
    Ok(())
}

/// Lines `+ path: value`, `- path: value` and `~ path: old -> new` that turn `old` into `new`.
/// Lists are compared by element: added and removed elements are shown, not every shifted index.
fn diff(path: &str, old: &Value, new: &Value, out: &mut Vec<String>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                let sub = format!("{path}.{key}");
                match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) => diff(&sub, x, y, out),
                    (Some(x), None) => out.push(format!("- {}: {x}", trim(&sub))),
                    (None, Some(y)) => out.push(format!("+ {}: {y}", trim(&sub))),
                    (None, None) => {}
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a != b => {
            let removed: Vec<&Value> = a.iter().filter(|x| !b.contains(x)).collect();
            let added: Vec<&Value> = b.iter().filter(|y| !a.contains(y)).collect();
            for x in &removed {
                out.push(format!("- {}[]: {x}", trim(path)));
            }
            for y in &added {
                out.push(format!("+ {}[]: {y}", trim(path)));
            }
            if removed.is_empty() && added.is_empty() {
                out.push(format!("~ {}: reordered", trim(path)));
            }
        }
        (a, b) if a != b => out.push(format!("~ {}: {a} -> {b}", trim(path))),
        _ => {}
    }
}

fn trim(path: &str) -> &str {
    path.strip_prefix('.').unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn diff_shows_added_removed_changed_and_reordered() {
        let old = json!({"a": 1, "b": {"c": [1, 2], "d": "x"}, "e": [1, 2], "gone": true});
        let new = json!({"a": 2, "b": {"c": [1, 3], "d": "x"}, "e": [2, 1], "new": {"k": 1}});
        let mut out = Vec::new();
        diff("", &old, &new, &mut out);
        assert_eq!(
            out,
            [
                "~ a: 1 -> 2",
                "- b.c[]: 2",
                "+ b.c[]: 3",
                "~ e: reordered",
                "- gone: true",
                "+ new: {\"k\":1}",
            ]
        );
    }
}

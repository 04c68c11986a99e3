//! `list`: every container under `--root`, as a table, JSON (`--format json`) or ids (`-q`).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Result, bail};
use libcontainer::container::state::State;
use libcontainer::container::{Container, ContainerStatus};
use serde::Serialize;

use super::Globals;

/// One container's state in runc's JSON shape (`state`, `list --format json`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary<'a> {
    pub oci_version: &'a str,
    pub id: &'a str,
    /// 0 once the container has stopped, as runc reports it.
    pub pid: i32,
    pub status: ContainerStatus,
    pub bundle: &'a Path,
    pub created: String,
    pub owner: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<&'a HashMap<String, String>>,
}

impl<'a> Summary<'a> {
    pub fn of(container: &'a Container) -> Self {
        let state = &container.state;
        let pid = match state.status {
            ContainerStatus::Stopped => 0,
            _ => state.pid.unwrap_or(0),
        };
        Summary {
            oci_version: &state.oci_version,
            id: &state.id,
            pid,
            status: state.status,
            bundle: &state.bundle,
            created: state
                .created
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
                .unwrap_or_default(),
            owner: container
                .creator()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default(),
            annotations: state.annotations.as_ref().filter(|a| !a.is_empty()),
        }
    }

    fn status_word(&self) -> String {
        serde_json::to_value(self.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

pub fn list(args: liboci_cli::List, globals: &Globals) -> Result<()> {
    let containers = load_all(&globals.root);
    let summaries: Vec<Summary> = containers.iter().map(Summary::of).collect();
    let out = match (args.quiet, args.format.as_str()) {
        (true, _) => summaries.iter().map(|s| format!("{}\n", s.id)).collect(),
        (false, "json") => format!("{}\n", serde_json::to_string(&summaries)?),
        (false, "table") => table(&summaries),
        (false, other) => bail!("invalid format {other:?}: use table or json"),
    };
    print!("{out}");
    Ok(())
}

/// Loads every container with a state file, sorted by id; unreadable ones are logged and skipped.
fn load_all(root: &Path) -> Vec<Container> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut containers: Vec<Container> = entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|dir| State::file_path(dir).exists())
        .filter_map(|dir| match Container::load(dir.clone()) {
            Ok(container) => Some(container),
            Err(err) => {
                tracing::warn!("skipping {}: {err}", dir.display());
                None
            }
        })
        .collect();
    containers.sort_by(|a, b| a.id().cmp(b.id()));
    containers
}

fn table(summaries: &[Summary]) -> String {
    let header = ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(str::to_owned);
    let rows: Vec<[String; 6]> = summaries
        .iter()
        .map(|s| {
            [
                s.id.to_owned(),
                s.pid.to_string(),
                s.status_word(),
                s.bundle.display().to_string(),
                s.created.clone(),
                s.owner.clone(),
            ]
        })
        .collect();
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows.iter()) {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}   ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

//! `list`: every container under `--root`, as a table, JSON (`--format json`) or ids (`-q`).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
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
    /// The root filesystem's absolute path, as runc reports it; absent when the bundle's
    /// config.json can no longer be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rootfs: Option<PathBuf>,
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
            rootfs: rootfs_of(&state.bundle),
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
        super::status_word(self.status)
    }
}

/// `root.path` of the bundle's config.json, made absolute against the bundle.
fn rootfs_of(bundle: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(bundle.join(crate::bundle::CONFIG_FILE)).ok()?;
    let config: serde_json::Value = serde_json::from_str(&text).ok()?;
    let path = Path::new(config.get("root")?.get("path")?.as_str()?);
    Some(bundle.join(path))
}

pub fn list(args: liboci_cli::List, globals: &Globals) -> Result<()> {
    let containers = crate::engine::container::load_all(&globals.root);
    let summaries: Vec<Summary> = containers.iter().map(Summary::of).collect();
    let out = match (args.quiet, args.format.as_str()) {
        (true, _) => summaries.iter().map(|s| format!("{}\n", s.id)).collect(),
        (false, "json") => format!("{}\n", serde_json::to_string(&summaries)?),
        (false, "table") => table(&summaries),
        (false, other) => bail!("invalid format {other:?}: use table or json"),
    };
    super::print(&out)?;
    Ok(())
}

/// runc's table layout (Go's tabwriter): a column is its widest cell plus three spaces, and at
/// least twelve characters wide.
const PADDING: usize = 3;
const MIN_COLUMN: usize = 12;

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
                let column = (width + PADDING).max(MIN_COLUMN);
                let _ = write!(line, "{cell:<column$}");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

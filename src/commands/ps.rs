//! `ps`: the processes of a container, as pids (`--format json`) or `ps(1)` rows.

use anyhow::{Context, Result, bail};
use libcgroups::common::CgroupManager;

use super::Globals;

pub fn ps(args: liboci_cli::Ps, globals: &Globals) -> Result<()> {
    let container = crate::engine::load(&globals.root, &args.container_id)?;
    let manager = crate::engine::cgroup_manager(&container)?;
    let mut pids: Vec<i32> = manager
        .get_all_pids()
        .with_context(|| format!("cannot list processes of container {:?}", args.container_id))?
        .iter()
        .map(|pid| pid.as_raw())
        .collect();
    pids.sort_unstable();
    match args.format.as_str() {
        "json" => super::print(&format!("{}\n", serde_json::to_string(&pids)?))?,
        "table" => super::print(&ps_table(&pids, &args.ps_options)?)?,
        other => bail!("invalid format {other:?}: use table or json"),
    }
    Ok(())
}

/// Runs `ps` (default `-ef`) and keeps the header and the rows of `pids`.
fn ps_table(pids: &[i32], options: &[String]) -> Result<String> {
    let options = if options.is_empty() {
        vec!["-ef".to_owned()]
    } else {
        options.to_vec()
    };
    let output = std::process::Command::new("ps")
        .args(&options)
        .output()
        .context("cannot run ps")?;
    if !output.status.success() {
        bail!(
            "ps {}: {}",
            options.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let column = header
        .split_whitespace()
        .position(|name| name == "PID")
        .context("ps output has no PID column")?;
    let mut out = format!("{header}\n");
    for line in lines {
        let pid = line
            .split_whitespace()
            .nth(column)
            .and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|pid| pids.contains(&pid)) {
            out.push_str(line);
            out.push('\n');
        }
    }
    Ok(out)
}

//! The checks on node-wide claims, read as files: who holds which GPU in the ledger, and the
//! MPS daemons with the references recorded for them.

use std::collections::BTreeSet;
use std::path::Path;

use super::{Check, fail, ok, warn};
use crate::cdi::Registry;
use crate::claims::{gpu, mps};
use crate::config::Config;

/// Who holds which GPU, and holds of containers that are gone.
pub(super) fn ledger(state_dir: &Path, registry: &Registry) -> Vec<Check> {
    let ledger = match gpu::read(state_dir) {
        Ok(ledger) => ledger,
        Err(err) => {
            return vec![fail(
                "ledger",
                err.to_string(),
                format!(
                    "stop creating GPU containers, move {} aside and restart the GPU containers",
                    state_dir.join(gpu::LEDGER_FILE).display()
                ),
            )];
        }
    };
    if ledger.devices.is_empty() {
        return vec![ok(
            "ledger",
            format!(
                "no GPU is held ({})",
                state_dir.join(gpu::LEDGER_FILE).display()
            ),
        )];
    }
    let mut checks = Vec::new();
    for (device, entries) in &ledger.devices {
        for entry in entries {
            let who = format!(
                "{device} held ({}) by {:?} (root {})",
                crate::config::serde_name(&entry.sharing).unwrap_or_default(),
                entry.holder.id,
                entry.holder.root.display()
            );
            if !entry.holder.is_live() {
                checks.push(warn(
                    "ledger",
                    format!("{who}, which is gone: a stale claim"),
                    "reclaimed by the next GPU allocation; or delete the container with --force",
                ));
            } else if registry.get(device).is_none() {
                checks.push(warn(
                    "ledger",
                    format!("{who}, a device no spec defines any more"),
                    "released when the container is deleted",
                ));
            } else {
                checks.push(ok("ledger", who));
            }
        }
    }
    checks
}

/// MPS daemons under the MPS root and the references recorded for them.
pub(super) fn mps_daemons(config: &Config) -> Vec<Check> {
    let path = config.state_dir.join(mps::REFS_FILE);
    let refs: mps::Refs = match std::fs::read(&path) {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(refs) => refs,
            Err(err) => {
                return vec![fail(
                    "mps",
                    format!("{} is corrupt: {err}", path.display()),
                    "stop MPS containers and move the file aside",
                )];
            }
        },
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => mps::Refs::default(),
        Err(err) => {
            return vec![fail(
                "mps",
                format!("cannot read {}: {err}", path.display()),
                "make it readable by root",
            )];
        }
    };
    let daemon = |gpu| mps::Daemon {
        control: config.mps.control.clone(),
        root: config.mps.root.clone(),
        gpu,
    };
    let mut gpus: BTreeSet<u32> = refs.gpus.keys().copied().collect();
    if let Ok(entries) = std::fs::read_dir(&config.mps.root) {
        gpus.extend(entries.flatten().filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_prefix("gpu")?
                .parse::<u32>()
                .ok()
        }));
    }
    let mut checks = Vec::new();
    for gpu in gpus {
        let daemon = daemon(gpu);
        let holders = refs.gpus.get(&gpu).map(Vec::as_slice).unwrap_or_default();
        let live: Vec<&str> = holders
            .iter()
            .filter(|h| h.is_live())
            .map(|h| h.id.as_str())
            .collect();
        let stale: Vec<&str> = holders
            .iter()
            .filter(|h| !h.is_live())
            .map(|h| h.id.as_str())
            .collect();
        let alive = daemon.alive();
        if !stale.is_empty() {
            checks.push(warn(
                "mps",
                format!(
                    "GPU {gpu}: references of containers that are gone: {}",
                    stale.join(", ")
                ),
                "reclaimed by the next MPS create or release on that GPU",
            ));
        }
        match (alive, live.is_empty()) {
            (true, false) => checks.push(ok(
                "mps",
                format!(
                    "GPU {gpu}: daemon running ({}), used by {}",
                    daemon.socket().display(),
                    live.join(", ")
                ),
            )),
            (false, false) => checks.push(fail(
                "mps",
                format!(
                    "GPU {gpu}: {} containers use the MPS daemon, but it is not running (no {})",
                    live.len(),
                    daemon.socket().display()
                ),
                format!(
                    "start it: CUDA_MPS_PIPE_DIRECTORY={} CUDA_MPS_LOG_DIRECTORY={} {} -d",
                    daemon.pipe_dir().display(),
                    daemon.log_dir().display(),
                    config.mps.control.display()
                ),
            )),
            (true, true) if config.mps.lifetime == crate::config::MpsLifetime::PerRun => checks
                .push(warn(
                    "mps",
                    format!(
                        "GPU {gpu}: daemon running with no container using it (lifetime per_run)"
                    ),
                    format!(
                        "stop it: echo quit | CUDA_MPS_PIPE_DIRECTORY={} {}",
                        daemon.pipe_dir().display(),
                        config.mps.control.display()
                    ),
                )),
            (true, true) => checks.push(ok("mps", format!("GPU {gpu}: daemon running, unused"))),
            (false, true) => {}
        }
    }
    if checks.is_empty() {
        checks.push(ok(
            "mps",
            format!(
                "no MPS daemon or reference under {}",
                config.mps.root.display()
            ),
        ));
    }
    checks
}

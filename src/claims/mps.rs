//! MPS control daemons (one per GPU) and the node-wide references that keep them running.
//!
//! References live in `<state-dir>/mps-refs.json` under an exclusive `flock` on
//! `<state-dir>/mps-refs.lock`, held across starting or stopping a daemon so two creates never
//! both start one and a delete never stops one a create just referenced. The protocol is NVIDIA's
//! control program: `<control> -d` starts a daemon, `quit` on its stdin stops it, both with
//! `CUDA_MPS_PIPE_DIRECTORY`, `CUDA_MPS_LOG_DIRECTORY` and `CUDA_VISIBLE_DEVICES=<N>`; a daemon is
//! alive when `<pipe dir>/control` exists.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::holder::Holder;
use super::store::{self, StoreError};
use crate::config::MpsLifetime;

pub const REFS_FILE: &str = "mps-refs.json";
pub const LOCK_FILE: &str = "mps-refs.lock";
/// The socket the control daemon creates in its pipe dir.
pub const CONTROL_SOCKET: &str = "control";
pub const PIPE_ENV: &str = "CUDA_MPS_PIPE_DIRECTORY";
pub const LOG_ENV: &str = "CUDA_MPS_LOG_DIRECTORY";
/// How long a started daemon may take to create its control socket, and a stop to remove it.
const SETTLE: Duration = Duration::from_secs(5);
/// How long the control program itself may run.
const PROGRAM_LIMIT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum MpsError {
    #[error("cannot {what} {path}: {cause}")]
    Io {
        what: &'static str,
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(
        "MPS references {path} are corrupt ({message}); remove the file only when no MPS container runs"
    )]
    Corrupt { path: PathBuf, message: String },
    #[error(
        "no MPS control daemon runs for GPU {gpu}: {socket} does not exist; [mps] lifetime is no_launch, so start `{control} -d` ([mps] control) for that GPU with CUDA_MPS_PIPE_DIRECTORY={pipe} first, or set lifetime to per_run or persistent"
    )]
    NotRunning {
        gpu: u32,
        control: PathBuf,
        socket: PathBuf,
        pipe: PathBuf,
    },
    #[error("cannot {action} the MPS control daemon of GPU {gpu} with {control}: {message}")]
    Control {
        action: &'static str,
        gpu: u32,
        control: PathBuf,
        message: String,
    },
}

impl From<StoreError> for MpsError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Io { what, path, cause } => MpsError::Io { what, path, cause },
            StoreError::Corrupt { path, message } => MpsError::Corrupt { path, message },
        }
    }
}

/// One GPU's daemon: where it lives and how to drive it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Daemon {
    pub control: PathBuf,
    pub root: PathBuf,
    pub gpu: u32,
}

impl Daemon {
    /// `<mps root>/gpu<N>/pipe`.
    pub fn pipe_dir(&self) -> PathBuf {
        self.root.join(format!("gpu{}", self.gpu)).join("pipe")
    }

    /// `<mps root>/gpu<N>/log`.
    pub fn log_dir(&self) -> PathBuf {
        self.root.join(format!("gpu{}", self.gpu)).join("log")
    }

    pub fn socket(&self) -> PathBuf {
        self.pipe_dir().join(CONTROL_SOCKET)
    }

    pub fn alive(&self) -> bool {
        self.socket().exists()
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.control);
        cmd.env(PIPE_ENV, self.pipe_dir())
            .env(LOG_ENV, self.log_dir())
            .env("CUDA_VISIBLE_DEVICES", self.gpu.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    fn failed(&self, action: &'static str, message: impl Into<String>) -> MpsError {
        MpsError::Control {
            action,
            gpu: self.gpu,
            control: self.control.clone(),
            message: message.into(),
        }
    }

    /// `<control> -d`, then waits for the control socket.
    pub fn start(&self) -> Result<(), MpsError> {
        for dir in [self.pipe_dir(), self.log_dir()] {
            fs::create_dir_all(&dir).map_err(|cause| MpsError::Io {
                what: "create",
                path: dir.clone(),
                cause,
            })?;
        }
        let mut cmd = self.command();
        cmd.arg("-d").stdin(Stdio::null());
        let child = cmd
            .spawn()
            .map_err(|err| self.failed("start", err.to_string()))?;
        finish(child, PROGRAM_LIMIT).map_err(|message| self.failed("start", message))?;
        if !settle(|| self.alive()) {
            return Err(self.failed(
                "start",
                format!(
                    "{} did not appear within {SETTLE:?}",
                    self.socket().display()
                ),
            ));
        }
        Ok(())
    }

    /// `quit` on the control program's stdin; then waits for the socket to go.
    pub fn stop(&self) -> Result<(), MpsError> {
        let mut cmd = self.command();
        cmd.stdin(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|err| self.failed("stop", err.to_string()))?;
        let written = child
            .stdin
            .take()
            .map(|mut stdin| stdin.write_all(b"quit\n"));
        finish(child, PROGRAM_LIMIT).map_err(|message| self.failed("stop", message))?;
        if let Some(Err(err)) = written {
            return Err(self.failed("stop", format!("cannot write quit: {err}")));
        }
        if !settle(|| !self.alive()) {
            tracing::warn!(
                "MPS daemon of GPU {} still has {} after quit",
                self.gpu,
                self.socket().display()
            );
        }
        Ok(())
    }
}

/// Waits for `child` (bounded), `Err` with its output when it fails.
fn finish(mut child: std::process::Child, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("still running after {limit:?}; killed"));
            }
            Err(err) => return Err(err.to_string()),
        }
    }
    let out = child.wait_with_output().map_err(|err| err.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn settle(done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + SETTLE;
    while !done() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// GPU index -> the containers referencing its daemon.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Refs {
    pub gpus: BTreeMap<u32, Vec<Holder>>,
}

impl Refs {
    fn reclaim(&mut self, gpu: u32, is_live: impl Fn(&Holder) -> bool) {
        if let Some(holders) = self.gpus.get_mut(&gpu) {
            holders.retain(|h| {
                let live = is_live(h);
                if !live {
                    tracing::info!("reclaimed stale MPS reference of {} on GPU {gpu}", h.id);
                }
                live
            });
        }
    }

    fn count(&self, gpu: u32) -> usize {
        self.gpus.get(&gpu).map_or(0, Vec::len)
    }
}

type Locked = store::Locked<Refs>;

fn lock(state_dir: &Path) -> Result<Locked, MpsError> {
    Ok(store::lock(state_dir, LOCK_FILE, REFS_FILE)?)
}

/// Drops GPUs nobody references any more, then writes the references back.
fn save(locked: &mut Locked) -> Result<(), MpsError> {
    locked.data.gpus.retain(|_, holders| !holders.is_empty());
    Ok(locked.save()?)
}

/// Makes sure the daemon runs as `lifetime` says and, unless `no_launch`, records `holder`'s
/// reference. `no_launch` only verifies: the daemon is not cdirun's, so nothing is recorded.
/// Returns whether a reference was recorded (the caller's claim).
pub fn acquire(
    state_dir: &Path,
    daemon: &Daemon,
    lifetime: MpsLifetime,
    holder: &Holder,
) -> Result<bool, MpsError> {
    if lifetime == MpsLifetime::NoLaunch {
        verify(daemon)?;
        return Ok(false);
    }
    let mut locked = lock(state_dir)?;
    locked.data.reclaim(daemon.gpu, Holder::is_live);
    if !daemon.alive() {
        daemon.start()?;
    }
    let holders = locked.data.gpus.entry(daemon.gpu).or_default();
    if !holders.contains(holder) {
        holders.push(holder.clone());
    }
    if let Err(err) = save(&mut locked) {
        // Unrecorded, so undo the start too when nobody else references the daemon.
        if lifetime == MpsLifetime::PerRun && locked.data.count(daemon.gpu) <= 1 {
            let _ = daemon.stop();
        }
        return Err(err);
    }
    Ok(true)
}

/// `no_launch`: an external daemon must already run.
pub fn verify(daemon: &Daemon) -> Result<(), MpsError> {
    if daemon.alive() {
        Ok(())
    } else {
        Err(MpsError::NotRunning {
            gpu: daemon.gpu,
            control: daemon.control.clone(),
            socket: daemon.socket(),
            pipe: daemon.pipe_dir(),
        })
    }
}

/// Drops `holder`'s reference (and stale ones); `per_run` stops the daemon when none is left.
/// Idempotent.
pub fn release(
    state_dir: &Path,
    daemon: &Daemon,
    lifetime: MpsLifetime,
    holder: &Holder,
) -> Result<(), MpsError> {
    if lifetime == MpsLifetime::NoLaunch {
        return Ok(());
    }
    let mut locked = lock(state_dir)?;
    let before = locked.data.clone();
    if let Some(holders) = locked.data.gpus.get_mut(&daemon.gpu) {
        holders.retain(|h| h != holder);
    }
    locked.data.reclaim(daemon.gpu, Holder::is_live);
    if locked.data != before {
        save(&mut locked)?;
    }
    if lifetime == MpsLifetime::PerRun && locked.data.count(daemon.gpu) == 0 && daemon.alive() {
        daemon.stop()?;
    }
    Ok(())
}

/// Drops the references of the container `id` under `root` when no live process or state
/// stands behind it (a create killed before it wrote its record), and stops, under `per_run`,
/// each daemon left without references. The daemon is driven as `config` says: with no record
/// there is nothing else to go by. Idempotent; a state dir without references is left alone.
pub fn release_unrecorded(
    state_dir: &Path,
    config: &crate::config::MpsConfig,
    root: &Path,
    id: &str,
) -> Result<(), MpsError> {
    if !state_dir.join(REFS_FILE).exists() {
        return Ok(());
    }
    let mut locked = lock(state_dir)?;
    let before = locked.data.clone();
    let gpus: Vec<u32> = before.gpus.keys().copied().collect();
    for gpu in &gpus {
        locked
            .data
            .reclaim(*gpu, |h| h.root != root || h.id != id || h.is_live());
    }
    if locked.data == before {
        return Ok(());
    }
    save(&mut locked)?;
    for gpu in gpus {
        let daemon = Daemon {
            control: config.control.clone(),
            root: config.root.clone(),
            gpu,
        };
        if config.lifetime == MpsLifetime::PerRun
            && before.count(gpu) > 0
            && locked.data.count(gpu) == 0
            && daemon.alive()
        {
            daemon.stop()?;
        }
    }
    Ok(())
}

/// The references recorded in `state_dir` (for tests and diagnostics).
pub fn references(state_dir: &Path) -> Result<Refs, MpsError> {
    Ok(lock(state_dir)?.data)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// A stand-in control program: logs `argv` and the env it was given, creates the socket on
    /// `-d`, removes it on `quit`.
    fn stand_in(dir: &Path) -> PathBuf {
        let path = dir.join("mps-control");
        let log = dir.join("calls.log");
        fs::write(
            &path,
            format!(
                "#!/bin/sh\n\
                 if [ \"$1\" = -d ]; then echo \"start gpu=$CUDA_VISIBLE_DEVICES pipe=$CUDA_MPS_PIPE_DIRECTORY\" >> {log:?}; touch \"$CUDA_MPS_PIPE_DIRECTORY/control\"; exit 0; fi\n\
                 read cmd; echo \"$cmd gpu=$CUDA_VISIBLE_DEVICES\" >> {log:?}\n\
                 [ \"$cmd\" = quit ] && rm -f \"$CUDA_MPS_PIPE_DIRECTORY/control\"\n"
            ),
        )
        .unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn calls(dir: &Path) -> Vec<String> {
        fs::read_to_string(dir.join("calls.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn holder(root: &Path, id: &str) -> Holder {
        // Created by this (live) process: counts as live until released.
        Holder::current(root, id)
    }

    #[test]
    fn lifetimes_table() {
        use MpsLifetime::*;
        // (lifetime, calls after two acquires and two releases)
        let cases: [(MpsLifetime, &[&str]); 2] = [
            (PerRun, &["start gpu=1", "quit gpu=1"]),
            (Persistent, &["start gpu=1"]),
        ];
        for (lifetime, want) in cases {
            let dir = tempfile::tempdir().unwrap();
            let daemon = Daemon {
                control: stand_in(dir.path()),
                root: dir.path().join("mps"),
                gpu: 1,
            };
            let state = dir.path().join("state");
            let (a, b) = (holder(dir.path(), "a"), holder(dir.path(), "b"));
            assert!(acquire(&state, &daemon, lifetime, &a).unwrap());
            assert!(acquire(&state, &daemon, lifetime, &b).unwrap());
            assert_eq!(references(&state).unwrap().count(1), 2);
            release(&state, &daemon, lifetime, &a).unwrap();
            assert!(
                daemon.alive(),
                "{lifetime:?}: stopped with a reference left"
            );
            release(&state, &daemon, lifetime, &b).unwrap();
            release(&state, &daemon, lifetime, &b).unwrap();
            let got: Vec<String> = calls(dir.path())
                .iter()
                .map(|c| c.split(" pipe=").next().unwrap().to_owned())
                .collect();
            assert_eq!(got, want, "{lifetime:?}");
            assert_eq!(daemon.alive(), lifetime == Persistent, "{lifetime:?}");
            assert_eq!(references(&state).unwrap(), Refs::default());
        }
    }

    #[test]
    fn no_launch_verifies_and_records_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let daemon = Daemon {
            control: stand_in(dir.path()),
            root: dir.path().join("mps"),
            gpu: 0,
        };
        let state = dir.path().join("state");
        let h = holder(dir.path(), "a");
        let err = acquire(&state, &daemon, MpsLifetime::NoLaunch, &h).unwrap_err();
        assert!(err.to_string().contains("gpu0/pipe/control"), "{err}");
        // The configured program, not the usual name, is the one to start.
        let control = format!("`{} -d`", daemon.control.display());
        assert!(err.to_string().contains(&control), "{err}");
        fs::create_dir_all(daemon.pipe_dir()).unwrap();
        fs::write(daemon.socket(), "").unwrap();
        assert!(!acquire(&state, &daemon, MpsLifetime::NoLaunch, &h).unwrap());
        release(&state, &daemon, MpsLifetime::NoLaunch, &h).unwrap();
        assert!(daemon.alive());
        assert!(calls(dir.path()).is_empty());
    }

    #[test]
    fn stale_reference_is_reclaimed_and_the_daemon_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let daemon = Daemon {
            control: stand_in(dir.path()),
            root: dir.path().join("mps"),
            gpu: 2,
        };
        let state = dir.path().join("state");
        let live = holder(dir.path(), "live");
        let dead = Holder {
            creator_start: live.creator_start + 1,
            ..holder(dir.path(), "dead")
        };
        acquire(&state, &daemon, MpsLifetime::PerRun, &dead).unwrap();
        acquire(&state, &daemon, MpsLifetime::PerRun, &live).unwrap();
        // The second acquire reclaimed the dead holder's reference.
        assert_eq!(
            references(&state).unwrap().gpus[&2],
            std::slice::from_ref(&live)
        );
        release(&state, &daemon, MpsLifetime::PerRun, &live).unwrap();
        assert!(!daemon.alive());
        assert_eq!(calls(dir.path()).len(), 2, "{:?}", calls(dir.path()));
    }

    #[test]
    fn a_failing_control_program_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let control = dir.path().join("broken");
        fs::write(&control, "#!/bin/sh\necho no GPU here >&2\nexit 3\n").unwrap();
        fs::set_permissions(&control, fs::Permissions::from_mode(0o755)).unwrap();
        let daemon = Daemon {
            control,
            root: dir.path().join("mps"),
            gpu: 0,
        };
        let state = dir.path().join("state");
        let err = acquire(
            &state,
            &daemon,
            MpsLifetime::PerRun,
            &holder(dir.path(), "a"),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("GPU 0") && msg.contains("no GPU here"),
            "{msg}"
        );
        assert_eq!(references(&state).unwrap(), Refs::default());
    }
}

//! The MPS edit: for `io.cdirun.gpu.sharing=mps`, makes sure the allocated GPU's MPS control
//! daemon runs (as the `[mps] lifetime` policy says), takes a reference on it, and gives the
//! container the daemon's env, the pipe dir bind-mounted at the same path and its own limits.
//!
//! Runs after the GPU edit and reads its allocation from the `io.cdirun.gpu.allocated`
//! annotation. One container talks to one control daemon, so MPS sharing takes one GPU.

use std::path::PathBuf;

use libcontainer::oci_spec::runtime::{Mount, Spec};

use super::gpu::{self, GpuError};
use super::{Context, Edit, EditError};
use crate::claims::mps::{self, Daemon, MpsError};
use crate::claims::{Claim, Claims, Holder};
use crate::config::MpsLifetime;
use crate::request::{self, GPU_ALLOCATED, RequestError, Sharing};

pub const THREAD_PERCENTAGE_ENV: &str = "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE";
pub const MEM_LIMIT_ENV: &str = "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT";

#[derive(Debug, thiserror::Error)]
pub enum MpsEditError {
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    Daemon(#[from] MpsError),
    #[error("{0}")]
    Index(String),
    #[error(
        "MPS sharing gives a container one GPU's control daemon, but {} were allocated; ask for io.cdirun.gpu.count=1",
        .devices.join(", ")
    )]
    SeveralGpus { devices: Vec<String> },
    #[error("config.json has no process section to set {PIPE} in", PIPE = mps::PIPE_ENV)]
    NoProcess,
}

impl From<GpuError> for MpsEditError {
    fn from(err: GpuError) -> Self {
        MpsEditError::Index(err.to_string())
    }
}

/// The MPS edit; skipped unless the GPU request asks for MPS sharing.
pub struct Mps;

impl Edit for Mps {
    fn name(&self) -> &'static str {
        "mps"
    }

    fn apply(&self, spec: &mut Spec, ctx: &Context) -> Result<Claims, EditError> {
        let Some(gpu) = request::gpu_from_spec(spec, ctx.config).map_err(MpsEditError::from)?
        else {
            return Ok(Claims::default());
        };
        if gpu.sharing != Sharing::Mps {
            return Ok(Claims::default());
        }
        let devices: Vec<String> = spec
            .annotations()
            .as_ref()
            .and_then(|a| a.get(GPU_ALLOCATED))
            .map(|v| v.split(',').map(str::to_owned).collect())
            .unwrap_or_default();
        let [device] = devices.as_slice() else {
            return Err(MpsEditError::SeveralGpus { devices }.into());
        };
        let daemon = Daemon {
            control: ctx.config.mps.control.clone(),
            root: ctx.config.mps.root.clone(),
            gpu: gpu::index(device, Sharing::Mps).map_err(MpsEditError::from)?,
        };
        let mut edited = spec.clone();
        let mut env = vec![
            (mps::PIPE_ENV, daemon.pipe_dir().display().to_string()),
            (mps::LOG_ENV, daemon.log_dir().display().to_string()),
        ];
        if let Some(p) = &gpu.thread_percentage {
            env.push((THREAD_PERCENTAGE_ENV, p.clone()));
        }
        if let Some(limit) = &gpu.mem_limit {
            env.push((MEM_LIMIT_ENV, limit.clone()));
        }
        set_env(&mut edited, &env)?;
        bind_pipe_dir(&mut edited, daemon.pipe_dir());

        let lifetime = ctx.config.mps.lifetime;
        let holder = Holder::current(ctx.root, ctx.container_id);
        let recorded = if ctx.dry_run {
            // Verifying is read-only; starting is not.
            if lifetime == MpsLifetime::NoLaunch {
                mps::verify(&daemon).map_err(MpsEditError::from)?;
            }
            lifetime != MpsLifetime::NoLaunch
        } else {
            mps::acquire(&ctx.config.state_dir, &daemon, lifetime, &holder)
                .map_err(MpsEditError::from)?
        };
        *spec = edited;
        let mut claims = Claims::default();
        if recorded {
            claims.0.push(Claim::Mps {
                gpu: daemon.gpu,
                root: daemon.root,
                control: daemon.control,
                lifetime,
                holder,
            });
        }
        Ok(claims)
    }
}

/// The daemon's env is set whatever the client wrote: it must match the mounted pipe dir.
fn set_env(spec: &mut Spec, vars: &[(&str, String)]) -> Result<(), MpsEditError> {
    let process = spec.process_mut().as_mut().ok_or(MpsEditError::NoProcess)?;
    let mut env = process.env().clone().unwrap_or_default();
    for (key, value) in vars {
        env.retain(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) != *key);
        env.push(format!("{key}={value}"));
    }
    process.set_env(Some(env));
    Ok(())
}

/// The host pipe dir, bind-mounted read-write at the same path (replacing a mount there).
fn bind_pipe_dir(spec: &mut Spec, pipe: PathBuf) {
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    mounts.retain(|m| m.destination() != &pipe);
    let mut mount = Mount::default();
    mount
        .set_destination(pipe.clone())
        .set_source(Some(pipe))
        .set_typ(Some("bind".into()))
        .set_options(Some(vec![
            "rbind".into(),
            "rw".into(),
            "nosuid".into(),
            "nodev".into(),
        ]));
    mounts.push(mount);
    spec.set_mounts(Some(mounts));
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    use super::*;
    use crate::config::Config;
    use crate::edit::apply_all;

    fn node() -> (tempfile::TempDir, Config) {
        let dir = tempfile::tempdir().unwrap();
        let cdi = dir.path().join("cdi");
        fs::create_dir(&cdi).unwrap();
        fs::write(
            cdi.join("nvidia.yaml"),
            "cdiVersion: 0.6.0\nkind: nvidia.com/gpu\ndevices: [{name: \"0\", containerEdits: {env: [G=0]}}, {name: \"1\", containerEdits: {env: [G=1]}}]\n",
        )
        .unwrap();
        let control = dir.path().join("control");
        fs::write(
            &control,
            format!(
                "#!/bin/sh\nif [ \"$1\" = -d ]; then echo start >> {0:?}; touch \"$CUDA_MPS_PIPE_DIRECTORY/control\"; exit 0; fi\nread cmd; echo \"$cmd\" >> {0:?}; rm -f \"$CUDA_MPS_PIPE_DIRECTORY/control\"\n",
                dir.path().join("calls")
            ),
        )
        .unwrap();
        fs::set_permissions(&control, fs::Permissions::from_mode(0o755)).unwrap();
        let mut config = Config::default();
        config.cdi.spec_dirs = vec![cdi];
        config.state_dir = dir.path().join("state");
        config.mps.root = dir.path().join("mps");
        config.mps.control = control;
        (dir, config)
    }

    fn spec(annotations: &[(&str, &str)]) -> Spec {
        let mut spec = Spec::default();
        spec.set_annotations(Some(
            annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>(),
        ));
        spec
    }

    #[test]
    fn mps_container_gets_env_mount_and_a_reference() {
        let (dir, config) = node();
        let mut s = spec(&[
            ("io.cdirun.gpu.sharing", "mps"),
            ("io.cdirun.mps.active-thread-percentage", "25"),
            ("io.cdirun.mps.pinned-device-mem-limit", "0=2G"),
        ]);
        let ctx = Context::new("c1", &config, Path::new("/run/r"));
        let claims = apply_all(&mut s, &ctx).unwrap().without_scopes();
        let pipe = dir.path().join("mps/gpu0/pipe");
        let env = s.process().as_ref().unwrap().env().clone().unwrap();
        for want in [
            format!("CUDA_MPS_PIPE_DIRECTORY={}", pipe.display()),
            format!(
                "CUDA_MPS_LOG_DIRECTORY={}",
                dir.path().join("mps/gpu0/log").display()
            ),
            "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=25".into(),
            "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT=0=2G".into(),
        ] {
            assert!(env.contains(&want), "{want} not in {env:?}");
        }
        let mount = s.mounts().as_ref().unwrap().last().unwrap().clone();
        assert_eq!(mount.destination(), &pipe);
        assert_eq!(mount.source().as_deref(), Some(pipe.as_path()));
        assert!(matches!(
            claims.0.as_slice(),
            [Claim::Gpu { .. }, Claim::Mps { gpu: 0, .. }]
        ));
        assert_eq!(
            fs::read_to_string(dir.path().join("calls")).unwrap(),
            "start\n"
        );
        claims.release(&config.state_dir).unwrap();
        assert_eq!(
            fs::read_to_string(dir.path().join("calls")).unwrap(),
            "start\nquit\n"
        );
    }

    #[test]
    fn dry_run_starts_nothing_and_several_gpus_are_refused() {
        let (dir, config) = node();
        let mut s = spec(&[("io.cdirun.gpu.sharing", "mps")]);
        let ctx = Context {
            dry_run: true,
            ..Context::new("c1", &config, Path::new("/run/r"))
        };
        let claims = apply_all(&mut s, &ctx).unwrap().without_scopes();
        assert_eq!(claims.0.len(), 2, "{claims:?}");
        assert!(!dir.path().join("calls").exists());
        assert!(!config.state_dir.exists(), "dry run created the state dir");

        let mut s = spec(&[
            ("io.cdirun.gpu.sharing", "mps"),
            ("io.cdirun.gpu.count", "2"),
        ]);
        let ctx = Context::new("c2", &config, Path::new("/run/r"));
        let (err, taken) = apply_all(&mut s, &ctx).unwrap_err();
        assert!(
            err.to_string()
                .contains("nvidia.com/gpu=0, nvidia.com/gpu=1"),
            "{err}"
        );
        // The GPU edit's claim comes back for the caller to release.
        taken.release(&config.state_dir).unwrap();
        let ledger = fs::read_to_string(config.state_dir.join("gpu-ledger.json")).unwrap();
        assert!(!ledger.contains("c2"), "{ledger}");
    }
}

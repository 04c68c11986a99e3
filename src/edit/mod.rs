//! The create-time edit pipeline: each edit is a small, idempotent change to the OCI spec.
//!
//! Order matters and is fixed here: nvidia-hook → cdi → gpu → mps → hooks → slice → groups.
//! The NVIDIA hook edit drops Docker's `--gpus` hook, whose request CDI serves; CDI goes next so
//! later edits see the injected devices. What libcontainer needs changed in the result to take
//! it as runc would (mount fix-ups) is not an edit: `crate::engine` does it on the way in. Edits never touch the filesystem except through paths in [`Context`], so they are
//! unit-tested on temp dirs.
//!
//! The GPU edit chooses devices only after the CDI edit, and injects its choice through the CDI
//! module itself ([`cdi::inject`]): the choice depends on the node-wide ledger, which the pure
//! request reading before the pipeline must not consult, and the vendor env must describe the
//! whole allocation after every CDI edit is in.

pub mod cdi;
pub mod gpu;
pub mod groups;
pub mod hooks;
pub mod mps;
pub mod nvidia_hook;
pub mod slice;

use std::path::Path;

use libcontainer::oci_spec::runtime::Spec;

use crate::claims::Claims;
use crate::config::Config;

/// What an edit may know besides the spec: never globals, never the process environment.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub container_id: &'a str,
    /// How the container's cgroup is named and made (`--systemd-cgroup` on this host).
    pub cgroup_driver: crate::cgroup::Driver,
    /// The config loaded for this create (the one recorded in `cdirun.json`).
    pub config: &'a Config,
    /// `--root`: with the id, names the container in node-wide claims.
    pub root: &'a Path,
    /// `explain`: compute every change and describe the claims, but take nothing (no ledger or
    /// reference written, no daemon started, no program run).
    pub dry_run: bool,
    /// The process env as the client wrote config.json, before any edit; [`apply_all`] fills it
    /// in, so edits can tell a value the client set from one an earlier edit set.
    pub client_env: &'a [String],
    /// cdirun runs rootless (see crate::rootless): exclusive GPUs and MPS are refused.
    pub rootless: bool,
    /// No cgroup is delegated to a rootless cdirun: the slice edit leaves cgroupsPath alone and
    /// claims no scope (cgroup setup is skipped, as runc and crun skip it).
    pub skip_cgroups: bool,
}

impl<'a> Context<'a> {
    /// A context that takes claims, with no client env recorded yet.
    pub fn new(container_id: &'a str, config: &'a Config, root: &'a Path) -> Self {
        Context {
            container_id,
            cgroup_driver: crate::cgroup::Driver::Cgroupfs,
            config,
            root,
            dry_run: false,
            client_env: &[],
            rootless: false,
            skip_cgroups: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EditError {
    /// Boxed: the resolution error carries lists, and every edit's `Result` pays for the largest.
    #[error(transparent)]
    Cdi(Box<cdi::CdiError>),
    #[error(transparent)]
    Hooks(#[from] hooks::HooksError),
    #[error(transparent)]
    Groups(#[from] groups::GroupsError),
    #[error(transparent)]
    Slice(#[from] slice::SliceError),
    /// Boxed like CDI: the unmet-request error lists devices and holders.
    #[error(transparent)]
    Gpu(Box<gpu::GpuError>),
    #[error(transparent)]
    Mps(Box<mps::MpsEditError>),
}

impl From<mps::MpsEditError> for EditError {
    fn from(err: mps::MpsEditError) -> Self {
        EditError::Mps(Box::new(err))
    }
}

impl From<gpu::GpuError> for EditError {
    fn from(err: gpu::GpuError) -> Self {
        EditError::Gpu(Box::new(err))
    }
}

impl From<cdi::CdiError> for EditError {
    fn from(err: cdi::CdiError) -> Self {
        EditError::Cdi(Box::new(err))
    }
}

/// One step of the pipeline. `apply` must be idempotent and leave `spec` untouched on error.
pub trait Edit {
    fn name(&self) -> &'static str;
    fn apply(&self, spec: &mut Spec, ctx: &Context) -> Result<Claims, EditError>;
}

/// The edits in the order they run.
pub fn pipeline() -> Vec<Box<dyn Edit>> {
    vec![
        Box::new(nvidia_hook::NvidiaHook),
        Box::new(cdi::Cdi),
        Box::new(gpu::Gpu),
        Box::new(mps::Mps),
        Box::new(hooks::HooksD),
        Box::new(slice::Placement),
        Box::new(groups::RootlessGroups),
    ]
}

/// Runs every edit over `spec`. On error, the claims already taken are returned with the error
/// so the caller can release them: nothing stays held after a failed create.
pub fn apply_all(spec: &mut Spec, ctx: &Context) -> Result<Claims, (EditError, Claims)> {
    let client_env = spec
        .process()
        .as_ref()
        .and_then(|p| p.env().clone())
        .unwrap_or_default();
    let ctx = Context {
        client_env: &client_env,
        ..*ctx
    };
    let mut taken = Claims::default();
    for edit in pipeline() {
        tracing::debug!(edit = edit.name(), "applying edit");
        match edit.apply(spec, &ctx) {
            Ok(claims) => taken.extend(claims),
            Err(err) => return Err((err, taken)),
        }
    }
    Ok(taken)
}

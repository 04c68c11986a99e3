//! The create-time edit pipeline: each edit is a small, idempotent change to the OCI spec.
//!
//! Order matters and is fixed here: cdi → gpu → mps → hooks → slice (CDI first: later edits see
//! the injected devices), then mount options libcontainer lacks (over every mount, CDI's too). Edits never touch the
//! filesystem except through paths in [`Context`], so they are unit-tested on temp dirs.

pub mod cdi;
pub mod mounts;
pub mod slice;

use libcontainer::oci_spec::runtime::Spec;

use crate::claims::Claims;
use crate::config::Config;

/// What an edit may know besides the spec: never globals, never the process environment.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub container_id: &'a str,
    /// `--systemd-cgroup`: cgroupsPath uses the `slice:prefix:name` form.
    pub systemd_cgroup: bool,
    /// The config loaded for this create (the one recorded in `cdirun.json`).
    pub config: &'a Config,
}

#[derive(Debug, thiserror::Error)]
pub enum EditError {
    /// Boxed: the resolution error carries lists, and every edit's `Result` pays for the largest.
    #[error(transparent)]
    Cdi(Box<cdi::CdiError>),
    #[error(transparent)]
    Slice(#[from] slice::SliceError),
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
        Box::new(cdi::Cdi),
        Box::new(slice::Placement),
        Box::new(mounts::MountOptions),
    ]
}

/// Runs every edit over `spec`. On error, the claims already taken are returned with the error
/// so the caller can release them: nothing stays held after a failed create.
pub fn apply_all(spec: &mut Spec, ctx: &Context) -> Result<Claims, (EditError, Claims)> {
    let mut taken = Claims::default();
    for edit in pipeline() {
        tracing::debug!(edit = edit.name(), "applying edit");
        match edit.apply(spec, ctx) {
            Ok(claims) => taken.extend(claims),
            Err(err) => return Err((err, taken)),
        }
    }
    Ok(taken)
}

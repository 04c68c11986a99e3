//! CDI (Container Device Interface) specs: names, the spec file model and validation, and the
//! registry of devices found in the spec dirs, and specs generated from the host (`generate`).
//! Behaviour follows the reference library `pkg/cdi`.

pub mod generate;
pub mod name;
pub mod registry;
pub mod spec;

pub use registry::Registry;

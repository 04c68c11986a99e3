//! CDI (Container Device Interface) specs: names, the spec file model and validation, and the
//! registry of devices found in the spec dirs. Behaviour follows the reference library `pkg/cdi`.

pub mod name;
pub mod registry;
pub mod spec;

pub use registry::Registry;

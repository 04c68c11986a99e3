//! The OCI runtime spec's hook stages: their names in config.json, and adding a hook to one.
//! CDI specs, hooks.d files and `features` all speak this vocabulary.
//!
//! No libcontainer behaviour is covered here: libcontainer 0.7 (through oci-spec) has one field
//! per stage and no name for a stage, so this stays when libcontainer is fixed.

#![allow(deprecated)] // `prestart` is deprecated in the runtime spec but still run.

use libcontainer::oci_spec::runtime::{Hook as OciHook, Hooks};

/// The six stages, in the order the lifecycle reaches them.
pub const HOOK_STAGES: [&str; 6] = [
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

/// One OCI hook stage, as named in config.json.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Prestart,
    CreateRuntime,
    CreateContainer,
    StartContainer,
    Poststart,
    Poststop,
}

impl Stage {
    /// The stage `name` means (one of [`HOOK_STAGES`]).
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "prestart" => Self::Prestart,
            "createRuntime" => Self::CreateRuntime,
            "createContainer" => Self::CreateContainer,
            "startContainer" => Self::StartContainer,
            "poststart" => Self::Poststart,
            "poststop" => Self::Poststop,
            _ => return None,
        })
    }

    /// Appends `hook` to this stage's list unless an identical hook is already there, so adding
    /// twice gives the same hooks. Returns whether the list changed.
    pub fn add(self, hooks: &mut Hooks, hook: &OciHook) -> bool {
        #[allow(deprecated)]
        let list = match self {
            Self::Prestart => hooks.prestart(),
            Self::CreateRuntime => hooks.create_runtime(),
            Self::CreateContainer => hooks.create_container(),
            Self::StartContainer => hooks.start_container(),
            Self::Poststart => hooks.poststart(),
            Self::Poststop => hooks.poststop(),
        };
        let mut list = list.clone().unwrap_or_default();
        if list.contains(hook) {
            return false;
        }
        list.push(hook.clone());
        let list = Some(list);
        #[allow(deprecated)]
        match self {
            Self::Prestart => hooks.set_prestart(list),
            Self::CreateRuntime => hooks.set_create_runtime(list),
            Self::CreateContainer => hooks.set_create_container(list),
            Self::StartContainer => hooks.set_start_container(list),
            Self::Poststart => hooks.set_poststart(list),
            Self::Poststop => hooks.set_poststop(list),
        };
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_and_adding_twice_adds_once() {
        let mut hooks = Hooks::default();
        let mut hook = OciHook::default();
        hook.set_path("/h".into());
        for name in HOOK_STAGES {
            let stage = Stage::parse(name).unwrap_or_else(|| panic!("{name}"));
            assert!(stage.add(&mut hooks, &hook), "{name}");
            assert!(!stage.add(&mut hooks, &hook), "{name} twice");
        }
        assert_eq!(hooks.create_runtime().as_ref().unwrap().len(), 1);
        assert_eq!(hooks.poststop().as_ref().unwrap().len(), 1);
        assert_eq!(Stage::parse("preStart"), None);
    }
}

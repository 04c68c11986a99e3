//! Seccomp profiles cdirun refuses before anything is created, because libcontainer 0.7 would
//! hang or misbehave on them.
//!
//! With `SCMP_ACT_NOTIFY`, libcontainer's init sends the notify descriptor to its main process
//! and waits for it to be passed to `listenerPath`; the create then blocked for good (no
//! listener connection ever completed the exchange). Until cdirun passes the descriptor as runc
//! does, such a profile is refused at once, naming the action and the listener.

use libcontainer::oci_spec::runtime::{LinuxSeccompAction, Spec};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SeccompError {
    #[error(
        "seccomp {place} uses SCMP_ACT_NOTIFY (listenerPath {listener}): cdirun does not pass \
         seccomp notify descriptors to a listener; remove the notify action from the profile"
    )]
    Notify { place: String, listener: String },
}

/// Refuses a profile that uses SCMP_ACT_NOTIFY anywhere.
pub fn check(spec: &Spec) -> Result<(), SeccompError> {
    let Some(seccomp) = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) else {
        return Ok(());
    };
    let notify = LinuxSeccompAction::ScmpActNotify;
    let place = if seccomp.default_action() == notify {
        Some("defaultAction".to_owned())
    } else {
        seccomp.syscalls().iter().flatten().find_map(|rule| {
            (rule.action() == notify).then(|| format!("rule for {}", rule.names().join(", ")))
        })
    };
    match place {
        None => Ok(()),
        Some(place) => Err(SeccompError::Notify {
            place,
            listener: seccomp
                .listener_path()
                .as_ref()
                .map_or("unset".to_owned(), |p| p.display().to_string()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(seccomp: serde_json::Value) -> Spec {
        serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2",
            "linux": {"seccomp": seccomp}
        }))
        .unwrap()
    }

    /// Regression: a notify profile hung the create.
    #[test]
    fn notify_profiles_are_refused_by_place_and_listener() {
        let cases = [
            (
                "rule",
                serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/l.sock",
                    "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]}),
                Some(SeccompError::Notify {
                    place: "rule for mkdir, mkdirat".into(),
                    listener: "/run/l.sock".into(),
                }),
            ),
            (
                "default",
                serde_json::json!({"defaultAction": "SCMP_ACT_NOTIFY"}),
                Some(SeccompError::Notify {
                    place: "defaultAction".into(),
                    listener: "unset".into(),
                }),
            ),
            (
                "no notify",
                serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
                    "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}),
                None,
            ),
        ];
        for (name, seccomp, want) in cases {
            assert_eq!(check(&spec(seccomp)).err(), want, "{name}");
        }
    }
}

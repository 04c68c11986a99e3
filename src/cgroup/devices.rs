//! Device rules on cgroup v2, where only an eBPF program attached to the container's cgroup
//! enforces them. libcontainer's cgroupfs driver attaches one (libcgroups' `cgroupsv2_devices`
//! feature); its systemd driver attaches none and gives the scope unit no device policy, so
//! every device would open. For that driver this module attaches the program libcgroups builds
//! and gives the unit the properties runc gives it (`DevicePolicy=strict` and a `DeviceAllow=`
//! per allowed rule), so that systemd re-applying the unit (`daemon-reload`) keeps the access the
//! spec allows: no wider (systemd's own program would otherwise allow all) and no narrower.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use libcontainer::oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("cannot find the cgroup v2 of process {pid} in /proc/{pid}/cgroup")]
    NoCgroup { pid: i32 },
    #[error("cannot attach the device rules to cgroup {path}: {cause}")]
    Attach { path: PathBuf, cause: String },
    #[error("cannot run {program} to give unit {unit} its device policy: {cause}")]
    Spawn {
        program: String,
        unit: String,
        cause: std::io::Error,
    },
    #[error("systemd refused the device policy of unit {unit}: {stderr}")]
    Refused { unit: String, stderr: String },
}

/// What every container may use whatever its rules say, appended after them as runc and
/// libcgroups append it: mknod of any node, /dev/null, zero, full, tty, urandom, random,
/// console, the pts, ptmx and tun. (type, major, minor, access)
const ALWAYS_ALLOWED: [(LinuxDeviceType, Option<i64>, Option<i64>, &str); 12] = [
    (LinuxDeviceType::C, None, None, "m"),
    (LinuxDeviceType::B, None, None, "m"),
    (LinuxDeviceType::C, Some(1), Some(3), "rwm"),
    (LinuxDeviceType::C, Some(1), Some(5), "rwm"),
    (LinuxDeviceType::C, Some(1), Some(7), "rwm"),
    (LinuxDeviceType::C, Some(5), Some(0), "rwm"),
    (LinuxDeviceType::C, Some(1), Some(9), "rwm"),
    (LinuxDeviceType::C, Some(1), Some(8), "rwm"),
    (LinuxDeviceType::C, Some(5), Some(1), "rwm"),
    (LinuxDeviceType::C, Some(136), None, "rwm"),
    (LinuxDeviceType::C, Some(5), Some(2), "rwm"),
    (LinuxDeviceType::C, Some(10), Some(200), "rwm"),
];

/// A scope unit's device properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitPolicy {
    /// `strict` (only `allow`), or `auto` where the rules allow every device but some: systemd
    /// has no deny entries, so the eBPF program alone holds those denies.
    pub policy: &'static str,
    /// `DeviceAllow=` entries: (device node or group, access letters).
    pub allow: Vec<(String, String)>,
}

impl UnitPolicy {
    /// The properties for `rules` (linux.resources.devices, in order), with the always-allowed
    /// devices after them. `proc_devices` is /proc/devices, which names the drivers of
    /// whole-major rules (systemd's `char-<driver>`).
    pub fn for_rules(rules: &[LinuxDeviceCgroup], proc_devices: &str) -> Self {
        let always = ALWAYS_ALLOWED.map(|(typ, major, minor, access)| {
            let mut rule = LinuxDeviceCgroup::default();
            rule.set_allow(true)
                .set_typ(Some(typ))
                .set_major(major)
                .set_minor(minor)
                .set_access(Some(access.to_owned()));
            rule
        });
        // As the kernel's v1 controller (and runc's emulator) read a rule list: an `a` rule
        // starts over, allowing or denying everything; otherwise an allow adds access and a
        // deny takes it from the same node.
        let mut allow_all = false;
        let mut allowed: Vec<(LinuxDeviceType, Option<i64>, Option<i64>, String)> = Vec::new();
        for rule in rules.iter().chain(&always) {
            let typ = rule.typ().unwrap_or(LinuxDeviceType::A);
            if typ == LinuxDeviceType::A {
                allow_all = rule.allow();
                allowed.clear();
                continue;
            }
            let access = rule.access().clone().unwrap_or_default();
            let key = (typ, rule.major(), rule.minor());
            let existing = allowed
                .iter_mut()
                .find(|(t, ma, mi, _)| (*t, *ma, *mi) == key);
            match (rule.allow(), existing) {
                (true, Some((.., have))) => add_access(have, &access),
                (true, None) => allowed.push((key.0, key.1, key.2, access)),
                (false, Some((.., have))) => have.retain(|l| !access.contains(l)),
                (false, None) => {}
            }
        }
        if allow_all {
            return Self {
                policy: "auto",
                allow: Vec::new(),
            };
        }
        let mut allow: Vec<(String, String)> = Vec::new();
        for (typ, major, minor, access) in allowed {
            if access.is_empty() {
                continue;
            }
            match node_spec(typ, major, minor, proc_devices) {
                Some(node) => match allow.iter_mut().find(|(n, _)| *n == node) {
                    Some((_, have)) => add_access(have, &access),
                    None => allow.push((node, access)),
                },
                None => tracing::warn!(
                    "device rule {typ:?} {major:?}:{minor:?} has no systemd DeviceAllow= form; \
                     only the eBPF program allows it"
                ),
            }
        }
        Self {
            policy: "strict",
            allow,
        }
    }

    /// `systemctl set-property` arguments: the policy, a reset of the allow list, then the list.
    pub fn properties(&self) -> Vec<String> {
        let mut props = vec![
            format!("DevicePolicy={}", self.policy),
            "DeviceAllow=".into(),
        ];
        props.extend(
            self.allow
                .iter()
                .map(|(node, access)| format!("DeviceAllow={node} {access}")),
        );
        props
    }
}

/// Adds the letters of `access` that `have` lacks.
fn add_access(have: &mut String, access: &str) {
    for letter in access.chars() {
        if !have.contains(letter) {
            have.push(letter);
        }
    }
}

/// systemd's name for the devices a rule covers: `/dev/char/M:N` (which systemd parses without
/// the node or the link existing, as NVIDIA's nodes have none), `char-*`, or `char-<driver>` for
/// a whole major, named as /proc/devices names it.
fn node_spec(
    typ: LinuxDeviceType,
    major: Option<i64>,
    minor: Option<i64>,
    proc_devices: &str,
) -> Option<String> {
    let (dir, group, section) = match typ {
        LinuxDeviceType::C | LinuxDeviceType::U => ("char", "char", "Character devices:"),
        LinuxDeviceType::B => ("block", "block", "Block devices:"),
        _ => return None,
    };
    match (major, minor) {
        (Some(major), Some(minor)) => Some(format!("/dev/{dir}/{major}:{minor}")),
        (None, None) => Some(format!("{group}-*")),
        (Some(major), None) => {
            driver_name(proc_devices, section, major).map(|name| format!("{group}-{name}"))
        }
        (None, Some(_)) => None,
    }
}

/// The driver /proc/devices lists for `major` in `section`.
fn driver_name<'a>(proc_devices: &'a str, section: &str, major: i64) -> Option<&'a str> {
    proc_devices
        .lines()
        .skip_while(|line| line.trim() != section)
        .skip(1)
        .take_while(|line| !line.trim().is_empty())
        .find_map(|line| {
            let (number, name) = line.trim().split_once(' ')?;
            (number.parse::<i64>().ok()? == major).then(|| name.trim())
        })
}

/// Enforces `rules` on the cgroup v2 of a container's `pid` created under libcontainer's systemd
/// driver: attaches the eBPF program, then gives the unit its device policy. In that order: the
/// program libcgroups attaches replaces every program on the cgroup, systemd's included.
pub fn enforce_for_unit(
    pid: i32,
    v2_mount: &Path,
    rules: &[LinuxDeviceCgroup],
    systemctl: &Path,
) -> Result<(), DeviceError> {
    let cgroup = fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("0::").map(str::to_owned))
        })
        .ok_or(DeviceError::NoCgroup { pid })?;
    let dir = v2_mount.join(cgroup.trim_start_matches('/'));
    attach_program(&dir, rules)?;
    let unit = dir
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .ok_or(DeviceError::NoCgroup { pid })?;
    let proc_devices = fs::read_to_string("/proc/devices").unwrap_or_default();
    set_unit_policy(
        &unit,
        &UnitPolicy::for_rules(rules, &proc_devices),
        systemctl,
    )
}

/// Attaches the eBPF device program for `rules` (and the always-allowed devices) to `dir`.
pub fn attach_program(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<(), DeviceError> {
    libcgroups::v2::devices::Devices::apply_devices(dir, &Some(rules.to_vec())).map_err(|err| {
        DeviceError::Attach {
            path: dir.to_owned(),
            cause: err.to_string(),
        }
    })
}

/// `systemctl set-property --runtime UNIT DevicePolicy=... DeviceAllow=...`.
fn set_unit_policy(unit: &str, policy: &UnitPolicy, systemctl: &Path) -> Result<(), DeviceError> {
    let output = Command::new(systemctl)
        .args(["set-property", "--runtime", "--", unit])
        .args(policy.properties())
        .output()
        .map_err(|cause| DeviceError::Spawn {
            program: systemctl.display().to_string(),
            unit: unit.to_owned(),
            cause,
        })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(DeviceError::Refused {
            unit: unit.to_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROC_DEVICES: &str = "Character devices:\n  1 mem\n  5 /dev/tty\n136 pts\n195 nvidia-frontend\n\nBlock devices:\n  8 sd\n254 virtblk\n";

    fn rule(
        allow: bool,
        typ: Option<LinuxDeviceType>,
        major: Option<i64>,
        minor: Option<i64>,
        access: &str,
    ) -> LinuxDeviceCgroup {
        let mut rule = LinuxDeviceCgroup::default();
        rule.set_allow(allow)
            .set_typ(typ)
            .set_major(major)
            .set_minor(minor)
            .set_access(Some(access.to_owned()));
        rule
    }

    fn always() -> Vec<(String, String)> {
        [
            ("char-*", "m"),
            ("block-*", "m"),
            ("/dev/char/1:3", "rwm"),
            ("/dev/char/1:5", "rwm"),
            ("/dev/char/1:7", "rwm"),
            ("/dev/char/5:0", "rwm"),
            ("/dev/char/1:9", "rwm"),
            ("/dev/char/1:8", "rwm"),
            ("/dev/char/5:1", "rwm"),
            ("char-pts", "rwm"),
            ("/dev/char/5:2", "rwm"),
            ("/dev/char/10:200", "rwm"),
        ]
        .iter()
        .map(|(n, a)| (n.to_string(), a.to_string()))
        .collect()
    }

    #[test]
    fn unit_policy_table() {
        use LinuxDeviceType::{A, B, C};
        let deny_all = rule(false, None, None, None, "rwm");
        let gpu0 = rule(true, Some(C), Some(195), Some(0), "rw");
        // (name, rules, want policy, want entries before the always-allowed ones)
        type Case = (
            &'static str,
            Vec<LinuxDeviceCgroup>,
            &'static str,
            Vec<(&'static str, &'static str)>,
        );
        let cases: Vec<Case> = vec![
            (
                "no rules: only the always-allowed",
                vec![],
                "strict",
                vec![],
            ),
            (
                "runtime-spec default deny",
                vec![deny_all.clone()],
                "strict",
                vec![],
            ),
            (
                // NVIDIA's nodes have no /dev/char/195:N link; systemd parses the path itself.
                "an allowed GPU node",
                vec![deny_all.clone(), gpu0.clone()],
                "strict",
                vec![("/dev/char/195:0", "rw")],
            ),
            (
                "a whole major is named by its driver",
                vec![
                    deny_all.clone(),
                    rule(true, Some(C), Some(195), None, "rwm"),
                ],
                "strict",
                vec![("char-nvidia-frontend", "rwm")],
            ),
            (
                "a block device",
                vec![deny_all.clone(), rule(true, Some(B), Some(8), Some(0), "r")],
                "strict",
                vec![("/dev/block/8:0", "r")],
            ),
            (
                "a deny after an allow takes its access away",
                vec![
                    deny_all.clone(),
                    gpu0.clone(),
                    rule(false, Some(C), Some(195), Some(0), "w"),
                ],
                "strict",
                vec![("/dev/char/195:0", "r")],
            ),
            (
                "allow all (privileged): systemd restricts nothing",
                vec![rule(true, None, None, None, "rwm")],
                "auto",
                vec![],
            ),
            (
                "allow all then deny some: the eBPF program holds the deny",
                vec![
                    rule(true, Some(A), None, None, "rwm"),
                    rule(false, Some(B), Some(8), Some(0), "rwm"),
                ],
                "auto",
                vec![],
            ),
            (
                "an `a` deny after allows starts over",
                vec![gpu0.clone(), deny_all.clone()],
                "strict",
                vec![],
            ),
            (
                "a major no driver registered has no systemd form",
                vec![deny_all.clone(), rule(true, Some(C), Some(511), None, "rw")],
                "strict",
                vec![],
            ),
        ];
        for (name, rules, policy, entries) in cases {
            let got = UnitPolicy::for_rules(&rules, PROC_DEVICES);
            let mut allow: Vec<(String, String)> = entries
                .iter()
                .map(|(n, a)| (n.to_string(), a.to_string()))
                .collect();
            if policy == "strict" {
                allow.extend(always());
            }
            assert_eq!(got, UnitPolicy { policy, allow }, "{name}");
        }
    }

    #[test]
    fn properties_reset_the_list_before_setting_it() {
        let policy = UnitPolicy {
            policy: "strict",
            allow: vec![("/dev/char/195:0".into(), "rw".into())],
        };
        assert_eq!(
            policy.properties(),
            [
                "DevicePolicy=strict",
                "DeviceAllow=",
                "DeviceAllow=/dev/char/195:0 rw"
            ]
        );
    }

    #[test]
    fn driver_names_come_from_their_section() {
        assert_eq!(
            driver_name(PROC_DEVICES, "Character devices:", 136),
            Some("pts")
        );
        assert_eq!(
            driver_name(PROC_DEVICES, "Block devices:", 254),
            Some("virtblk")
        );
        assert_eq!(driver_name(PROC_DEVICES, "Block devices:", 136), None);
        assert_eq!(driver_name(PROC_DEVICES, "Character devices:", 8), None);
    }
}

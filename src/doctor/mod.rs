//! `doctor`'s checks: each looks at one part of the node (config, cgroups, the owned slice, CDI
//! specs and the host devices they name, driver files, the GPU ledger, MPS daemons, hooks.d,
//! client configurations) and says ok, warn or fail, with what to do. Nothing is created,
//! locked or changed: the ledger and MPS references are read as files.
//!
//! Each area's checks are in a file of their own: `cgroups` (layout, cgroup driver, the owned
//! slice), `cdi` (spec dirs and files, the host devices, mounts and hooks they name), `driver`
//! (the NVIDIA driver against the libraries its specs mount), `claims` (the GPU ledger, MPS
//! daemons), `hooks` (hooks.d) and `clients` (client configurations).

use std::fmt;

use serde::Serialize;

use crate::cdi::Registry;
use crate::cdi::generate::Host;
use crate::config::{Config, ConfigError, Loaded};

mod cdi;
mod cgroups;
mod claims;
mod clients;
mod driver;
mod hooks;

use cdi::{devices, specs};
use cgroups::cgroups;
use claims::{ledger, mps_daemons};
use clients::clients;
use driver::driver;
use hooks::hooks;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
        })
    }
}

/// One finding: the part of the node, the verdict, what was seen and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub area: &'static str,
    pub status: Status,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<4}  {:<7}  {}",
            self.status.to_string(),
            self.area,
            self.message
        )?;
        if let Some(fix) = &self.fix {
            write!(f, " -- {fix}")?;
        }
        Ok(())
    }
}

fn ok(area: &'static str, message: impl Into<String>) -> Check {
    Check {
        area,
        status: Status::Ok,
        message: message.into(),
        fix: None,
    }
}

fn warn(area: &'static str, message: impl Into<String>, fix: impl Into<String>) -> Check {
    Check {
        area,
        status: Status::Warn,
        message: message.into(),
        fix: Some(fix.into()),
    }
}

fn fail(area: &'static str, message: impl Into<String>, fix: impl Into<String>) -> Check {
    Check {
        area,
        status: Status::Fail,
        message: message.into(),
        fix: Some(fix.into()),
    }
}

/// What the checks look at.
pub struct Inputs<'a> {
    /// The config as `Config::load` gave it.
    pub config: &'a Result<Loaded, ConfigError>,
    /// Where procfs, `/run` and client configs are read (spec host paths are used as written).
    pub host: &'a Host,
    /// The global `--systemd-cgroup` flag.
    pub systemd_cgroup: bool,
}

/// Every check, in the order an operator reads them.
pub fn run(inputs: &Inputs) -> Vec<Check> {
    let mut checks = Vec::new();
    let default = Config::default();
    let config = match inputs.config {
        Ok(loaded) => {
            checks.push(ok(
                "config",
                match &loaded.path {
                    Some(path) => format!("{} loaded", path.display()),
                    None => format!("no {} (embedded defaults)", crate::config::DEFAULT_PATH),
                },
            ));
            &loaded.config
        }
        Err(err) => {
            checks.push(fail(
                "config",
                err.to_string(),
                "fix the file; the checks below use the embedded defaults",
            ));
            &default
        }
    };
    checks.extend(cgroups(inputs.host, inputs.systemd_cgroup, config));
    let registry = Registry::load(&config.cdi.spec_dirs);
    checks.extend(specs(&registry));
    checks.extend(devices(&registry));
    checks.extend(driver(inputs.host, &registry));
    checks.extend(ledger(&config.state_dir, &registry));
    checks.extend(mps_daemons(config));
    checks.extend(hooks(config));
    checks.extend(clients(inputs.host));
    checks
}

/// The worst verdict: what the exit status reports.
pub fn worst(checks: &[Check]) -> Status {
    checks.iter().map(|c| c.status).max().unwrap_or(Status::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_verdict_wins() {
        let c = |status| Check {
            area: "x",
            status,
            message: String::new(),
            fix: None,
        };
        assert_eq!(worst(&[]), Status::Ok);
        assert_eq!(worst(&[c(Status::Ok), c(Status::Warn)]), Status::Warn);
        assert_eq!(worst(&[c(Status::Fail), c(Status::Warn)]), Status::Fail);
    }
}

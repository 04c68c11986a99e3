//! `doctor`: every check of the node, one line each (or one JSON object); non-zero when one
//! fails. Warnings alone leave the status 0.

use anyhow::Result;
use serde_json::json;

use crate::cli::{DoctorArgs, DoctorFormat};
use crate::config::{self, Config};
use crate::doctor::{self, Inputs, Status};

pub fn doctor(args: DoctorArgs, globals: &super::Globals) -> Result<i32> {
    let config = Config::load(std::env::var_os(config::ENV_VAR).as_deref());
    let host = args.host();
    let checks = doctor::run(&Inputs {
        config: &config,
        host: &host,
        systemd_cgroup: globals.systemd_cgroup,
    });
    let worst = doctor::worst(&checks);
    let text = match args.format {
        DoctorFormat::Text => {
            let mut text: String = checks.iter().map(|c| format!("{c}\n")).collect();
            let count = |s| checks.iter().filter(|c| c.status == s).count();
            text.push_str(&format!(
                "{}: {} ok, {} warn, {} fail\n",
                worst,
                count(Status::Ok),
                count(Status::Warn),
                count(Status::Fail)
            ));
            text
        }
        DoctorFormat::Json => {
            let mut text =
                serde_json::to_string_pretty(&json!({"status": worst, "checks": checks}))?;
            text.push('\n');
            text
        }
    };
    super::print(&text)?;
    Ok(if worst == Status::Fail { 1 } else { 0 })
}

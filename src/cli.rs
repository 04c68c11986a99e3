//! Command line: liboci-cli's runc-compatible verbs and global flags, plus cdirun's own.

use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};
use liboci_cli::{CommonCmd, GlobalOpts, StandardCmd};

use crate::log::LogFormat;

/// An accelerator-aware, runc-compatible OCI runtime.
#[derive(Parser, Debug)]
#[command(name = "cdirun", disable_version_flag = true)]
pub struct Opts {
    #[command(flatten)]
    pub global: GlobalOpts,

    #[command(flatten)]
    pub cdirun: CdirunOpts,

    #[command(subcommand)]
    pub command: Option<Command>,
}

impl Opts {
    /// Parses the process arguments. liboci-cli's command carries a misspelt duplicate of
    /// `checkpoint`, youki's wording for `--log` and a `kill` without runc's default signal; all
    /// are adjusted before parsing.
    pub fn from_args() -> Self {
        use clap::FromArgMatches;
        let matches = Self::runc_command()
            .try_get_matches()
            .unwrap_or_else(|err| exit_refused(err));
        Self::from_arg_matches(&matches).unwrap_or_else(|err| exit_refused(err))
    }

    /// The command line parser, with liboci-cli's verbs adjusted to runc's.
    fn runc_command() -> clap::Command {
        use clap::CommandFactory;
        Self::command()
            // runc refuses an empty id with one line and status 1; liboci-cli's parser would
            // print usage and exit 2. `commands::validate_id` refuses it instead.
            .mut_subcommands(|verb| {
                verb.mut_args(|arg| {
                    if arg.get_id() == "container_id" {
                        arg.value_parser(clap::builder::StringValueParser::new())
                    } else {
                        arg
                    }
                })
            })
            .mut_subcommand("checkpointt", |verb| verb.hide(true))
            // runc's kill sends SIGTERM when no signal is named; liboci-cli requires one.
            .mut_subcommand("kill", |verb| {
                verb.mut_arg("signal", |arg| arg.required(false).default_value("SIGTERM"))
            })
            .mut_subcommand("update", runc_update_values)
            // runc's `events --interval` is a Go duration (`500ms`, `1m30s`); liboci-cli's
            // field is a `u32` of seconds, so it carries milliseconds instead.
            .mut_subcommand("events", |verb| {
                verb.mut_arg("interval", |arg| {
                    arg.value_parser(parse_interval_ms)
                        .default_value("5s")
                        .help("Interval between statistics: a duration such as 500ms, 5s or 1m30s, or whole seconds")
                })
            })
            // runc's `list -f json`.
            .mut_subcommand("list", |verb| verb.mut_arg("format", |arg| arg.short('f')))
            .mut_arg("log", |arg| {
                arg.help("Write cdirun's log to this file (default: only errors, on stderr)")
            })
            .mut_arg("debug", |arg| arg.help("Log at debug level"))
            .mut_arg("log_format", |arg| {
                arg.help("Log format: text (default) or json")
            })
    }
}

/// runc's `update` values: memory sizes with units (`512m`, `1g`) or -1 for unlimited, and a
/// negative CPU quota, realtime runtime or pids limit (-1: unlimited). liboci-cli parses plain
/// unsigned numbers; its `u64` fields carry a negative value as its two's complement, which
/// `update` turns back with `as i64`.
fn runc_update_values(verb: clap::Command) -> clap::Command {
    let bytes = |arg: clap::Arg| arg.allow_negative_numbers(true).value_parser(parse_bytes);
    let signed = |arg: clap::Arg| arg.allow_negative_numbers(true).value_parser(parse_signed);
    verb.mut_arg("memory", bytes)
        .mut_arg("memory_reservation", bytes)
        .mut_arg("memory_swap", |arg| {
            arg.allow_negative_numbers(true)
                .value_parser(|text: &str| parse_bytes(text).map(|v| v as i64))
        })
        .mut_arg("cpu_quota", signed)
        .mut_arg("cpu_rt_runtime", signed)
        .mut_arg("pids_limit", |arg| arg.allow_negative_numbers(true))
}

/// A size as runc reads one: `-1`, or a number with an optional binary unit (`k`, `m`, `g`, `t`,
/// `p`, any case, optionally followed by `i` and `b`: `512m`, `1.5GiB`, `100kb`).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let invalid =
        || format!("invalid size {text:?}: use bytes, a number with k, m, g, t or p, or -1");
    let trimmed = text.trim();
    if trimmed == "-1" {
        return Ok(-1i64 as u64);
    }
    let lower = trimmed.to_ascii_lowercase();
    let digits_end = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(digits_end);
    let unit = unit.trim_start();
    let unit = unit.strip_suffix('b').unwrap_or(unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let power = match unit {
        "" => 0,
        "k" => 1,
        "m" => 2,
        "g" => 3,
        "t" => 4,
        "p" => 5,
        _ => return Err(invalid()),
    };
    let value: f64 = number.parse().map_err(|_| invalid())?;
    let bytes = value * 1024f64.powi(power);
    if !bytes.is_finite() || bytes > i64::MAX as f64 {
        return Err(invalid());
    }
    Ok(bytes as u64)
}

/// A signed number for a `u64` field (see [`runc_update_values`]).
fn parse_signed(text: &str) -> Result<u64, String> {
    text.trim()
        .parse::<i64>()
        .map(|v| v as u64)
        .map_err(|err| format!("invalid number {text:?}: {err}"))
}

/// `events --interval` as runc reads it, in milliseconds for liboci-cli's `u32` field: a Go
/// duration (`500ms`, `1.5s`, `1m30s`; units ns, us, µs, ms, s, m, h) or, as liboci-cli took
/// it, a bare number of seconds. It must be positive (runc refuses 0); a positive interval
/// under a millisecond counts as one.
pub fn parse_interval_ms(text: &str) -> Result<u32, String> {
    let nanos = parse_duration_nanos(text)?;
    if nanos == 0 {
        return Err(format!(
            "invalid interval {text:?}: it must be greater than 0"
        ));
    }
    u32::try_from(nanos.div_ceil(1_000_000))
        .map_err(|_| format!("invalid interval {text:?}: at most {}ms", u32::MAX))
}

/// A Go duration (`time.ParseDuration`) of at least 0, or a bare whole number of seconds, in
/// nanoseconds.
fn parse_duration_nanos(text: &str) -> Result<u128, String> {
    let invalid = |why: &str| format!("invalid duration {text:?}: {why}");
    let trimmed = text.trim();
    if !trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_digit()) {
        let seconds: u128 = trimmed.parse().map_err(|_| invalid("too large"))?;
        return Ok(seconds * 1_000_000_000);
    }
    let rest = trimmed.strip_prefix('+').unwrap_or(trimmed);
    if rest.starts_with('-') {
        return Err(invalid("negative"));
    }
    if rest.is_empty() {
        return Err(invalid(
            "use a number with a unit, such as 500ms, 5s or 1m30s",
        ));
    }
    let mut rest = rest;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_end);
        let unit_end = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_end);
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(invalid("missing unit (ns, us, ms, s, m or h)")),
            other => return Err(invalid(&format!("unknown unit {other:?}"))),
        };
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
            return Err(invalid("a unit must follow a number"));
        }
        // Digits past the nanosecond cannot change the result; keeping 18 avoids overflow.
        let fraction = &fraction[..fraction.len().min(18)];
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| invalid("too large"))?
        };
        let fraction_value: u128 = if fraction.is_empty() {
            0
        } else {
            fraction.parse().map_err(|_| invalid("bad fraction"))?
        };
        let part = whole
            .checked_mul(scale)
            .and_then(|w| w.checked_add(fraction_value * scale / 10u128.pow(fraction.len() as u32)))
            .ok_or_else(|| invalid("too large"))?;
        total = total
            .checked_add(part)
            .ok_or_else(|| invalid("too large"))?;
        rest = after;
    }
    Ok(total)
}

/// Global flags runc accepts that liboci-cli's `GlobalOpts` does not carry.
#[derive(Args, Debug)]
pub struct CdirunOpts {
    /// Run rootless (true), as root (false), or detect it (auto, the default): see docs/slices.md.
    #[arg(long, value_name = "true|false|auto", num_args = 0..=1,
          default_missing_value = "true", require_equals = false)]
    pub rootless: Option<String>,

    /// Print the version and exit.
    #[arg(short = 'v', long)]
    pub version: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    #[command(flatten)]
    Standard(Box<StandardCmd>),
    #[command(flatten)]
    Common(Box<CommonCmd>),
    /// Checkpoint a running container (not supported: exits non-zero, which clients read as such).
    #[command(disable_help_flag = true)]
    Checkpoint(Unsupported),
    /// Restore a checkpointed container (not supported).
    #[command(disable_help_flag = true)]
    Restore(Unsupported),
    /// Inspect the CDI devices cdirun can inject.
    Cdi(CdiArgs),
    /// Print what `create` would change in a bundle's config.json, without creating anything.
    Explain(ExplainArgs),
    /// Check the node: cgroups, CDI specs and their devices, GPU claims, MPS, hooks.d, clients.
    Doctor(DoctorArgs),
    /// Register cdirun as a runtime in Docker's, containerd's or podman's config file.
    Install(InstallArgs),
}

/// `doctor`'s output.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DoctorFormat {
    Text,
    Json,
}

#[derive(Args, Debug)]
pub struct DoctorArgs {
    /// text: one line per check; json: one object for monitoring.
    #[arg(long, value_enum, default_value = "text")]
    pub format: DoctorFormat,
    /// Read procfs, /run and the client configurations below this root.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub host_root: PathBuf,
    /// procfs (default: HOST_ROOT/proc): the mount table and the NVIDIA driver version.
    #[arg(long, value_name = "DIR")]
    pub procfs: Option<PathBuf>,
}

impl DoctorArgs {
    pub fn host(&self) -> crate::cdi::generate::Host {
        let mut host = crate::cdi::generate::Host::under(&self.host_root);
        if let Some(procfs) = &self.procfs {
            host.procfs = procfs.clone();
        }
        host
    }
}

#[derive(Args, Debug)]
pub struct CdiArgs {
    #[command(subcommand)]
    pub command: CdiCommand,
}

#[derive(Subcommand, Debug)]
pub enum CdiCommand {
    /// List the devices found in the spec dirs, by kind, with the spec file of each.
    List,
    /// Check CDI spec files (default: every spec in the spec dirs); exits non-zero on problems.
    Validate(ValidateArgs),
    /// Write CDI specs for the host's GPUs, read from sysfs, procfs and the linker cache.
    Generate(GenerateArgs),
}

/// Which vendor's GPUs `cdi generate` looks for.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum GenerateVendor {
    Nvidia,
    Amd,
    Intel,
    All,
}

/// A hook `cdi generate` can leave out.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DisabledHook {
    Ldcache,
    Symlinks,
}

/// A spec file format.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpecFormat {
    Yaml,
    Json,
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// The vendor whose GPUs to describe; `all` writes a spec for each vendor found.
    #[arg(long, value_enum, default_value = "all")]
    pub vendor: GenerateVendor,
    /// `-` for stdout, a spec file (.yaml or .json), or a spec dir to write
    /// `cdirun-<vendor>.<format>` into.
    #[arg(short, long, default_value = "-", value_name = "FILE|DIR|-")]
    pub output: PathBuf,
    /// Spec format (default: the output file's extension, else yaml).
    #[arg(long, value_enum)]
    pub format: Option<SpecFormat>,
    /// Replace a spec file another tool wrote.
    #[arg(long)]
    pub force: bool,
    /// The cdirun-hook program the specs' hooks run.
    #[arg(long, value_name = "PATH", default_value = crate::cdi::generate::DEFAULT_HOOK)]
    pub hook_path: String,
    /// Leave a hook out of the specs (repeatable): `ldcache` for images without ldconfig
    /// (musl, busybox), `symlinks` for the libcuda.so and /dev/dri/by-path links.
    #[arg(long, value_enum, value_name = "HOOK")]
    pub disable_hook: Vec<DisabledHook>,
    #[command(flatten)]
    pub host: HostArgs,
}

/// Where the host's trees are read from (a node's root seen from a container, or test trees).
#[derive(Args, Debug, Clone)]
pub struct HostArgs {
    /// Read every tree below this root (its sys, proc, dev and etc/ld.so.cache).
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub host_root: PathBuf,
    /// sysfs (default: HOST_ROOT/sys).
    #[arg(long, value_name = "DIR")]
    pub sysfs: Option<PathBuf>,
    /// procfs (default: HOST_ROOT/proc).
    #[arg(long, value_name = "DIR")]
    pub procfs: Option<PathBuf>,
    /// The device dir (default: HOST_ROOT/dev).
    #[arg(long, value_name = "DIR")]
    pub dev: Option<PathBuf>,
    /// The linker cache (default: HOST_ROOT/etc/ld.so.cache); its paths are read under HOST_ROOT.
    #[arg(long, value_name = "FILE")]
    pub ldcache: Option<PathBuf>,
}

impl HostArgs {
    pub fn host(&self) -> crate::cdi::generate::Host {
        let mut host = crate::cdi::generate::Host::under(&self.host_root);
        let pick = |given: &Option<PathBuf>, default: &mut PathBuf| {
            if let Some(given) = given {
                *default = given.clone();
            }
        };
        pick(&self.sysfs, &mut host.sysfs);
        pick(&self.procfs, &mut host.procfs);
        pick(&self.dev, &mut host.dev);
        pick(&self.ldcache, &mut host.ldcache);
        host
    }
}

#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// Spec files to check.
    pub files: Vec<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ExplainArgs {
    /// The bundle whose config.json `create` would edit.
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    /// The container id the edits would be made for.
    #[arg(long, default_value = "explain")]
    pub id: String,
}

#[derive(Args, Debug)]
pub struct InstallArgs {
    /// The client whose config file to edit.
    pub client: crate::install::Client,
    /// The config file (default: /etc/docker/daemon.json, /etc/containerd/config.toml,
    /// /etc/containers/containers.conf). Its other settings, owner and mode are kept.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the edited file on stdout instead of writing it.
    #[arg(long, visible_alias = "print")]
    pub dry_run: bool,
    /// The runtime name clients select (`--runtime NAME`, a RuntimeClass handler).
    #[arg(long, default_value = "cdirun")]
    pub name: String,
    /// The cdirun binary to register (default: this one).
    #[arg(long, value_name = "PATH")]
    pub binary: Option<PathBuf>,
    /// containerd: set the handler's SystemdCgroup option (systemd as PID 1 only).
    #[arg(long)]
    pub systemd_cgroup: bool,
}

/// Arguments of a verb cdirun does not implement; accepted so the error is cdirun's own.
#[derive(Args, Debug)]
pub struct Unsupported {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    pub rest: Vec<String>,
}

/// Exits as clap does for a command line it refuses, after writing the error to the `--log` file
/// the command line names: containerd reads a failed runtime's error from that file, which
/// would otherwise stay empty (runc logs "flag provided but not defined" there).
fn exit_refused(err: clap::Error) -> ! {
    if err.use_stderr() {
        if let Some((path, format)) = log_flags(std::env::args().skip(1)) {
            let rendered = err.render().to_string();
            let line = rendered.lines().next().unwrap_or_default();
            let line = line.strip_prefix("error: ").unwrap_or(line);
            if crate::log::init(Some(Path::new(&path)), format, false, false).is_ok() {
                tracing::error!("{line}");
            }
        }
    }
    err.exit()
}

/// The global `--log` path and `--log-format`, read from a command line clap refused (global
/// flags come before the verb).
fn log_flags(args: impl Iterator<Item = String>) -> Option<(String, LogFormat)> {
    let mut path = None;
    let mut format = None;
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag, Some(value.to_owned())),
            None => (arg.as_str(), None),
        };
        let mut value = || inline.clone().or_else(|| args.next());
        match flag {
            "--log" | "-l" => path = value(),
            "--log-format" => format = value(),
            "--root" | "-r" => drop(value()),
            "--rootless" if inline.is_none() => {
                args.next_if(|next| ["true", "false", "auto"].contains(&next.as_str()));
            }
            _ if flag.starts_with('-') => {}
            _ => break, // the verb
        }
    }
    let format = LogFormat::parse(format.as_deref()).unwrap_or(LogFormat::Text);
    path.map(|path| (path, format))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_flags_are_read_before_the_verb() {
        let read = |line: &str| log_flags(line.split_whitespace().map(str::to_owned));
        assert_eq!(
            read("--root /r --log /l.json --log-format json kill --bogus x"),
            Some(("/l.json".to_owned(), LogFormat::Json))
        );
        assert_eq!(
            read("--log=/l --debug exec --log /not-global x"),
            Some(("/l".to_owned(), LogFormat::Text))
        );
        assert_eq!(read("--root /r kill --log /l x"), None);
        assert_eq!(
            read("--rootless true -r /r -l /l kill x"),
            Some(("/l".to_owned(), LogFormat::Text))
        );
    }

    #[test]
    fn sizes_read_as_runc_reads_them() {
        let cases = [
            ("1048576", Ok(1 << 20)),
            ("512m", Ok(512 << 20)),
            ("512M", Ok(512 << 20)),
            ("1g", Ok(1 << 30)),
            ("1.5GiB", Ok(3 << 29)),
            ("100kb", Ok(100 << 10)),
            ("2 t", Ok(2 << 40)),
            ("-1", Ok(u64::MAX)),
        ];
        for (text, want) in cases {
            assert_eq!(parse_bytes(text), want, "{text}");
        }
        for bad in ["", "m", "12x", "-2", "1..2m", "1e3"] {
            assert!(parse_bytes(bad).is_err(), "{bad} was accepted");
        }
    }

    /// Regression: `events --interval 1s` was refused; runc takes a Go duration.
    #[test]
    fn intervals_read_as_go_durations_or_whole_seconds() {
        let cases = [
            ("5", 5_000),
            ("1s", 1_000),
            ("500ms", 500),
            ("200ms", 200),
            ("1m30s", 90_000),
            ("1.5s", 1_500),
            (".5s", 500),
            ("1h", 3_600_000),
            ("2h45m", 9_900_000),
            ("+3s", 3_000),
            ("1500us", 2),
            ("250µs", 1),
            ("1ns", 1),
            ("1s500ms", 1_500),
        ];
        for (text, want) in cases {
            assert_eq!(parse_interval_ms(text), Ok(want), "{text}");
        }
        for bad in [
            "", "0", "0s", "-1s", "1.5", "s", "1x", "1.", "1..5s", "5 s", "1sec", "2000h", "ms5",
        ] {
            assert!(parse_interval_ms(bad).is_err(), "{bad} was accepted");
        }
    }

    fn events_interval(args: &[&str]) -> Result<u32, clap::Error> {
        use clap::FromArgMatches;
        let matches = Opts::runc_command().try_get_matches_from(args)?;
        match Opts::from_arg_matches(&matches)?.command {
            Some(Command::Common(common)) => match *common {
                CommonCmd::Events(events) => Ok(events.interval),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn events_takes_a_duration_and_defaults_to_five_seconds() {
        let interval = |args: &[&str]| events_interval(args).map_err(|e| e.to_string());
        assert_eq!(
            interval(&["cdirun", "events", "--interval", "200ms", "c"]),
            Ok(200)
        );
        assert_eq!(
            interval(&["cdirun", "events", "--interval", "2", "c"]),
            Ok(2_000)
        );
        assert_eq!(interval(&["cdirun", "events", "c"]), Ok(5_000));
        let err = interval(&["cdirun", "events", "--interval", "0s", "c"]).unwrap_err();
        assert!(err.contains("greater than 0"), "{err}");
    }
}

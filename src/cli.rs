//! Command line: liboci-cli's runc-compatible verbs and global flags, plus cdirun's own.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use liboci_cli::{CommonCmd, GlobalOpts, StandardCmd};

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
        use clap::{CommandFactory, FromArgMatches};
        let command = Self::command()
            .mut_subcommand("checkpointt", |verb| verb.hide(true))
            // runc's kill sends SIGTERM when no signal is named; liboci-cli requires one.
            .mut_subcommand("kill", |verb| {
                verb.mut_arg("signal", |arg| arg.required(false).default_value("SIGTERM"))
            })
            .mut_arg("log", |arg| {
                arg.help("Write cdirun's log to this file (default: only errors, on stderr)")
            })
            .mut_arg("debug", |arg| arg.help("Log at debug level"))
            .mut_arg("log_format", |arg| {
                arg.help("Log format: text (default) or json")
            });
        let matches = command.get_matches();
        Self::from_arg_matches(&matches).unwrap_or_else(|err| err.exit())
    }
}

/// Global flags runc accepts that liboci-cli's `GlobalOpts` does not carry.
#[derive(Args, Debug)]
pub struct CdirunOpts {
    /// Ignore cgroup permission errors (accepted for runc compatibility; cdirun runs as root).
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

/// Arguments of a verb cdirun does not implement; accepted so the error is cdirun's own.
#[derive(Args, Debug)]
pub struct Unsupported {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    pub rest: Vec<String>,
}

/// Log output format, as runc names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    pub fn parse(value: Option<&str>) -> Result<Self, String> {
        match value {
            None | Some("text") => Ok(Self::Text),
            Some("json") => Ok(Self::Json),
            Some(other) => Err(format!("invalid log-format {other:?}: use text or json")),
        }
    }
}

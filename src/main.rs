//! cdirun: parse the command line, set up logging, dispatch one verb, turn its result into an
//! exit status and one error line.

use std::process::ExitCode;

use anyhow::Result;
use clap::CommandFactory;
use liboci_cli::{CommonCmd, StandardCmd};

use cdirun::cli::{CdiCommand, Command, Opts};
use cdirun::engine::seal;
use cdirun::log::LogFormat;
use cdirun::{commands, log};

/// Socket activation passes `LISTEN_FDS` descriptors to the process whose pid is `LISTEN_PID`.
/// libcontainer hands the init every descriptor `LISTEN_FDS` counts without that check, so a
/// stale value left in a daemon's environment leaked its descriptors 3.. into containers.
/// As runc does, the variables count only when they are meant for this process.
fn drop_foreign_listen_fds() {
    let ours = std::env::var("LISTEN_PID").is_ok_and(|pid| pid == std::process::id().to_string());
    if std::env::var_os("LISTEN_FDS").is_some() && !ours {
        // SAFETY: called before cdirun starts any thread.
        unsafe {
            std::env::remove_var("LISTEN_FDS");
            std::env::remove_var("LISTEN_PID");
            std::env::remove_var("LISTEN_FDNAMES");
        }
    }
}

fn main() -> ExitCode {
    if let Some(code) = cdirun::rootless::id_map_helper() {
        return ExitCode::from(code);
    }
    let opts = Opts::from_args();
    let format = match LogFormat::parse(opts.global.log_format.as_deref()) {
        Ok(format) => format,
        Err(err) => return fail(&anyhow::anyhow!(err)),
    };
    // The verbs that make a process through libcontainer keep its error events for the line.
    let causes = opts.command.as_ref().is_some_and(enters_container);
    if let Err(err) = log::init(
        opts.global.log.as_deref(),
        format,
        opts.global.debug,
        causes,
    ) {
        let path = opts
            .global
            .log
            .as_deref()
            .unwrap_or(std::path::Path::new(""))
            .display();
        return fail(&anyhow::anyhow!("cannot open log file {path}: {err}"));
    }
    let failure = failure_status(opts.command.as_ref());
    match dispatch(opts) {
        Ok(code) => ExitCode::from(code as u8),
        Err(err) if closed_stdout(&err) => die_of_sigpipe(),
        Err(err) => {
            fail(&err);
            ExitCode::from(failure)
        }
    }
}

/// The status of a failed verb. Like runc, `exec` fails with 255, so that its own failure (no
/// such container, no such command) is told apart from the exit status of the process it ran.
fn failure_status(command: Option<&Command>) -> u8 {
    match command {
        Some(Command::Common(cmd)) if matches!(**cmd, CommonCmd::Exec(_)) => 255,
        _ => 1,
    }
}

/// Reports an error on stderr and in the log as one line, and gives the failure status. Like
/// runc's, the line carries no program name: podman and containerd put the runtime's name in
/// front of what it prints ("OCI runtime error: cdirun: ...").
fn fail(err: &anyhow::Error) -> ExitCode {
    let message = one_line(err);
    tracing::error!("{message}");
    commands::print_err(&message);
    ExitCode::FAILURE
}

/// Whether the verb failed because the reader of its stdout went away.
fn closed_stdout(err: &anyhow::Error) -> bool {
    err.downcast_ref::<commands::StdoutError>()
        .is_some_and(commands::StdoutError::is_closed_pipe)
}

/// Ends the process as runc does when its stdout's reader is gone: killed by SIGPIPE (status
/// 141 in a shell), silently. Rust ignores SIGPIPE, so the write failed instead; the default
/// action is restored and the signal raised.
fn die_of_sigpipe() -> ExitCode {
    // SAFETY: signal(2) and raise(3) take plain integers; the handler is the default action.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::raise(libc::SIGPIPE);
    }
    ExitCode::from(128 + libc::SIGPIPE as u8)
}

/// The error and its causes joined by ": ", leaving out a cause whose text the line already
/// holds: libcontainer's and libcgroups' errors often print their source themselves, which would
/// otherwise show up twice. From a libcontainer error on, the line gives the cause libcontainer
/// logged where it failed when there is one: its own error values drop it.
fn one_line(err: &anyhow::Error) -> String {
    let mut message = String::new();
    let push = |message: &mut String, text: &str| {
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(text);
    };
    for cause in err.chain() {
        if cause
            .downcast_ref::<libcontainer::error::LibcontainerError>()
            .is_some()
        {
            if let Some(found) = log::cause::first() {
                push(&mut message, &found.replace('\n', " "));
                break;
            }
        }
        let text = log::cause::tidy(&cause.to_string()).replace('\n', " ");
        if !message.contains(&text) {
            push(&mut message, &text);
        }
    }
    message
}

/// Runs one verb; `Ok` carries the exit status (a container's own for `run` and `exec`).
fn dispatch(opts: Opts) -> Result<i32> {
    if opts.cdirun.version {
        commands::print(&version())?;
        return Ok(0);
    }
    let Some(command) = opts.command else {
        let help = Opts::command().render_help().to_string();
        commands::print(&help)?;
        return Ok(0);
    };
    if let Some(id) = container_id(&command) {
        commands::validate_id(id)?;
    }
    if enters_container(&command) {
        seal::ensure()?;
        drop_foreign_listen_fds();
    }
    let mode = cdirun::rootless::mode(opts.cdirun.rootless.as_deref())?;
    let root = opts
        .global
        .root
        .unwrap_or_else(|| cdirun::rootless::default_root(mode));
    let globals = commands::Globals {
        root: commands::absolute(&root)?,
        systemd_cgroup: opts.global.systemd_cgroup,
        rootless: mode == cdirun::rootless::Mode::Rootless,
    };
    if globals.rootless && container_id(&command).is_some() {
        commands::rootless_cgroups(&globals)?;
    }
    let done = |result: Result<()>| result.map(|()| 0);

    match command {
        Command::Standard(cmd) => match *cmd {
            StandardCmd::Create(args) => done(commands::create::create(args, &globals)),
            StandardCmd::Start(args) => done(commands::start::start(args, &globals)),
            StandardCmd::State(args) => done(commands::state::state(args, &globals)),
            StandardCmd::Kill(args) => done(commands::kill::kill(args, &globals)),
            StandardCmd::Delete(args) => done(commands::delete::delete(args, &globals)),
        },
        Command::Common(cmd) => match *cmd {
            CommonCmd::Run(args) => commands::run::run(args, &globals),
            CommonCmd::Exec(args) => commands::exec::exec(args, &globals),
            CommonCmd::Ps(args) => done(commands::ps::ps(args, &globals)),
            CommonCmd::List(args) => done(commands::list::list(args, &globals)),
            CommonCmd::Pause(args) => done(commands::pause::pause(args, &globals)),
            CommonCmd::Resume(args) => done(commands::resume::resume(args, &globals)),
            CommonCmd::Events(args) => done(commands::events::events(args, &globals)),
            CommonCmd::Update(args) => done(commands::update::update(args, &globals)),
            CommonCmd::Spec(args) => done(commands::spec::spec(args)),
            CommonCmd::Features(_) => done(commands::features::features()),
            CommonCmd::Checkpointt(_) => done(commands::unsupported::unsupported("checkpoint")),
        },
        Command::Checkpoint(_) => done(commands::unsupported::unsupported("checkpoint")),
        Command::Restore(_) => done(commands::unsupported::unsupported("restore")),
        Command::Cdi(args) => match args.command {
            CdiCommand::List => done(commands::cdi_list::list()),
            CdiCommand::Validate(args) => commands::cdi_validate::validate(args),
            CdiCommand::Generate(args) => done(commands::cdi_generate::generate(args)),
        },
        Command::Explain(args) => done(commands::explain::explain(args, &globals)),
        Command::Doctor(args) => commands::doctor::doctor(args, &globals),
        Command::Install(args) => done(commands::install::install(args, &globals)),
    }
}

/// The container id a verb names, checked before any verb turns it into a path.
fn container_id(command: &Command) -> Option<&str> {
    let id = match command {
        Command::Standard(cmd) => match &**cmd {
            StandardCmd::Create(args) => &args.container_id,
            StandardCmd::Start(args) => &args.container_id,
            StandardCmd::State(args) => &args.container_id,
            StandardCmd::Kill(args) => &args.container_id,
            StandardCmd::Delete(args) => &args.container_id,
        },
        Command::Common(cmd) => match &**cmd {
            CommonCmd::Run(args) => &args.container_id,
            CommonCmd::Exec(args) => &args.container_id,
            CommonCmd::Ps(args) => &args.container_id,
            CommonCmd::Pause(args) => &args.container_id,
            CommonCmd::Resume(args) => &args.container_id,
            CommonCmd::Events(args) => &args.container_id,
            CommonCmd::Update(args) => &args.container_id,
            CommonCmd::Spec(_)
            | CommonCmd::List(_)
            | CommonCmd::Features(_)
            | CommonCmd::Checkpointt(_) => return None,
        },
        Command::Explain(args) => &args.id,
        Command::Checkpoint(_)
        | Command::Restore(_)
        | Command::Cdi(_)
        | Command::Doctor(_)
        | Command::Install(_) => {
            return None;
        }
    };
    Some(id)
}

/// Verbs that start a process inside a container: only they pay for sealing the binary.
fn enters_container(command: &Command) -> bool {
    match command {
        Command::Standard(cmd) => matches!(**cmd, StandardCmd::Create(_)),
        Command::Common(cmd) => matches!(**cmd, CommonCmd::Run(_) | CommonCmd::Exec(_)),
        _ => false,
    }
}

fn version() -> String {
    format!(
        "cdirun version {}\nspec: {}\nlibcontainer: 0.7.0\n",
        env!("CARGO_PKG_VERSION"),
        libcontainer::oci_spec::runtime::VERSION
    )
}

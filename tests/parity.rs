//! Behaviour clients rely on because runc 1.1.5 has it, checked on real containers: verbs
//! whose stdout goes away, hook output and hook failures, and the lifecycle verbs' answers to
//! containers in every state.

mod common;

use std::fs::File;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::Duration;

use common::{Bundle, Runtime, text, unique_id, wait_within};

/// Runs a verb with its stdout going to `stdout` and returns how it ended and its stderr.
fn with_stdout(rt: &Runtime, args: &[&str], stdout: Stdio) -> (std::process::ExitStatus, String) {
    let mut cmd = rt.command(args);
    cmd.stdout(stdout).stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    let out = wait_within(child, Duration::from_secs(30));
    (out.status, text(&out.stderr))
}

/// A pipe whose reader is already gone.
fn closed_pipe() -> Stdio {
    let (read, write) = nix::unistd::pipe().unwrap();
    drop(read);
    Stdio::from(write)
}

/// Regression: `state ID | true` and `list | true` panicked ("failed printing to stdout:
/// Broken pipe", status 134 and a backtrace). As runc, they die of SIGPIPE and say nothing; on
/// a full disk they fail with one line naming stdout.
#[test]
fn state_and_list_die_quietly_on_a_closed_stdout_and_fail_cleanly_on_a_full_one() {
    let rt = Runtime::new();
    let bundle = Bundle::new(&["sleep", "60"]);
    let id = unique_id("stdout");
    rt.created(&bundle, &id);
    let verbs: [&[&str]; 4] = [&["state", &id], &["list"], &["list", "-q"], &["--version"]];
    for args in verbs {
        let (status, err) = with_stdout(&rt, args, closed_pipe());
        assert_eq!(
            status.signal(),
            Some(libc::SIGPIPE),
            "{args:?}: {status:?}, stderr: {err}"
        );
        assert_eq!(err, "", "{args:?}");

        let full = File::options().write(true).open("/dev/full").unwrap();
        let (status, err) = with_stdout(&rt, args, Stdio::from(full));
        assert_eq!(
            status.code(),
            Some(1),
            "{args:?}: {status:?}, stderr: {err}"
        );
        assert_eq!(
            err, "cannot write to stdout: No space left on device (os error 28)\n",
            "{args:?}"
        );
    }
    rt.ok(&["delete", "--force", &id]);
    rt.assert_gone(&id);
}

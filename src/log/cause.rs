//! The cause of a failure inside libcontainer, for the one error line.
//!
//! libcontainer 0.7 loses the cause on the way to its error value: the container init sends the
//! runtime only the top error's text ("failed syscall", "failed to unix syscall", "failed to
//! prepare rootfs"), and its parent-side io errors come back as "io error" with the file
//! unnamed. The cause is only in the tracing event libcontainer logs where the failure
//! happened, in whichever process that was: capset refused, chdir's errno, the mount and its
//! source, the `/proc/self/oom_score_adj` write. A client shows the runtime's last line alone
//! (Docker: `OCI runtime create failed: ...`), so that line has to carry it.
//!
//! [`Recorder`] keeps libcontainer's and libcgroups' error events in a memfd that the processes
//! libcontainer forks (intermediate, init, tenant) inherit and write to as well; it closes on
//! exec, so a container never sees it. [`first`] reads back the earliest, which is the innermost:
//! libcontainer logs an error where it happens and again at each level it is passed up through.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// The events shared between cdirun and the processes libcontainer forks.
static SINK: OnceLock<File> = OnceLock::new();

/// Enough for the events of one failure; a runaway loop of errors stops being kept there.
const SINK_LIMIT: u64 = 64 * 1024;

/// Makes the shared memfd; the recorder keeps nothing before this is called.
pub fn arm() -> std::io::Result<()> {
    let fd = nix::sys::memfd::memfd_create(
        c"cdirun-causes",
        nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC,
    )?;
    let _ = SINK.set(File::from(fd));
    Ok(())
}

/// One recorded event: its message and its fields as their `Debug` text.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
struct Record {
    message: String,
    fields: Vec<(String, String)>,
}

impl Visit for Record {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.fields
                .push((field.name().to_owned(), format!("{value:?}")));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_owned();
        } else {
            self.record_debug(field, &value);
        }
    }
}

/// The layer that records libcontainer's and libcgroups' error events.
pub struct Recorder;

impl<S: Subscriber> Layer<S> for Recorder {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        let from_engine = ["libcontainer", "libcgroups"]
            .iter()
            .any(|crate_name| meta.target().starts_with(crate_name));
        if *meta.level() != Level::ERROR || !from_engine {
            return;
        }
        let Some(mut sink) = SINK.get() else {
            return;
        };
        if sink.metadata().is_ok_and(|m| m.len() > SINK_LIMIT) {
            return;
        }
        let mut record = Record::default();
        event.record(&mut record);
        if let Ok(mut line) = serde_json::to_string(&record) {
            line.push('\n');
            // One write per record: the memfd's offset is shared with the forked processes and
            // a regular file's writes do not interleave.
            let _ = sink.write_all(line.as_bytes());
        }
    }
}

/// The cause of the failure just seen, in words, or `None` when nothing was recorded.
pub fn first() -> Option<String> {
    let sink = SINK.get()?;
    let mut bytes = vec![0; SINK_LIMIT as usize + 4096];
    let read = sink.read_at(&mut bytes, 0).ok()?;
    let text = String::from_utf8_lossy(&bytes[..read]);
    let records: Vec<Record> = text
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    explain(&records)
}

/// The first record in words, with the mount it happened on when a later record names one
/// (libcontainer names the mount only one level up from the failing call).
fn explain(records: &[Record]) -> Option<String> {
    let cause = words(records.first()?);
    let mount = records
        .iter()
        .find_map(|r| mount_destination(&r.message))
        .filter(|dest| !cause.contains(&format!("{dest:?}")));
    Some(match mount {
        Some(dest) => format!("mount at {dest:?}: {cause}"),
        None => cause,
    })
}

/// A record as one phrase: the message, then each field's value without Rust's `Debug`
/// wrapping, joined by ": ".
fn words(record: &Record) -> String {
    let mut text = record.message.trim().to_owned();
    for (_, value) in &record.fields {
        let value = plain(value);
        if !value.is_empty() && !text.contains(&value) {
            text.push_str(": ");
            text.push_str(&value);
        }
    }
    text
}

/// A field's `Debug` text as words: the innermost string in it (`SetCaps(CapsError("capset
/// failure: ..."))`, `Io(Os { .., message: "No such file or directory" })`), an errno's
/// description for its bare name (`ENOENT`), else the text itself.
fn plain(debug: &str) -> String {
    if let Some(inner) = last_string_literal(debug) {
        return inner;
    }
    errno_description(debug).unwrap_or_else(|| debug.to_owned())
}

/// The last `"..."` literal in `debug`, unescaped.
fn last_string_literal(debug: &str) -> Option<String> {
    let end = debug.rfind('"')?;
    let bytes = debug.as_bytes();
    let mut start = end;
    loop {
        start = debug[..start].rfind('"')?;
        // An escaped quote belongs to the literal; keep looking for its opening quote.
        let backslashes = bytes[..start]
            .iter()
            .rev()
            .take_while(|b| **b == b'\\')
            .count();
        if backslashes % 2 == 0 {
            break;
        }
    }
    let literal = &debug[start..=end];
    Some(serde_json::from_str(literal).unwrap_or_else(|_| literal.trim_matches('"').to_owned()))
}

/// "No such file or directory" for "ENOENT": nix prints an errno's name in `Debug`.
fn errno_description(name: &str) -> Option<String> {
    if !name.starts_with('E')
        || !name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    {
        return None;
    }
    (1..4096)
        .map(nix::errno::Errno::from_raw)
        .find(|errno| format!("{errno:?}") == name)
        .map(|errno| errno.desc().to_owned())
}

/// libcontainer's channel error for a failure its child sent where another message was due,
/// `received unexpected message: OtherError("cause"), expected: WriteMapping`, as the cause
/// alone; any other text unchanged.
pub fn tidy(text: &str) -> String {
    static UNEXPECTED: OnceLock<regex::Regex> = OnceLock::new();
    let pattern = UNEXPECTED.get_or_init(|| {
        regex::Regex::new(
            r#"received unexpected message: (?:OtherError|ExecFailed)\(("(?:[^"\\]|\\.)*")\), expected: \w+"#,
        )
        .expect("the pattern is valid")
    });
    pattern
        .replace_all(text, |caps: &regex::Captures| {
            serde_json::from_str::<String>(&caps[1]).unwrap_or_else(|_| caps[1].to_owned())
        })
        .into_owned()
}

/// `/data` from libcontainer's `failed to mount Mount { destination: "/data", ... }`.
fn mount_destination(message: &str) -> Option<String> {
    let rest = &message[message.find("Mount { destination: ")? + "Mount { destination: ".len()..];
    last_string_literal(&rest[..=rest.find("\", ")?])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(message: &str, fields: &[(&str, &str)]) -> Record {
        Record {
            message: message.to_owned(),
            fields: fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn capset_failure_reads_as_words() {
        let records = [
            record(
                "failed to drop capabilities",
                &[(
                    "err",
                    r#"SetCaps(CapsError("capset failure: Operation not permitted (os error 1)"))"#,
                )],
            ),
            record(
                "failed to initialize container process: failed syscall",
                &[],
            ),
        ];
        assert_eq!(
            explain(&records).unwrap(),
            "failed to drop capabilities: capset failure: Operation not permitted (os error 1)"
        );
    }

    #[test]
    fn errno_names_become_descriptions() {
        let records = [record("failed to chdir", &[("e", "ENOENT")])];
        assert_eq!(
            explain(&records).unwrap(),
            "failed to chdir: No such file or directory"
        );
        assert_eq!(
            plain("EOPNOTSUPP"),
            "Operation not supported on transport endpoint"
        );
        assert_eq!(plain("ESOMETHING"), "ESOMETHING");
    }

    #[test]
    fn a_mount_failure_names_the_mount() {
        let records = [
            record(
                r#"failed to canonicalize "/nonexistent/src": No such file or directory (os error 2)"#,
                &[],
            ),
            record(
                r#"failed to mount Mount { destination: "/data", typ: Some("bind"), source: Some("/nonexistent/src"), options: Some(["rbind"]), uid_mappings: None, gid_mappings: None }: io error"#,
                &[],
            ),
            record(
                "failed to prepare rootfs",
                &[(
                    "err",
                    r#"Mount(Io(Os { code: 2, kind: NotFound, message: "No such file or directory" }))"#,
                )],
            ),
        ];
        assert_eq!(
            explain(&records).unwrap(),
            r#"mount at "/data": failed to canonicalize "/nonexistent/src": No such file or directory (os error 2)"#
        );
    }

    #[test]
    fn escaped_quotes_stay_inside_the_literal() {
        assert_eq!(plain(r#"Other("bad \"x\" here")"#), r#"bad "x" here"#);
    }

    #[test]
    fn a_childs_failure_message_is_unwrapped() {
        let text = r#"failed to create container: received unexpected message: OtherError("failed to write uid map: \"EPERM\""), expected: WriteMapping"#;
        assert_eq!(
            tidy(text),
            r#"failed to create container: failed to write uid map: "EPERM""#
        );
        assert_eq!(tidy("io error"), "io error");
    }

    #[test]
    fn nothing_recorded_is_no_cause() {
        assert_eq!(explain(&[]), None);
    }
}

//! Runtime logging in runc's shapes: `--log FILE`, `--log-format text|json`, `--debug`.
//!
//! containerd's shim and conmon read the log file and take the last `"level":"error"` line as the
//! runtime's error, so every record is one line: JSON `{"level","msg","time"}` or logrus-style text.
//! Without `--log`, nothing but the final error reaches stderr unless `--debug` asks for more.

use std::fmt;
use std::fs::OpenOptions;
use std::io;
use std::path::Path;
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

pub mod cause;

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

/// Whether records go to a `--log` file (set once, by `init`).
static TO_FILE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether this process logs to a `--log` file.
pub fn has_file() -> bool {
    TO_FILE.load(std::sync::atomic::Ordering::Relaxed)
}

/// Installs the global subscriber. With `causes`, libcontainer's error events are kept for the
/// error line (see [`cause`]). Without a log file, `--debug` or `causes` none is installed, so
/// tracing calls cost a branch and nothing else.
pub fn init(path: Option<&Path>, format: LogFormat, debug: bool, causes: bool) -> io::Result<()> {
    use tracing_subscriber::filter::LevelFilter;
    use tracing_subscriber::prelude::*;

    let level = LevelFilter::from_level(if debug { Level::DEBUG } else { Level::WARN });
    let lines = tracing_subscriber::fmt::layer().event_format(LineFormat { format });
    let lines = match path {
        Some(path) => {
            let file = OpenOptions::new().create(true).append(true).open(path)?;
            Some(lines.with_writer(Mutex::new(file)).boxed())
        }
        None if debug => Some(lines.with_writer(io::stderr).boxed()),
        None => None,
    };
    let recorder = if causes {
        cause::arm()?;
        Some(cause::Recorder.with_filter(LevelFilter::ERROR))
    } else {
        None
    };
    if lines.is_none() && recorder.is_none() {
        return Ok(());
    }
    let to_file = path.is_some();
    // A subscriber may already be set (tests, re-entry); that is not an error worth failing on.
    let installed = tracing_subscriber::registry()
        .with(lines.map(|l| l.with_filter(level)))
        .with(recorder)
        .try_init()
        .is_ok();
    if installed && to_file {
        TO_FILE.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    Ok(())
}

/// One record per line, as runc (logrus) writes them.
struct LineFormat {
    format: LogFormat,
}

impl<S, N> FormatEvent<S, N> for LineFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut msg = MessageVisitor::default();
        event.record(&mut msg);
        let level = event.metadata().level().as_str().to_ascii_lowercase();
        let time = chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let line = render(self.format, &level, &msg.0, &time);
        writeln!(writer, "{line}")
    }
}

/// Renders one record; `msg` never contains a raw newline afterwards.
pub fn render(format: LogFormat, level: &str, msg: &str, time: &str) -> String {
    match format {
        LogFormat::Json => {
            serde_json::json!({ "level": level, "msg": msg, "time": time }).to_string()
        }
        LogFormat::Text => {
            let quoted = serde_json::Value::String(msg.to_owned()).to_string();
            format!("time=\"{time}\" level={level} msg={quoted}")
        }
    }
}

/// Collects the event's message and its fields into one flat string.
#[derive(Default)]
struct MessageVisitor(String);

impl Visit for MessageVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        use std::fmt::Write;
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, "{}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            if !self.0.is_empty() {
                self.0.push(' ');
            }
            self.0.push_str(value);
        } else {
            self.record_debug(field, &value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_record_is_one_line_in_runc_shape() {
        let line = render(LogFormat::Json, "error", "bad\nthing \"x\"", "T");
        assert!(!line.contains('\n'));
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"level": "error", "msg": "bad\nthing \"x\"", "time": "T"})
        );
    }

    #[test]
    fn text_record_quotes_the_message() {
        let line = render(LogFormat::Text, "warn", "a \"b\"", "T");
        assert_eq!(line, r#"time="T" level=warn msg="a \"b\"""#);
    }
}

//! Dapr kit-compatible log lines (logrus text or JSON) on top of `tracing`.
//!
//! Operators grep and parse Sentry's logs; keeping the exact keys, level names and scope strings means existing
//! log pipelines, alerts and dashboards keep working when Warden replaces Sentry.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::filter::{EnvFilter, ParseError, filter_fn};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::{SubscriberInitExt as _, TryInitError};
use tracing_subscriber::{Layer as _, Registry};

/// Scope of Sentry's top-level component; also the scope of every event whose target is not a `dapr.` scope
/// (library crates, `warden_host::...` module paths), as all of Sentry's unscoped output is `dapr.sentry`.
pub(crate) const SCOPE_SENTRY: &str = "dapr.sentry";
/// Scope of the certificate authority (loading, generating and signing with the trust bundle).
pub(crate) const SCOPE_CA: &str = "dapr.sentry.ca";
/// Scope of the gRPC signing server.
pub(crate) const SCOPE_SERVER: &str = "dapr.sentry.server";

/// Targets that start with this prefix are printed verbatim as the `scope`.
const DAPR_SCOPE_PREFIX: &str = "dapr.";

/// Name of the boolean event field that turns an ERROR event into a `fatal` line.
const FATAL_FIELD: &str = "fatal";

/// Dependencies that log heavily at debug/info (per connection or per file event); capped at warn unless
/// `RUST_LOG` says otherwise. EnvFilter matches targets by prefix, so `hyper` also covers `hyper_util`.
const NOISY_TARGETS: &[&str] = &[
    "h2",
    "hyper",
    "tower",
    "tonic",
    "axum",
    "rustls",
    "tokio_rustls",
    "notify",
];

/// The keys every line carries; event fields with these names are renamed to `fields.<key>` (as logrus does)
/// so that a careless field can never forge or hide the level, time or scope of a line.
const STANDARD_KEYS: [&str; 7] = ["instance", "level", "msg", "scope", "time", "type", "ver"];

/// Minimum severity to print, with the same names as Dapr's `--log-level` flag.
///
/// `Fatal` prints only events marked fatal (`error!(fatal = true, ...)`); tracing has no fatal level.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogLevel {
    /// Everything Warden logs, including per-request detail.
    Debug,
    /// Lifecycle events (startup, reloads, listening ports); Dapr's default.
    #[default]
    Info,
    /// Only problems that did not stop the process.
    Warn,
    /// Only failures (including fatal ones).
    Error,
    /// Only the failure that ends the process.
    Fatal,
}

impl LogLevel {
    /// The EnvFilter directive for this level; fatal events are ERROR events, narrowed later by a field filter.
    fn directive(self) -> &'static str {
        match self {
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error | Self::Fatal => "error",
        }
    }
}

/// How the process logs, taken from the command line (`--log-level`, `--log-as-json`) and the build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LogOptions {
    /// Minimum severity to print; ignored when `RUST_LOG` is set.
    pub level: LogLevel,
    /// One JSON object per line (`--log-as-json`) instead of logrus text, for log collectors that parse JSON.
    pub json: bool,
    /// Printed as `ver` on every line so mixed-version fleets can be told apart in aggregated logs.
    pub version: &'static str,
}

/// Why the logger could not be installed; startup should fail rather than run without logs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum LoggingError {
    /// `RUST_LOG` is set but is not a valid EnvFilter directive list.
    #[error("invalid RUST_LOG filter: {0}")]
    Filter(#[from] ParseError),
    /// `RUST_LOG` is set but is not valid UTF-8, so it cannot be parsed.
    #[error("RUST_LOG is not valid UTF-8")]
    FilterNotUnicode,
    /// A global subscriber (or `log` logger) was already installed, e.g. `init_logging` called twice.
    #[error("a global logger is already installed: {0}")]
    AlreadyInstalled(#[from] TryInitError),
}

/// Installs the process-wide logger, writing Dapr kit-formatted lines to stdout, and routes `log` crate
/// records (rustls) through it.
///
/// Call once, before anything logs. Callers must never put secrets in log messages or fields: no tokens,
/// private keys, PINs or CSR/JWT bodies, because logs are shipped to places with weaker access control than
/// the credentials themselves.
pub(crate) fn init_logging(options: &LogOptions) -> Result<(), LoggingError> {
    make_subscriber(options, std::io::stdout)?.try_init()?;
    Ok(())
}

/// Builds the subscriber [`init_logging`] installs, but writing to `writer`, so that tests (and embedders) can
/// capture exactly what operators would see without touching the global default.
///
/// Reads `RUST_LOG`: when set and non-empty it replaces `options.level` and the dependency caps entirely, as a
/// debugging escape hatch. The instance name is the host name and the clock is the system clock (UTC).
pub(crate) fn make_subscriber<W>(
    options: &LogOptions,
    writer: W,
) -> Result<impl Subscriber + Send + Sync + 'static + use<W>, LoggingError>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let rust_log = match std::env::var_os(EnvFilter::DEFAULT_ENV) {
        None => None,
        Some(value) => Some(
            value
                .into_string()
                .map_err(|_| LoggingError::FilterNotUnicode)?,
        ),
    };
    let instance = gethostname::gethostname().to_string_lossy().into_owned();
    build_subscriber(
        options,
        writer,
        rust_log.as_deref(),
        KitFormat::new(options, instance, OffsetDateTime::now_utc),
    )
}

/// [`make_subscriber`] with every environmental input (filter override, host name, clock) passed in.
fn build_subscriber<W>(
    options: &LogOptions,
    writer: W,
    rust_log: Option<&str>,
    format: KitFormat,
) -> Result<impl Subscriber + Send + Sync + 'static + use<W>, LoggingError>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let rust_log = rust_log.filter(|directives| !directives.trim().is_empty());
    let filter = match rust_log {
        Some(directives) => EnvFilter::builder().parse(directives)?,
        None => EnvFilter::builder().parse(level_directives(options.level))?,
    };
    // With `--log-level fatal`, ERROR events pass the EnvFilter but only those carrying the fatal field print.
    let only_fatal = rust_log.is_none() && options.level == LogLevel::Fatal;
    let fatal_filter = filter_fn(move |metadata: &Metadata<'_>| {
        !only_fatal || !metadata.is_event() || metadata.fields().field(FATAL_FIELD).is_some()
    });
    let layer = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .event_format(format)
        .with_writer(writer)
        .with_filter(fatal_filter);
    Ok(Registry::default().with(filter).with(layer))
}

/// The directive list for a level: the level itself, plus warn caps for chatty dependencies when the level is
/// more verbose than warn (a cap below the chosen level would *raise* their verbosity instead).
fn level_directives(level: LogLevel) -> String {
    let mut directives = level.directive().to_owned();
    if matches!(level, LogLevel::Debug | LogLevel::Info) {
        for target in NOISY_TARGETS {
            directives.push(',');
            directives.push_str(target);
            directives.push_str("=warn");
        }
    }
    directives
}

/// Output style: logrus `TextFormatter` or `JSONFormatter`, as configured by Dapr kit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Style {
    Text,
    Json,
}

/// The one event formatter behind both styles: it turns an event into a [`Line`], which is then rendered.
#[derive(Clone, Debug)]
struct KitFormat {
    style: Style,
    instance: String,
    version: &'static str,
    clock: fn() -> OffsetDateTime,
}

impl KitFormat {
    fn new(options: &LogOptions, instance: String, clock: fn() -> OffsetDateTime) -> Self {
        let style = if options.json {
            Style::Json
        } else {
            Style::Text
        };
        Self {
            style,
            instance,
            version: options.version,
            clock,
        }
    }
}

impl<S, N> FormatEvent<S, N> for KitFormat
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
        let mut fields = FieldCollector::default();
        event.record(&mut fields);
        let metadata = event.metadata();
        // `log` records arrive with target "log" and their real target in a `log.target` field.
        let target = fields.log_target.as_deref().unwrap_or(metadata.target());
        let line = Line {
            time: (self.clock)().format(&Rfc3339).map_err(|_| fmt::Error)?,
            level: level_name(*metadata.level(), fields.fatal),
            msg: fields.message,
            scope: scope_for(target).to_owned(),
            instance: self.instance.clone(),
            version: self.version,
            extra: fields.extra,
        };
        match self.style {
            Style::Json => line.write_json(&mut writer),
            Style::Text => line.write_text(&mut writer),
        }
    }
}

/// Maps a tracing target to Dapr's logger scope.
fn scope_for(target: &str) -> &str {
    if target.starts_with(DAPR_SCOPE_PREFIX) {
        target
    } else {
        SCOPE_SENTRY
    }
}

/// Logrus level names; tracing WARN is logrus `warning`, and a fatal-marked event is `fatal`.
fn level_name(level: Level, fatal: bool) -> &'static str {
    if fatal {
        return "fatal";
    }
    match level {
        Level::TRACE => "trace",
        Level::DEBUG => "debug",
        Level::INFO => "info",
        Level::WARN => "warning",
        Level::ERROR => "error",
    }
}

/// One log line before rendering.
struct Line {
    time: String,
    level: &'static str,
    msg: String,
    scope: String,
    instance: String,
    version: &'static str,
    extra: Vec<(String, Value)>,
}

impl Line {
    /// All keys of the line, sorted as logrus sorts them, with colliding event fields renamed.
    fn entries(self) -> BTreeMap<String, Value> {
        let mut entries = BTreeMap::new();
        for (key, value) in self.extra {
            let key = if STANDARD_KEYS.contains(&key.as_str()) {
                format!("fields.{key}")
            } else {
                key
            };
            entries.insert(key, value);
        }
        entries.insert("instance".to_owned(), Value::String(self.instance));
        entries.insert("level".to_owned(), Value::String(self.level.to_owned()));
        entries.insert("msg".to_owned(), Value::String(self.msg));
        entries.insert("scope".to_owned(), Value::String(self.scope));
        entries.insert("time".to_owned(), Value::String(self.time));
        entries.insert("type".to_owned(), Value::String("log".to_owned()));
        entries.insert("ver".to_owned(), Value::String(self.version.to_owned()));
        entries
    }

    /// logrus `JSONFormatter`: one object per line, keys sorted (Go maps marshal sorted).
    fn write_json(self, writer: &mut Writer<'_>) -> fmt::Result {
        let json = serde_json::to_string(&self.entries()).map_err(|_| fmt::Error)?;
        writeln!(writer, "{json}")
    }

    /// logrus `TextFormatter`: `time`, `level`, `msg` first, then the other keys sorted, space-separated.
    fn write_text(self, writer: &mut Writer<'_>) -> fmt::Result {
        let mut entries = self.entries();
        let mut first = true;
        for key in ["time", "level", "msg"] {
            if let Some(value) = entries.remove(key) {
                write_text_pair(writer, &mut first, key, &value)?;
            }
        }
        for (key, value) in &entries {
            write_text_pair(writer, &mut first, key, value)?;
        }
        writeln!(writer)
    }
}

fn write_text_pair(
    writer: &mut Writer<'_>,
    first: &mut bool,
    key: &str,
    value: &Value,
) -> fmt::Result {
    if !*first {
        writer.write_char(' ')?;
    }
    *first = false;
    let text = match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    write!(writer, "{key}=")?;
    write_text_value(writer, &text)
}

/// Writes a value as logrus does: bare when every character is in its safe set, otherwise Go-`%q`-quoted.
fn write_text_value(writer: &mut Writer<'_>, text: &str) -> fmt::Result {
    let safe =
        |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '/' | '@' | '^' | '+');
    if text.chars().all(safe) {
        return writer.write_str(text);
    }
    writer.write_char('"')?;
    for c in text.chars() {
        match c {
            '"' => writer.write_str("\\\"")?,
            '\\' => writer.write_str("\\\\")?,
            '\n' => writer.write_str("\\n")?,
            '\r' => writer.write_str("\\r")?,
            '\t' => writer.write_str("\\t")?,
            '\u{7}' => writer.write_str("\\a")?,
            '\u{8}' => writer.write_str("\\b")?,
            '\u{b}' => writer.write_str("\\v")?,
            '\u{c}' => writer.write_str("\\f")?,
            c if c.is_ascii_control() => write!(writer, "\\x{:02x}", u32::from(c))?,
            c if c.is_control() => write!(writer, "\\u{:04x}", u32::from(c))?,
            c => writer.write_char(c)?,
        }
    }
    writer.write_char('"')
}

/// Collects an event's fields: the message, the fatal marker, the `log` bridge's target, and the rest.
#[derive(Default)]
struct FieldCollector {
    message: String,
    fatal: bool,
    log_target: Option<String>,
    extra: Vec<(String, Value)>,
}

impl FieldCollector {
    fn push(&mut self, field: &Field, value: Value) {
        match field.name() {
            "message" => {
                self.message = match value {
                    Value::String(text) => text,
                    other => other.to_string(),
                }
            }
            "log.target" => {
                if let Value::String(target) = value {
                    self.log_target = Some(target);
                }
            }
            // The rest of the `log` bridge's metadata (module path, file, line) is noise in Sentry's format.
            name if name.starts_with("log.") => {}
            name => self.extra.push((name.to_owned(), value)),
        }
    }
}

impl Visit for FieldCollector {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.push(field, Value::String(format!("{value:?}")));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, Value::String(value.to_owned()));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if field.name() == FATAL_FIELD {
            self.fatal = value;
        } else {
            self.push(field, Value::Bool(value));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, Value::from(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // NaN and infinities are not JSON numbers; keep them readable as strings.
        let value = serde_json::Number::from_f64(value)
            .map_or_else(|| Value::String(value.to_string()), Value::Number);
        self.push(field, value);
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.push(field, Value::String(value.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use time::{Date, Month};

    use super::*;

    /// An in-memory `MakeWriter` that keeps everything written.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Capture {
        type Writer = Capture;

        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    impl Capture {
        fn lines(&self) -> Vec<String> {
            String::from_utf8(self.0.lock().unwrap().clone())
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect()
        }
    }

    fn fixed_clock() -> OffsetDateTime {
        Date::from_calendar_date(2022, Month::April, 1)
            .unwrap()
            .with_hms_nano(23, 43, 35, 931_825_236)
            .unwrap()
            .assume_utc()
    }

    /// Runs `body` under a capturing subscriber and returns the lines it printed.
    fn capture(
        level: LogLevel,
        json: bool,
        rust_log: Option<&str>,
        body: impl FnOnce(),
    ) -> Vec<String> {
        let options = LogOptions {
            level,
            json,
            version: "1.6.0",
        };
        let out = Capture::default();
        let format = KitFormat::new(
            &options,
            "dapr-sentry-68cbf79bb9-gdqdv".to_owned(),
            fixed_clock,
        );
        let subscriber = build_subscriber(&options, out.clone(), rust_log, format).unwrap();
        tracing::subscriber::with_default(subscriber, body);
        out.lines()
    }

    fn parse(line: &str) -> serde_json::Map<String, Value> {
        match serde_json::from_str(line).unwrap() {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    const DOCS_EXAMPLE: &str = r#"{"instance":"dapr-sentry-68cbf79bb9-gdqdv","level":"warning","msg":"Dapr root certificate expiration warning: certificate expires in 2 days and 15 hours","scope":"dapr.sentry","time":"2022-04-01T23:43:35.931825236Z","type":"log","ver":"1.6.0"}"#;

    #[test]
    fn json_matches_dapr_docs_example_byte_for_byte() {
        let lines = capture(LogLevel::Info, true, None, || {
            tracing::warn!(
                target: SCOPE_SENTRY,
                "Dapr root certificate expiration warning: certificate expires in {} days and {} hours",
                2,
                15
            );
        });
        assert_eq!(lines, [DOCS_EXAMPLE]);
        let map = parse(&lines[0]);
        let keys: Vec<&str> = map.keys().map(String::as_str).collect();
        assert_eq!(keys, STANDARD_KEYS);
    }

    #[test]
    fn text_matches_logrus_layout() {
        let lines = capture(LogLevel::Info, false, None, || {
            tracing::warn!(target: SCOPE_SENTRY, "Dapr root certificate expiration warning: certificate has expired.");
        });
        assert_eq!(
            lines,
            ["time=\"2022-04-01T23:43:35.931825236Z\" level=warning \
                 msg=\"Dapr root certificate expiration warning: certificate has expired.\" \
                 instance=dapr-sentry-68cbf79bb9-gdqdv scope=dapr.sentry type=log ver=1.6.0"]
        );
    }

    #[test]
    fn text_quotes_and_escapes_like_go() {
        let lines = capture(LogLevel::Info, false, None, || {
            tracing::info!(target: SCOPE_CA, path = "/a b", ok = true, n = 3, "say \"hi\"\\=\n");
            tracing::info!(target: SCOPE_CA, "CA-ready");
        });
        assert_eq!(
            lines[0],
            "time=\"2022-04-01T23:43:35.931825236Z\" level=info msg=\"say \\\"hi\\\"\\\\=\\n\" \
             instance=dapr-sentry-68cbf79bb9-gdqdv n=3 ok=true path=\"/a b\" scope=dapr.sentry.ca type=log ver=1.6.0"
        );
        assert!(
            lines[1].contains(" level=info msg=CA-ready instance="),
            "{}",
            lines[1]
        );
    }

    #[test]
    fn levels_map_to_logrus_names() {
        let lines = capture(LogLevel::Debug, true, None, || {
            tracing::debug!(target: SCOPE_SENTRY, "d");
            tracing::info!(target: SCOPE_SENTRY, "i");
            tracing::warn!(target: SCOPE_SENTRY, "w");
            tracing::error!(target: SCOPE_SENTRY, "e");
            tracing::error!(target: SCOPE_SENTRY, fatal = true, "f");
        });
        let levels: Vec<String> = lines
            .iter()
            .map(|l| parse(l)["level"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(levels, ["debug", "info", "warning", "error", "fatal"]);
        // The fatal marker is consumed, not printed as a field.
        assert!(!parse(&lines[4]).contains_key("fatal"));
    }

    #[test]
    fn scope_comes_from_dapr_targets_only() {
        let lines = capture(LogLevel::Info, true, None, || {
            tracing::info!(target: SCOPE_SERVER, "a");
            tracing::info!(target: SCOPE_CA, "b");
            tracing::info!(target: "dapr.sentry.identity.kubernetes", "c");
            tracing::info!("d"); // module path target warden_host::observability::...
            tracing::info!(target: "daprx", "e");
        });
        let scopes: Vec<String> = lines
            .iter()
            .map(|l| parse(l)["scope"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            scopes,
            [
                "dapr.sentry.server",
                "dapr.sentry.ca",
                "dapr.sentry.identity.kubernetes",
                "dapr.sentry",
                "dapr.sentry"
            ]
        );
    }

    #[test]
    fn level_filter_hides_more_verbose_events() {
        let lines = capture(LogLevel::Info, true, None, || {
            tracing::debug!(target: SCOPE_SENTRY, "hidden");
            tracing::info!(target: SCOPE_SENTRY, "shown");
        });
        assert_eq!(lines.len(), 1);
        assert_eq!(parse(&lines[0])["msg"], "shown");

        let lines = capture(LogLevel::Error, true, None, || {
            tracing::warn!(target: SCOPE_SENTRY, "hidden");
            tracing::error!(target: SCOPE_SENTRY, "shown");
        });
        assert_eq!(lines.len(), 1);
    }

    #[test]
    fn fatal_level_prints_only_fatal_events() {
        let lines = capture(LogLevel::Fatal, true, None, || {
            tracing::warn!(target: SCOPE_SENTRY, "hidden");
            tracing::error!(target: SCOPE_SENTRY, "hidden too");
            tracing::error!(target: SCOPE_SENTRY, fatal = true, "bye");
        });
        assert_eq!(lines.len(), 1);
        let map = parse(&lines[0]);
        assert_eq!(map["level"], "fatal");
        assert_eq!(map["msg"], "bye");
    }

    #[test]
    fn noisy_dependencies_are_capped_unless_rust_log_is_set() {
        let body = || {
            tracing::info!(target: "hyper_util::client", "noise");
            tracing::warn!(target: "h2::proto", "real problem");
            tracing::info!(target: SCOPE_SENTRY, "ours");
        };
        let lines = capture(LogLevel::Debug, true, None, body);
        let msgs: Vec<String> = lines
            .iter()
            .map(|l| parse(l)["msg"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(msgs, ["real problem", "ours"]);

        let lines = capture(LogLevel::Error, true, Some("hyper_util=info"), body);
        let msgs: Vec<String> = lines
            .iter()
            .map(|l| parse(l)["msg"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(msgs, ["noise"]);
    }

    #[test]
    fn invalid_rust_log_is_an_error() {
        let options = LogOptions {
            level: LogLevel::Info,
            json: false,
            version: "x",
        };
        let format = KitFormat::new(&options, "h".to_owned(), fixed_clock);
        let result = build_subscriber(&options, Capture::default(), Some("=[{"), format);
        assert!(matches!(result, Err(LoggingError::Filter(_))));
    }

    #[test]
    fn extra_fields_become_keys_without_overwriting_standard_ones() {
        let lines = capture(LogLevel::Info, true, None, || {
            tracing::info!(target: SCOPE_SERVER, app_id = "app1", level = "forged", scope = 7, ratio = 0.5, "signed");
        });
        let map = parse(&lines[0]);
        assert_eq!(map["app_id"], "app1");
        assert_eq!(map["level"], "info");
        assert_eq!(map["fields.level"], "forged");
        assert_eq!(map["scope"], "dapr.sentry.server");
        assert_eq!(map["fields.scope"], 7);
        assert_eq!(map["ratio"], 0.5);
        assert_eq!(map["msg"], "signed");
    }

    #[test]
    fn log_crate_bridge_metadata_is_dropped() {
        // What tracing-log emits for a `log` record: target "log", real target and location as fields.
        let lines = capture(LogLevel::Info, true, None, || {
            tracing::event!(target: "log", Level::WARN, log.target = "rustls::client", log.line = 7, "bad cert");
        });
        let map = parse(&lines[0]);
        assert_eq!(map.len(), STANDARD_KEYS.len(), "{map:?}");
        assert_eq!(map["scope"], "dapr.sentry");
        assert_eq!(map["msg"], "bad cert");
    }

    #[test]
    fn rfc3339_nano_trims_trailing_zeros_like_go() {
        let time = Date::from_calendar_date(2022, Month::April, 1)
            .unwrap()
            .with_hms_nano(1, 2, 3, 500_000_000)
            .unwrap();
        assert_eq!(
            time.assume_utc().format(&Rfc3339).unwrap(),
            "2022-04-01T01:02:03.5Z"
        );
    }

    #[test]
    fn log_levels_parse_like_dapr_flags() {
        use clap::ValueEnum as _;
        for (name, level) in [
            ("debug", LogLevel::Debug),
            ("info", LogLevel::Info),
            ("warn", LogLevel::Warn),
            ("error", LogLevel::Error),
            ("fatal", LogLevel::Fatal),
        ] {
            assert_eq!(LogLevel::from_str(name, false).unwrap(), level);
        }
    }
}

//! Go's behaviour, reproduced exactly where Sentry's users see it: `time.Duration` parsing and
//! formatting, `os.ExpandEnv` in the config file, and Go's time format in CLI output.
pub(crate) mod duration;
pub(crate) mod env;
pub(crate) mod time;

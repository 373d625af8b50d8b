//! Go's behaviour, reproduced exactly where Sentry's users see it: `time.Duration` parsing and
//! formatting, `os.ExpandEnv` in the config file, and Go's time format in CLI output.
pub mod duration;
pub mod env;
pub mod time;

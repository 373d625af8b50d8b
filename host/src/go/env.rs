//! Go's `os.ExpandEnv`, which Sentry runs over its whole config file before parsing it.

/// Expands `$VAR` and `${VAR}` as Go's `os.ExpandEnv` does, with `lookup` as the environment.
///
/// Sentry expands the whole file before parsing, so a config file that works with Dapr must
/// expand the same way here, quirks included: an unset variable becomes empty, a `$` with no
/// name after it stays, `${}` and an unterminated `${` are dropped, `$$`, `$1`, `$*` and the
/// like name one-character variables, and `${A:-b}` looks up a variable literally named
/// `A:-b` (no shell defaults).
pub fn expand_env(text: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        let Some((before, from_dollar)) = rest.split_at_checked(dollar) else {
            break;
        };
        out.push_str(before);
        let after = from_dollar.get(1..).unwrap_or("");
        if after.is_empty() {
            // A `$` at the very end is kept; the final push below copies it.
            rest = from_dollar;
            break;
        }
        let (name, consumed) = shell_name(after);
        match name {
            ShellName::Var(name) => out.push_str(&lookup(name).unwrap_or_default()),
            ShellName::Missing => out.push('$'),
            ShellName::BadSyntax => {}
        }
        rest = after.get(consumed..).unwrap_or("");
    }
    out.push_str(rest);
    out
}

/// What follows a `$`, per Go's `getShellName`.
enum ShellName<'a> {
    /// A variable name to look up.
    Var(&'a str),
    /// No name: the `$` is literal.
    Missing,
    /// `${}` or an unclosed `${`: dropped.
    BadSyntax,
}

/// Reads the variable name at the start of `s` (the text after a `$`, never empty) and how
/// many bytes of `s` it takes.
fn shell_name(s: &str) -> (ShellName<'_>, usize) {
    let bytes = s.as_bytes();
    if let Some(inner) = s.strip_prefix('{') {
        if let (Some(&c), Some(b'}')) = (bytes.get(1), bytes.get(2))
            && is_shell_special(c)
        {
            return (ShellName::Var(inner.get(..1).unwrap_or("")), 3);
        }
        return match inner.find('}') {
            Some(0) => (ShellName::BadSyntax, 2),
            Some(end) => (ShellName::Var(inner.get(..end).unwrap_or("")), end + 2),
            None => (ShellName::BadSyntax, 1),
        };
    }
    if bytes.first().copied().is_some_and(is_shell_special) {
        return (ShellName::Var(s.get(..1).unwrap_or("")), 1);
    }
    let len = bytes
        .iter()
        .take_while(|&&c| c == b'_' || c.is_ascii_alphanumeric())
        .count();
    match s.get(..len) {
        Some(name) if !name.is_empty() => (ShellName::Var(name), len),
        _ => (ShellName::Missing, 0),
    }
}

/// Go's `isShellSpecialVar`: characters that form a one-character variable name.
fn is_shell_special(c: u8) -> bool {
    matches!(
        c,
        b'*' | b'#' | b'$' | b'@' | b'!' | b'?' | b'-' | b'0'..=b'9'
    )
}

/// The process environment as [`expand_env`] wants it. Names the OS cannot hold (empty, with
/// `=` or NUL) are simply unset, and non-UTF-8 values are converted lossily rather than
/// failing the whole file.
pub(crate) fn process_env(name: &str) -> Option<String> {
    if name.is_empty() || name.contains(['=', '\0']) {
        return None;
    }
    std::env::var_os(name).map(|value| value.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "A" => Some("alpha".into()),
            "B_2" => Some("beta".into()),
            "1" => Some("one".into()),
            "$" => Some("pid".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn env_expansion_matches_go() {
        let cases: &[(&str, &str)] = &[
            ("${A}", "alpha"),
            ("$A", "alpha"),
            ("x$A.y", "xalpha.y"),
            ("x${A}y", "xalphay"),
            ("$Ay", ""),
            ("${A}${B_2}", "alphabeta"),
            ("$A$B_2", "alphabeta"),
            ("${UNSET}", ""),
            ("a $UNSET b", "a  b"),
            ("$EMPTY|", "|"),
            ("cost: 5$", "cost: 5$"),
            ("$", "$"),
            ("a$ b", "a$ b"),
            ("\"$\"", "\"$\""),
            ("${", ""),
            ("x${A", "xA"),
            ("${}", ""),
            ("a${}b", "ab"),
            ("$1x", "onex"),
            ("${1}", "one"),
            ("$$", "pid"),
            ("${A:-dflt}", ""),
            ("no dollars: é", "no dollars: é"),
            ("é$A€", "éalpha€"),
            ("${é}", ""),
            ("$é", "$é"),
        ];
        for &(input, want) in cases {
            assert_eq!(expand_env(input, env), want, "{input:?}");
        }
    }
}

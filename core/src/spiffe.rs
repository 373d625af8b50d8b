//! SPIFFE IDs and trust domains, validated exactly as go-spiffe v2 validates them.
//!
//! Dapr Sentry parses the requested trust domain and builds workload IDs with go-spiffe, and it
//! returns go-spiffe's error text to daprd. Warden must accept and reject the same strings with
//! the same words, so the checks below follow go-spiffe's order rule by rule rather than a
//! general URI parser: a URI parser would accept (and normalise) things such as an uppercase
//! scheme, a port or percent-encoding that go-spiffe rejects.
//!
//! On top of go-spiffe, IDs are limited to [`MAX_SPIFFE_ID_LEN`] bytes (the SPIFFE standard
//! requires support up to 2048 bytes and says not to generate longer ones). That check runs
//! last, so every input go-spiffe rejects gets go-spiffe's error.
//!
//! Sentry's own request rules for the app id live here too ([`validate_app_id`]).

use alloc::string::String;
use core::fmt;
use core::str::FromStr;

/// The longest SPIFFE ID, in bytes of its URI form, that Warden accepts or builds.
pub const MAX_SPIFFE_ID_LEN: usize = 2048;

/// The longest app id Sentry accepts, in bytes (Go's `len`), not characters.
pub const MAX_APP_ID_LEN: usize = 64;

/// The trust domain Sentry uses when a sign request leaves `trust_domain` empty.
pub const DEFAULT_REQUEST_TRUST_DOMAIN: &str = "public";

/// go-spiffe matches the scheme case-sensitively, unlike RFC 3986, so `SPIFFE://` is rejected.
const SCHEME_PREFIX: &str = "spiffe://";

/// The longest trust domain name whose ID (`spiffe://<td>`) still fits in
/// [`MAX_SPIFFE_ID_LEN`]; keeping names within it makes [`TrustDomain::id`] infallible.
const MAX_TRUST_DOMAIN_LEN: usize = MAX_SPIFFE_ID_LEN - SCHEME_PREFIX.len();

/// The app id Sentry's own SPIFFE ID carries (`spiffe://<td>/ns/<ns>/dapr-sentry`).
const SENTRY_APP_ID: &str = "dapr-sentry";

/// Why a SPIFFE ID, trust domain or path was rejected.
///
/// `Display` gives go-spiffe's wording, because Sentry passes these messages to clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SpiffeIdError {
    /// The ID string is empty.
    Empty,
    /// The ID does not start with exactly `spiffe://`.
    WrongScheme,
    /// The trust domain is empty.
    MissingTrustDomain,
    /// The trust domain has a byte outside `[a-z0-9._-]` (this covers uppercase, userinfo `@`,
    /// a port `:`, a query `?`, a fragment `#` and percent-encoding `%` before the path).
    BadTrustDomainChar,
    /// A path segment has a byte outside `[a-zA-Z0-9._-]` (this covers `?`, `#`, `%`, `:`, `@`
    /// in the path).
    BadPathSegmentChar,
    /// The path has an empty segment (`//`), or a single segment to add is empty.
    EmptySegment,
    /// The path has a `.` or `..` segment.
    DotSegment,
    /// The path ends with `/`.
    TrailingSlash,
    /// A non-empty path does not start with `/`.
    NoLeadingSlash,
    /// The URI form is longer than [`MAX_SPIFFE_ID_LEN`] bytes.
    TooLong,
}

impl fmt::Display for SpiffeIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Empty => "cannot be empty",
            Self::WrongScheme => "scheme is missing or invalid",
            Self::MissingTrustDomain => "trust domain is missing",
            Self::BadTrustDomainChar => {
                "trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores"
            }
            Self::BadPathSegmentChar => {
                "path segment characters are limited to letters, numbers, dots, dashes, and underscores"
            }
            Self::EmptySegment => "path cannot contain empty segments",
            Self::DotSegment => "path cannot contain dot segments",
            Self::TrailingSlash => "path cannot have a trailing slash",
            Self::NoLeadingSlash => "path must have a leading slash",
            Self::TooLong => "SPIFFE ID exceeds 2048 bytes",
        })
    }
}

impl core::error::Error for SpiffeIdError {}

/// A SPIFFE trust domain name such as `example.org`: non-empty, `[a-z0-9._-]` only.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrustDomain(String);

impl TrustDomain {
    /// Parses a trust domain the way go-spiffe's `TrustDomainFromString` does.
    ///
    /// `name` is either a bare name (`example.org`) or, when it contains `:/`, a SPIFFE ID whose
    /// trust domain is taken. As in go-spiffe, that ID must be valid but its path is ignored, so
    /// `spiffe://example.org/ns/a` also yields `example.org`.
    ///
    /// # Errors
    ///
    /// [`SpiffeIdError::MissingTrustDomain`] for an empty name,
    /// [`SpiffeIdError::BadTrustDomainChar`] for a byte outside `[a-z0-9._-]`, any
    /// [`SpiffeId::parse`] error for the ID form, and [`SpiffeIdError::TooLong`] when
    /// `spiffe://<name>` would exceed [`MAX_SPIFFE_ID_LEN`].
    pub fn new(name: &str) -> Result<Self, SpiffeIdError> {
        if name.is_empty() {
            return Err(SpiffeIdError::MissingTrustDomain);
        }
        // go-spiffe looks for ":/" rather than "://" so that a typo such as `spiffe:/td` is
        // reported as a bad scheme instead of a bad trust domain character.
        if name.contains(":/") {
            return SpiffeId::parse(name).map(|id| id.trust_domain);
        }
        validate_trust_domain_chars(name)?;
        if name.len() > MAX_TRUST_DOMAIN_LEN {
            return Err(SpiffeIdError::TooLong);
        }
        Ok(Self(String::from(name)))
    }

    /// The trust domain of a Sentry sign request: [`DEFAULT_REQUEST_TRUST_DOMAIN`] when `name` is
    /// empty, otherwise [`TrustDomain::new`].
    ///
    /// # Errors
    ///
    /// As [`TrustDomain::new`] for a non-empty `name`.
    pub fn from_request(name: &str) -> Result<Self, SpiffeIdError> {
        if name.is_empty() {
            Self::new(DEFAULT_REQUEST_TRUST_DOMAIN)
        } else {
            Self::new(name)
        }
    }

    /// The bare name, for example `example.org`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The trust domain's own ID, `spiffe://<td>` with an empty path (the ID a CA certificate
    /// may carry).
    pub fn id(&self) -> SpiffeId {
        SpiffeId {
            trust_domain: self.clone(),
            path: String::new(),
        }
    }
}

impl fmt::Display for TrustDomain {
    /// The bare name, without the scheme.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TrustDomain {
    type Err = SpiffeIdError;

    /// Same as [`TrustDomain::new`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

/// A SPIFFE ID: a trust domain plus a path that is empty or a series of `/segment`s.
///
/// Ordering is by trust domain, then path.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    trust_domain: TrustDomain,
    path: String,
}

impl SpiffeId {
    /// Parses `spiffe://<trust domain><path>` with go-spiffe's `FromString` rules, then checks
    /// the length.
    ///
    /// # Errors
    ///
    /// The first rule broken, in go-spiffe's order: [`SpiffeIdError::Empty`],
    /// [`SpiffeIdError::WrongScheme`], [`SpiffeIdError::BadTrustDomainChar`],
    /// [`SpiffeIdError::MissingTrustDomain`], then the path errors in the order they occur
    /// left to right; finally [`SpiffeIdError::TooLong`].
    pub fn parse(uri: &str) -> Result<Self, SpiffeIdError> {
        if uri.is_empty() {
            return Err(SpiffeIdError::Empty);
        }
        let rest = uri
            .strip_prefix(SCHEME_PREFIX)
            .ok_or(SpiffeIdError::WrongScheme)?;
        // The trust domain runs to the first '/'; '?', '#', '@', ':' and '%' do not end it, so
        // a query, fragment, userinfo, port or escape before the path is a trust domain
        // character error, as in go-spiffe.
        let (td, path) = match rest.split_once('/') {
            Some((td, _)) => (td, rest.get(td.len()..).unwrap_or_default()),
            None => (rest, ""),
        };
        validate_trust_domain_chars(td)?;
        if td.is_empty() {
            return Err(SpiffeIdError::MissingTrustDomain);
        }
        validate_path(path)?;
        check_len(td.len() + path.len())?;
        Ok(Self {
            trust_domain: TrustDomain(String::from(td)),
            path: String::from(path),
        })
    }

    /// The ID `<td><path>`, where `path` is empty or a valid absolute path such as `/ns/a/b`.
    ///
    /// # Errors
    ///
    /// [`SpiffeIdError::NoLeadingSlash`] or another path error, or [`SpiffeIdError::TooLong`].
    pub fn from_path(td: &TrustDomain, path: &str) -> Result<Self, SpiffeIdError> {
        validate_path(path)?;
        check_len(td.as_str().len() + path.len())?;
        Ok(Self {
            trust_domain: td.clone(),
            path: String::from(path),
        })
    }

    /// The workload ID Sentry issues, `spiffe://<td>/ns/<namespace>/<app_id>`.
    ///
    /// Each part must be one valid path segment, as go-spiffe's `FromSegments` requires, so a
    /// `/` inside `namespace` or `app_id` is an error rather than an extra path level. This does
    /// not apply Sentry's app id rules; see [`validate_app_id`].
    ///
    /// # Errors
    ///
    /// [`SpiffeIdError::EmptySegment`], [`SpiffeIdError::DotSegment`],
    /// [`SpiffeIdError::BadPathSegmentChar`] or [`SpiffeIdError::TooLong`].
    pub fn workload(
        td: &TrustDomain,
        namespace: &str,
        app_id: &str,
    ) -> Result<Self, SpiffeIdError> {
        let segments = ["ns", namespace, app_id];
        let mut len = 0;
        for segment in segments {
            validate_segment(segment)?;
            len += 1 + segment.len();
        }
        check_len(td.as_str().len() + len)?;
        let mut path = String::with_capacity(len);
        for segment in segments {
            path.push('/');
            path.push_str(segment);
        }
        Ok(Self {
            trust_domain: td.clone(),
            path,
        })
    }

    /// Sentry's own ID in its namespace, `spiffe://<td>/ns/<namespace>/dapr-sentry`. daprd and
    /// the Kubernetes token audience expect exactly this.
    ///
    /// # Errors
    ///
    /// As [`SpiffeId::workload`].
    pub fn sentry(td: &TrustDomain, namespace: &str) -> Result<Self, SpiffeIdError> {
        Self::workload(td, namespace, SENTRY_APP_ID)
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The path: empty, or `/` followed by segments, such as `/ns/default/app`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Whether the ID belongs to `td`.
    pub fn is_member_of(&self, td: &TrustDomain) -> bool {
        self.trust_domain == *td
    }

    /// Whether the ID has a path. X509-SVID leaves must; a trust domain's own ID (a CA's)
    /// must not.
    pub fn has_path(&self) -> bool {
        !self.path.is_empty()
    }
}

impl fmt::Display for SpiffeId {
    /// The URI form, `spiffe://<td><path>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(SCHEME_PREFIX)?;
        f.write_str(self.trust_domain.as_str())?;
        f.write_str(&self.path)
    }
}

impl FromStr for SpiffeId {
    type Err = SpiffeIdError;

    /// Same as [`SpiffeId::parse`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Why Sentry rejects a sign request's app id.
///
/// `Display` gives Sentry's exact messages, which it returns to daprd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AppIdError {
    /// The id is empty.
    Empty,
    /// The id contains `.`.
    ContainsDots,
    /// The id is longer than [`MAX_APP_ID_LEN`] bytes.
    TooLong,
}

impl fmt::Display for AppIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Empty => "parameter app-id cannot be empty",
            Self::ContainsDots => "parameter app-id cannot contain dots",
            // Sentry's text says "characters" but it compares Go's byte length.
            Self::TooLong => "app ID must be 64 characters or less",
        })
    }
}

impl core::error::Error for AppIdError {}

/// Applies Sentry's app id rules, in Sentry's order: non-empty, no `.`, at most
/// [`MAX_APP_ID_LEN`] bytes.
///
/// These are request rules only; whether the id is a valid SPIFFE path segment is checked
/// later, by [`SpiffeId::workload`].
///
/// # Errors
///
/// The first rule broken.
pub fn validate_app_id(id: &str) -> Result<(), AppIdError> {
    if id.is_empty() {
        Err(AppIdError::Empty)
    } else if id.contains('.') {
        Err(AppIdError::ContainsDots)
    } else if id.len() > MAX_APP_ID_LEN {
        Err(AppIdError::TooLong)
    } else {
        Ok(())
    }
}

fn is_trust_domain_byte(b: u8) -> bool {
    matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_')
}

fn is_path_segment_byte(b: u8) -> bool {
    matches!(b, b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'_')
}

fn validate_trust_domain_chars(td: &str) -> Result<(), SpiffeIdError> {
    if td.bytes().all(is_trust_domain_byte) {
        Ok(())
    } else {
        Err(SpiffeIdError::BadTrustDomainChar)
    }
}

/// `td_and_path_len` excludes the scheme, so callers need not build the string to measure it.
fn check_len(td_and_path_len: usize) -> Result<(), SpiffeIdError> {
    if SCHEME_PREFIX.len() + td_and_path_len > MAX_SPIFFE_ID_LEN {
        Err(SpiffeIdError::TooLong)
    } else {
        Ok(())
    }
}

/// go-spiffe's `ValidatePath`, which scans byte by byte and reports the first problem it
/// meets. Checking each segment's bytes before its emptiness or dot-ness gives the same first
/// error, because empty and dot segments contain no bad bytes.
fn validate_path(path: &str) -> Result<(), SpiffeIdError> {
    if path.is_empty() {
        return Ok(());
    }
    let rest = path
        .strip_prefix('/')
        .ok_or(SpiffeIdError::NoLeadingSlash)?;
    let mut segments = rest.split('/').peekable();
    while let Some(segment) = segments.next() {
        if !segment.bytes().all(is_path_segment_byte) {
            return Err(SpiffeIdError::BadPathSegmentChar);
        }
        let last = segments.peek().is_none();
        match segment {
            "" if last => return Err(SpiffeIdError::TrailingSlash),
            "" => return Err(SpiffeIdError::EmptySegment),
            "." | ".." => return Err(SpiffeIdError::DotSegment),
            _ => {}
        }
    }
    Ok(())
}

/// go-spiffe's `ValidatePathSegment`: one segment, so `/` is a bad character.
fn validate_segment(segment: &str) -> Result<(), SpiffeIdError> {
    match segment {
        "" => Err(SpiffeIdError::EmptySegment),
        "." | ".." => Err(SpiffeIdError::DotSegment),
        _ if segment.bytes().all(is_path_segment_byte) => Ok(()),
        _ => Err(SpiffeIdError::BadPathSegmentChar),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec::Vec;
    use alloc::{format, vec};

    use SpiffeIdError::*;

    fn td(name: &str) -> TrustDomain {
        TrustDomain::new(name).unwrap()
    }

    /// `spiffe://td/` followed by `a`s, `total` bytes long.
    fn id_of_len(total: usize) -> String {
        let prefix = "spiffe://td/";
        format!("{prefix}{}", "a".repeat(total - prefix.len()))
    }

    /// `Ok((trust domain, path))` or the error.
    type Expected<'a> = Result<(&'a str, &'a str), SpiffeIdError>;

    #[test]
    fn parse_table() {
        let exact = id_of_len(MAX_SPIFFE_ID_LEN);
        let over = id_of_len(MAX_SPIFFE_ID_LEN + 1);
        let cases: Vec<(&str, Expected<'_>)> = vec![
            // Valid.
            ("spiffe://example.org", Ok(("example.org", ""))),
            (
                "spiffe://example.org/ns/default/app",
                Ok(("example.org", "/ns/default/app")),
            ),
            ("spiffe://td/Upper/CASE", Ok(("td", "/Upper/CASE"))),
            ("spiffe://td/a.b", Ok(("td", "/a.b"))),
            ("spiffe://td/...", Ok(("td", "/..."))),
            ("spiffe://td/.a/a./a..b", Ok(("td", "/.a/a./a..b"))),
            ("spiffe://my_td-1.x/_-.", Ok(("my_td-1.x", "/_-."))),
            ("spiffe://1.2.3.4/x", Ok(("1.2.3.4", "/x"))),
            (exact.as_str(), Ok(("td", exact.get(11..).unwrap()))),
            // Scheme.
            ("", Err(Empty)),
            ("example.org/x", Err(WrongScheme)),
            ("http://example.org/x", Err(WrongScheme)),
            ("SPIFFE://example.org/x", Err(WrongScheme)),
            ("Spiffe://example.org", Err(WrongScheme)),
            ("spiffe:/example.org", Err(WrongScheme)),
            (" spiffe://example.org", Err(WrongScheme)),
            // Trust domain.
            ("spiffe://", Err(MissingTrustDomain)),
            ("spiffe:///path", Err(MissingTrustDomain)),
            ("spiffe://Example.org/x", Err(BadTrustDomainChar)),
            ("spiffe://td:443/x", Err(BadTrustDomainChar)),
            ("spiffe://user@td/x", Err(BadTrustDomainChar)),
            ("spiffe://%41td/x", Err(BadTrustDomainChar)),
            ("spiffe://td?x=1", Err(BadTrustDomainChar)),
            ("spiffe://td#frag", Err(BadTrustDomainChar)),
            ("spiffe://td x/y", Err(BadTrustDomainChar)),
            ("spiffe://tö/x", Err(BadTrustDomainChar)),
            // A bad trust domain character is found before the trust domain is seen as empty.
            ("spiffe://@/x", Err(BadTrustDomainChar)),
            // Path.
            ("spiffe://td/", Err(TrailingSlash)),
            ("spiffe://td/a/", Err(TrailingSlash)),
            ("spiffe://td//", Err(EmptySegment)),
            ("spiffe://td//a", Err(EmptySegment)),
            ("spiffe://td/a//b", Err(EmptySegment)),
            ("spiffe://td/.", Err(DotSegment)),
            ("spiffe://td/..", Err(DotSegment)),
            ("spiffe://td/./a", Err(DotSegment)),
            ("spiffe://td/a/../b", Err(DotSegment)),
            ("spiffe://td/a?x", Err(BadPathSegmentChar)),
            ("spiffe://td/a#f", Err(BadPathSegmentChar)),
            ("spiffe://td/%41", Err(BadPathSegmentChar)),
            ("spiffe://td/a:b", Err(BadPathSegmentChar)),
            ("spiffe://td/a@b", Err(BadPathSegmentChar)),
            ("spiffe://td/a b", Err(BadPathSegmentChar)),
            ("spiffe://td/ä", Err(BadPathSegmentChar)),
            // go-spiffe reports whichever problem comes first from the left.
            ("spiffe://td/a?/", Err(BadPathSegmentChar)),
            ("spiffe://td//a?", Err(EmptySegment)),
            ("spiffe://td/../a?", Err(DotSegment)),
            // Length.
            (over.as_str(), Err(TooLong)),
        ];
        assert!(cases.len() >= 24);
        for (input, want) in cases {
            let got = SpiffeId::parse(input);
            match want {
                Ok((want_td, want_path)) => {
                    let id = got.unwrap_or_else(|e| panic!("{input:?}: unexpected {e:?}"));
                    assert_eq!(id.trust_domain().as_str(), want_td, "{input:?}");
                    assert_eq!(id.path(), want_path, "{input:?}");
                    assert_eq!(id.to_string(), input, "{input:?} round trip");
                    assert_eq!(id.has_path(), !want_path.is_empty());
                    assert_eq!(input.parse::<SpiffeId>().unwrap(), id);
                }
                Err(e) => assert_eq!(got, Err(e), "{input:?}"),
            }
        }
    }

    #[test]
    fn length_limit_is_on_the_whole_uri() {
        assert_eq!(id_of_len(MAX_SPIFFE_ID_LEN).len(), 2048);
        assert!(SpiffeId::parse(&id_of_len(2048)).is_ok());
        assert_eq!(SpiffeId::parse(&id_of_len(2049)), Err(TooLong));

        // A trust domain alone may use the whole budget, so its ID still fits.
        let longest_td = "a".repeat(MAX_SPIFFE_ID_LEN - SCHEME_PREFIX.len());
        let t = td(&longest_td);
        assert_eq!(t.id().to_string().len(), MAX_SPIFFE_ID_LEN);
        assert_eq!(SpiffeId::parse(&t.id().to_string()), Ok(t.id()));
        assert_eq!(TrustDomain::new(&format!("{longest_td}a")), Err(TooLong));
        assert_eq!(SpiffeId::from_path(&t, "/a"), Err(TooLong));
        assert_eq!(SpiffeId::workload(&t, "a", "b"), Err(TooLong));

        // Other rules win over length, so long inputs go-spiffe rejects get its error.
        let long_bad = format!("{}?", id_of_len(3000));
        assert_eq!(SpiffeId::parse(&long_bad), Err(BadPathSegmentChar));
    }

    #[test]
    fn error_texts_are_go_spiffe_wording() {
        let cases = [
            (Empty, "cannot be empty"),
            (WrongScheme, "scheme is missing or invalid"),
            (MissingTrustDomain, "trust domain is missing"),
            (
                BadTrustDomainChar,
                "trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores",
            ),
            (
                BadPathSegmentChar,
                "path segment characters are limited to letters, numbers, dots, dashes, and underscores",
            ),
            (EmptySegment, "path cannot contain empty segments"),
            (DotSegment, "path cannot contain dot segments"),
            (TrailingSlash, "path cannot have a trailing slash"),
            (NoLeadingSlash, "path must have a leading slash"),
            (TooLong, "SPIFFE ID exceeds 2048 bytes"),
        ];
        for (e, text) in cases {
            assert_eq!(e.to_string(), text);
        }
        assert_eq!(
            TooLong.to_string(),
            format!("SPIFFE ID exceeds {MAX_SPIFFE_ID_LEN} bytes")
        );
    }

    #[test]
    fn trust_domain_new() {
        assert_eq!(td("example.org").as_str(), "example.org");
        assert_eq!(td("example.org").to_string(), "example.org");
        assert_eq!("a_b-c.d".parse::<TrustDomain>(), Ok(td("a_b-c.d")));
        assert_eq!(td("spiffe://example.org"), td("example.org"));
        // go-spiffe's TrustDomainFromString keeps the trust domain of a full ID.
        assert_eq!(td("spiffe://example.org/ns/a"), td("example.org"));

        assert_eq!(TrustDomain::new(""), Err(MissingTrustDomain));
        assert_eq!(TrustDomain::new("Example.org"), Err(BadTrustDomainChar));
        assert_eq!(TrustDomain::new("td:443"), Err(BadTrustDomainChar));
        assert_eq!(TrustDomain::new("a/b"), Err(BadTrustDomainChar));
        assert_eq!(TrustDomain::new("spiffe:/td"), Err(WrongScheme));
        assert_eq!(TrustDomain::new("http://td"), Err(WrongScheme));
        assert_eq!(TrustDomain::new("spiffe://"), Err(MissingTrustDomain));
        assert_eq!(TrustDomain::new("spiffe://td/"), Err(TrailingSlash));
        assert_eq!(TrustDomain::new("spiffe://TD"), Err(BadTrustDomainChar));
    }

    #[test]
    fn request_trust_domain_defaults_to_public() {
        assert_eq!(TrustDomain::from_request("").unwrap().as_str(), "public");
        assert_eq!(
            TrustDomain::from_request("").unwrap(),
            td(DEFAULT_REQUEST_TRUST_DOMAIN)
        );
        assert_eq!(
            TrustDomain::from_request("cluster.local").unwrap(),
            td("cluster.local")
        );
        assert_eq!(TrustDomain::from_request("Public"), Err(BadTrustDomainChar));
    }

    #[test]
    fn trust_domain_id() {
        let id = td("example.org").id();
        assert_eq!(id.to_string(), "spiffe://example.org");
        assert!(!id.has_path());
        assert_eq!(id.path(), "");
        assert!(id.is_member_of(&td("example.org")));
        assert!(!id.is_member_of(&td("example.com")));
    }

    #[test]
    fn workload_and_sentry_ids() {
        let t = td("public");
        let id = SpiffeId::workload(&t, "default", "my-app").unwrap();
        assert_eq!(id.to_string(), "spiffe://public/ns/default/my-app");
        assert_eq!(id.path(), "/ns/default/my-app");
        assert!(id.has_path());
        assert!(id.is_member_of(&t));
        assert_eq!(SpiffeId::parse(&id.to_string()), Ok(id));

        let sentry = SpiffeId::sentry(&td("cluster.local"), "dapr-system").unwrap();
        assert_eq!(
            sentry.to_string(),
            "spiffe://cluster.local/ns/dapr-system/dapr-sentry"
        );

        assert_eq!(SpiffeId::workload(&t, "", "a"), Err(EmptySegment));
        assert_eq!(SpiffeId::workload(&t, "ns", ""), Err(EmptySegment));
        assert_eq!(SpiffeId::workload(&t, ".", "a"), Err(DotSegment));
        assert_eq!(SpiffeId::workload(&t, "ns", ".."), Err(DotSegment));
        assert_eq!(SpiffeId::workload(&t, "a/b", "c"), Err(BadPathSegmentChar));
        assert_eq!(
            SpiffeId::workload(&t, "ns", "my app"),
            Err(BadPathSegmentChar)
        );
        assert_eq!(
            SpiffeId::workload(&t, "ns", "a.b"),
            Ok(SpiffeId::parse("spiffe://public/ns/ns/a.b").unwrap())
        );
    }

    #[test]
    fn from_path() {
        let t = td("td");
        assert_eq!(SpiffeId::from_path(&t, "").unwrap(), t.id());
        assert_eq!(
            SpiffeId::from_path(&t, "/a/B").unwrap().to_string(),
            "spiffe://td/a/B"
        );
        assert_eq!(SpiffeId::from_path(&t, "a"), Err(NoLeadingSlash));
        assert_eq!(SpiffeId::from_path(&t, "/"), Err(TrailingSlash));
        assert_eq!(SpiffeId::from_path(&t, "/a/./b"), Err(DotSegment));
        assert_eq!(SpiffeId::from_path(&t, "/a?b"), Err(BadPathSegmentChar));
    }

    #[test]
    fn ordering_is_trust_domain_then_path() {
        let a = SpiffeId::parse("spiffe://a/z").unwrap();
        let b = SpiffeId::parse("spiffe://b/a").unwrap();
        let b_root = SpiffeId::parse("spiffe://b").unwrap();
        assert!(a < b_root && b_root < b);
        assert!(td("a") < td("b"));
    }

    #[test]
    fn app_id_rules() {
        assert_eq!(validate_app_id("my-app"), Ok(()));
        assert_eq!(validate_app_id(""), Err(AppIdError::Empty));
        assert_eq!(validate_app_id("a.b"), Err(AppIdError::ContainsDots));
        assert_eq!(validate_app_id(&"a".repeat(64)), Ok(()));
        assert_eq!(validate_app_id(&"a".repeat(65)), Err(AppIdError::TooLong));
        // Dots are checked before length.
        assert_eq!(
            validate_app_id(&".".repeat(65)),
            Err(AppIdError::ContainsDots)
        );

        // 22 characters, 66 bytes: Sentry counts bytes.
        let multibyte = "€".repeat(22);
        assert_eq!(multibyte.chars().count(), 22);
        assert_eq!(multibyte.len(), 66);
        assert_eq!(validate_app_id(&multibyte), Err(AppIdError::TooLong));

        assert_eq!(
            AppIdError::Empty.to_string(),
            "parameter app-id cannot be empty"
        );
        assert_eq!(
            AppIdError::ContainsDots.to_string(),
            "parameter app-id cannot contain dots"
        );
        assert_eq!(
            AppIdError::TooLong.to_string(),
            "app ID must be 64 characters or less"
        );
    }

    /// Every short string over an alphabet that includes every delimiter, multi-byte UTF-8 and
    /// the scheme's own bytes: parsing never panics, and whatever parses prints back unchanged.
    #[test]
    fn exhaustive_short_inputs_never_panic() {
        let alphabet = ["a", "A", "/", ".", ":", "?", "#", "@", "%", "é", "_"];
        let prefixes = ["", "spiffe://", "spiffe:/", "spiffe://td"];
        let mut inputs = vec![String::new()];
        let mut level = vec![String::new()];
        for _ in 0..4 {
            level = level
                .iter()
                .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
                .collect();
            inputs.extend(level.iter().cloned());
        }
        let mut parsed = 0;
        for prefix in prefixes {
            for tail in &inputs {
                let input = format!("{prefix}{tail}");
                if let Ok(id) = SpiffeId::parse(&input) {
                    assert_eq!(id.to_string(), input);
                    parsed += 1;
                }
                if let Ok(t) = TrustDomain::new(&input) {
                    assert!(t.as_str().bytes().all(is_trust_domain_byte));
                }
                let _ = SpiffeId::from_path(&td("td"), &input);
                let _ = SpiffeId::workload(&td("td"), &input, &input);
                let _ = validate_app_id(&input);
            }
        }
        assert!(parsed > 0);
    }
}

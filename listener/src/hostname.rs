//! Hostname matching per RFC 6125 §6.4, and the normal form hostnames are kept in.
//!
//! A wildcard is only ever the whole left-most label (`*.example.com`); it stands for exactly one
//! label, so it covers `www.example.com` but neither `example.com` nor `a.b.example.com`.
//! Comparisons ignore ASCII case and one trailing dot.

/// Whether the certificate name `pattern` (a dNSName subject alternative name) covers the
/// configured `hostname`.
///
/// A configured hostname that is itself a wildcard (`*.contoso.com`) is covered only by the
/// identical wildcard name: a certificate for `www.contoso.com` does not serve all of
/// `*.contoso.com`.
///
/// ```
/// use listener::covers;
/// assert!(covers("*.example.com", "WWW.example.com"));
/// assert!(!covers("*.example.com", "example.com"));
/// assert!(!covers("*.example.com", "a.b.example.com"));
/// assert!(covers("*.example.com", "*.example.com"));
/// assert!(!covers("www.example.com", "*.example.com"));
/// ```
#[must_use]
pub fn covers(pattern: &str, hostname: &str) -> bool {
    let pattern = trim_root(pattern);
    let hostname = trim_root(hostname);
    if pattern.is_empty() || hostname.is_empty() {
        return false;
    }
    if hostname.starts_with("*.") {
        return pattern.eq_ignore_ascii_case(hostname);
    }
    match wildcard_suffix(pattern) {
        Some(suffix) => match hostname.split_once('.') {
            Some((label, rest)) => {
                !label.is_empty() && !label.contains('*') && rest.eq_ignore_ascii_case(suffix)
            }
            None => false,
        },
        // A `*` anywhere else (`f*.example.com`, `www.*.com`) is not a wildcard we honour.
        None => !pattern.contains('*') && pattern.eq_ignore_ascii_case(hostname),
    }
}

/// For `*.example.com`, `Some("example.com")`; `None` for anything that is not a well-formed
/// left-most-label wildcard.
pub(crate) fn wildcard_suffix(name: &str) -> Option<&str> {
    let suffix = name.strip_prefix("*.")?;
    (!suffix.is_empty() && !suffix.contains('*') && !suffix.starts_with('.')).then_some(suffix)
}

/// The form hostnames are stored and looked up in: lowercase, without a trailing dot.
pub(crate) fn normalize(hostname: &str) -> String {
    trim_root(hostname.trim()).to_ascii_lowercase()
}

/// Why `hostname` (already normalized) cannot be a listener's hostname, if it cannot.
pub(crate) fn syntax_error(hostname: &str) -> Option<&'static str> {
    let name = match hostname.strip_prefix("*.") {
        Some(suffix) => suffix,
        None => hostname,
    };
    if name.is_empty() {
        return Some("it is empty");
    }
    if name.len() > 253 {
        return Some("it is longer than 253 characters");
    }
    if name.contains('*') {
        return Some("a wildcard may only be the whole left-most label, as in *.example.com");
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Some("it has an empty label");
        }
        if label.len() > 63 {
            return Some("a label is longer than 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Some(
                "it may only hold letters, digits, '-' and '_' (use the A-label of an IDN)",
            );
        }
    }
    None
}

fn trim_root(name: &str) -> &str {
    name.strip_suffix('.').unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(pattern: &str, hostname: &str, expected: bool) {
        assert_eq!(
            covers(pattern, hostname),
            expected,
            "covers({pattern:?}, {hostname:?})"
        );
    }

    #[test]
    fn wildcard_matching_follows_rfc_6125() {
        // Exact names, compared without regard to case or a trailing dot.
        check("www.example.com", "www.example.com", true);
        check("WWW.Example.COM", "www.example.com", true);
        check("www.example.com", "www.example.com.", true);
        check("www.example.com", "example.com", false);
        check("example.com", "www.example.com", false);

        // A wildcard is the whole left-most label and stands for exactly one label.
        check("*.example.com", "www.example.com", true);
        check("*.example.com", "API.EXAMPLE.COM", true);
        check("*.example.com", "example.com", false);
        check("*.example.com", "a.b.example.com", false);
        check("*.example.com", ".example.com", false);
        check("*.example.com", "www.example.org", false);
        check("*.example.com", "wwwexample.com", false);

        // Partial and misplaced wildcards are never honoured.
        check("w*.example.com", "www.example.com", false);
        check("www.*.com", "www.example.com", false);
        check("*", "localhost", false);
        check("*.", "localhost", false);
        check("*.*.com", "a.b.com", false);

        // A configured wildcard is covered only by the identical wildcard.
        check("*.contoso.com", "*.contoso.com", true);
        check("*.CONTOSO.com", "*.contoso.com", true);
        check("www.contoso.com", "*.contoso.com", false);
        check("*.www.contoso.com", "*.contoso.com", false);
        check("*.com", "*.contoso.com", false);

        // Nothing covers or is covered by the empty name.
        check("", "", false);
        check("", "example.com", false);
        check("example.com", "", false);
    }

    #[track_caller]
    fn check_syntax(hostname: &str, expected: Option<&str>) {
        let got = syntax_error(&normalize(hostname));
        match expected {
            None => assert_eq!(got, None, "{hostname:?} should be accepted"),
            Some(fragment) => {
                let reason = got.unwrap_or_else(|| panic!("{hostname:?} should be refused"));
                assert!(reason.contains(fragment), "{hostname:?}: {reason}");
            }
        }
    }

    #[test]
    fn listener_hostnames_must_be_dns_names() {
        check_syntax("www.example.com", None);
        check_syntax("WWW.Example.com.", None);
        check_syntax("*.example.com", None);
        check_syntax("localhost", None);
        check_syntax("", Some("empty"));
        check_syntax("*", Some("left-most"));
        check_syntax("*.", Some("left-most"));
        check_syntax("*..", Some("empty"));
        check_syntax("a..com", Some("empty label"));
        check_syntax("w*.example.com", Some("left-most"));
        check_syntax("www.*.com", Some("left-most"));
        check_syntax("bücher.example", Some("A-label"));
        check_syntax("a b.example", Some("letters"));
    }
}

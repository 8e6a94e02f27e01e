//! Request routing of one listener: its rules in priority order, path-based entries (longest match
//! wins), and redirects (to an https listener or to an external URL).
//!
//! A listener's rules are tried by `priority` (lower first, then as written). A rule without
//! `paths` takes every request; a rule with `paths` takes the requests one of its paths matches,
//! and its longest matching path decides where they go. A request no rule takes goes to the first
//! rule's own `backend_pool`.

use std::sync::Arc;

use actix_web::http::{header, StatusCode};
use actix_web::{HttpRequest, HttpResponse};

use crate::metrics::RequestStats;
use crate::proxy::BackendPool;

/// `/exact` or `/prefix/*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    /// The pattern without its trailing `*`.
    text: String,
    prefix: bool,
}

impl PathPattern {
    pub fn new(pattern: &str) -> PathPattern {
        match pattern.strip_suffix('*') {
            Some(prefix) => PathPattern {
                text: prefix.to_owned(),
                prefix: true,
            },
            None => PathPattern {
                text: pattern.to_owned(),
                prefix: false,
            },
        }
    }

    /// How specific the match of `path` is (longer is more specific), or `None`. `/api/*` matches
    /// `/api/` and everything under it, and `/api` itself.
    pub fn matches(&self, path: &str) -> Option<usize> {
        let matched = if self.prefix {
            path.starts_with(&self.text)
                || (self.text.ends_with('/') && path == &self.text[..self.text.len() - 1])
        } else {
            path == self.text
        };
        // An exact pattern beats a prefix pattern of the same text.
        matched.then_some(self.text.len() * 2 + usize::from(!self.prefix))
    }
}

/// What happens to a request, with the counters it is observed in.
#[derive(Debug)]
pub struct Target {
    pub stats: Arc<RequestStats>,
    pub action: Action,
}

#[derive(Debug)]
pub enum Action {
    Proxy(Arc<BackendPool>),
    Redirect(Redirect),
}

/// One rule of a listener, compiled.
#[derive(Debug)]
pub struct Rule {
    pub name: String,
    /// Where requests go that none of `paths` matches (for a rule without paths: all).
    pub default: Target,
    pub paths: Vec<(PathPattern, Target)>,
}

/// The target of a request to `path` under `rules` (sorted by priority; never empty).
pub fn select<'a>(rules: &'a [Rule], path: &str) -> Option<&'a Target> {
    for rule in rules {
        if rule.paths.is_empty() {
            return Some(&rule.default);
        }
        let best = rule
            .paths
            .iter()
            .filter_map(|(pattern, target)| pattern.matches(path).map(|score| (score, target)))
            .max_by_key(|(score, _)| *score);
        if let Some((_, target)) = best {
            return Some(target);
        }
    }
    rules.first().map(|r| &r.default)
}

/// Where a redirect points.
#[derive(Debug, Clone)]
pub enum RedirectTo {
    /// The https listener on this port, same host.
    Listener { port: u16 },
    /// An absolute URL.
    Url(String),
}

#[derive(Debug, Clone)]
pub struct Redirect {
    pub status: StatusCode,
    pub to: RedirectTo,
    pub include_path: bool,
    pub include_query: bool,
}

impl Redirect {
    pub fn respond(&self, req: &HttpRequest) -> HttpResponse {
        let info = req.connection_info();
        let location = self.location(info.host(), req.path(), req.uri().query());
        HttpResponse::build(self.status)
            .insert_header((header::LOCATION, location))
            .finish()
    }

    /// The `Location` for a request to `host` (as the client sent it), `path` and `query`.
    pub fn location(&self, host: &str, path: &str, query: Option<&str>) -> String {
        let path = if self.include_path { path } else { "" };
        let query = query.filter(|q| self.include_query && !q.is_empty());
        match &self.to {
            RedirectTo::Listener { port } => {
                let host = crate::proxy::strip_port(host);
                let host = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host.to_owned()
                };
                let authority = if *port == 443 {
                    host
                } else {
                    format!("{host}:{port}")
                };
                let path = if path.is_empty() { "/" } else { path };
                match query {
                    Some(q) => format!("https://{authority}{path}?{q}"),
                    None => format!("https://{authority}{path}"),
                }
            }
            RedirectTo::Url(url) => {
                let (base, own_query) = match url.split_once('?') {
                    Some((b, q)) => (b, Some(q)),
                    None => (url.as_str(), None),
                };
                let mut location = if path.is_empty() {
                    base.to_owned()
                } else {
                    // `https://example.com` + `/a` and `https://example.com/new/` + `/a` both
                    // join with one slash.
                    format!("{}{path}", base.trim_end_matches('/'))
                };
                let queries: Vec<&str> = own_query.into_iter().chain(query).collect();
                if !queries.is_empty() {
                    location.push('?');
                    location.push_str(&queries.join("&"));
                }
                location
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    fn redirect(to: RedirectTo, include_path: bool, include_query: bool) -> Redirect {
        Redirect {
            status: StatusCode::FOUND,
            to,
            include_path,
            include_query,
        }
    }

    #[test]
    fn prefix_patterns_match_below_and_exact_patterns_only_themselves() {
        let api = PathPattern::new("/api/*");
        assert!(api.matches("/api/x").is_some());
        assert!(api.matches("/api/").is_some());
        assert!(api.matches("/api").is_some());
        assert!(api.matches("/apix").is_none());
        let exact = PathPattern::new("/health");
        assert!(exact.matches("/health").is_some());
        assert!(exact.matches("/health/x").is_none());
        let longer = PathPattern::new("/api/v2/*");
        assert!(longer.matches("/api/v2/x") > api.matches("/api/v2/x"));
        assert!(PathPattern::new("/api/").matches("/api/") > api.matches("/api/"));
    }

    #[test]
    fn rules_are_tried_in_order_and_the_first_rule_is_the_default() {
        let metrics = Metrics::default();
        let target = |label: &str| Target {
            stats: metrics.requests("l", label),
            action: Action::Redirect(redirect(RedirectTo::Url("https://x/".into()), true, true)),
        };
        let rules = vec![
            Rule {
                name: "paths".into(),
                default: target("default"),
                paths: vec![
                    (PathPattern::new("/api/*"), target("api")),
                    (PathPattern::new("/api/v2/*"), target("v2")),
                ],
            },
            Rule {
                name: "images".into(),
                default: target("second-default"),
                paths: vec![(PathPattern::new("/images/*"), target("images"))],
            },
        ];
        let pick = |path: &str| select(&rules, path).unwrap().stats.pool.clone();
        assert_eq!(pick("/api/v1"), "api");
        assert_eq!(pick("/api/v2/x"), "v2");
        assert_eq!(pick("/images/a.png"), "images");
        assert_eq!(pick("/other"), "default");
    }

    #[test]
    fn redirects_keep_path_and_query_unless_told_not_to() {
        let to_listener = redirect(RedirectTo::Listener { port: 8443 }, true, true);
        assert_eq!(
            to_listener.location("example.com:8080", "/a/b", Some("x=1")),
            "https://example.com:8443/a/b?x=1"
        );
        let to_443 = redirect(RedirectTo::Listener { port: 443 }, false, false);
        assert_eq!(
            to_443.location("example.com", "/a", Some("x=1")),
            "https://example.com/"
        );
        let external = redirect(
            RedirectTo::Url("https://new.example/base/".into()),
            true,
            true,
        );
        assert_eq!(
            external.location("h", "/a", Some("x=1")),
            "https://new.example/base/a?x=1"
        );
        let external = redirect(
            RedirectTo::Url("https://new.example/?k=v".into()),
            false,
            true,
        );
        assert_eq!(
            external.location("h", "/a", Some("x=1")),
            "https://new.example/?k=v&x=1"
        );
    }
}

//! The status page at the admin root: every listener with the certificate it serves, where it came
//! from, its Key Vault version, expiry and last check, and a timeline of the latest certificate
//! events. Server-rendered HTML with inline CSS only: no script, no external asset, so it works on
//! an air-gapped admin network and its Content-Security-Policy can forbid everything else.
//!
//! Every dynamic string goes through [`escape`]. The views it renders carry no key material (the
//! listener views and the envelopes' `Display` never show any), and it must stay that way.

use std::fmt::Write as _;

use actix_web::{web, HttpResponse};
use event_log::{Envelope, EventKind, Query};

use crate::actors::messages::QueryEvents;
use crate::admin::{listener_views, AdminState, ListenerView};

/// How many events the timeline shows.
pub const TIMELINE_EVENTS: usize = 50;

/// Days to expiry below which a certificate is highlighted.
pub const EXPIRY_WARNING_DAYS: i64 = 14;

/// `GET /`: the status page.
pub async fn page(state: web::Data<AdminState>) -> HttpResponse {
    let views = listener_views(&state).await;
    let events = match state
        .log
        .send(QueryEvents(Query {
            limit: Some(TIMELINE_EVENTS),
            ..Query::default()
        }))
        .await
    {
        Ok(Ok(mut events)) => {
            // The log answers oldest first; the timeline shows the latest on top.
            events.reverse();
            Ok(events)
        }
        Ok(Err(err)) => Err(err.to_string()),
        Err(err) => Err(err.to_string()),
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let ok = views.is_ok() && events.is_ok();
    let html = render(
        views.as_deref().map_err(String::as_str),
        events.as_deref().map_err(String::as_str),
        now_ms,
    );
    let mut response = if ok {
        HttpResponse::Ok()
    } else {
        HttpResponse::InternalServerError()
    };
    response
        .content_type("text/html; charset=utf-8")
        .insert_header(("cache-control", "no-store"))
        .insert_header(("x-content-type-options", "nosniff"))
        .insert_header((
            "content-security-policy",
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        ))
        .body(html)
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The `outcome` word of a check outcome as the admin API serializes it (`rotated`, `unchanged`,
/// `rejected`, `failed (transient)`…).
pub fn outcome_word(outcome: &serde_json::Value) -> String {
    let word = outcome["outcome"].as_str().unwrap_or("unknown");
    match outcome["class"].as_str() {
        Some(class) if word == "failed" => format!("failed ({class})"),
        _ => word.to_owned(),
    }
}

/// A check outcome in one line, with its details.
pub fn outcome_summary(outcome: &serde_json::Value) -> String {
    let field = |name: &str| outcome[name].as_str().unwrap_or("-").to_owned();
    match outcome["outcome"].as_str() {
        Some("rotated") => format!(
            "rotated {} \u{2192} {} (version {})",
            short(&field("from")),
            short(&field("to")),
            field("version")
        ),
        Some("unchanged") => format!("unchanged (version {})", field("version")),
        Some("rejected") => format!("rejected version {}: {}", field("version"), field("reason")),
        Some("failed") => format!("failed ({}): {}", field("class"), field("message")),
        _ => outcome.to_string(),
    }
}

/// A thumbprint cut to its first 12 characters (the full one is on the page next to it).
fn short(thumbprint: &str) -> String {
    match thumbprint.char_indices().nth(12) {
        Some((cut, _)) => format!("{}\u{2026}", &thumbprint[..cut]),
        None => thumbprint.to_owned(),
    }
}

const STYLE: &str = r#"
:root { color-scheme: light; --ok: #1a7f37; --warn: #9a6700; --bad: #cf222e; --muted: #57606a; --line: #d0d7de; }
* { box-sizing: border-box; }
body { margin: 0; padding: 24px 32px; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2328; background: #f6f8fa; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 28px 0 10px; }
.generated { color: var(--muted); margin: 0 0 12px; }
.listeners { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr)); gap: 14px; }
.listener { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px; }
.listener h3 { margin: 0 0 8px; font-size: 16px; display: flex; gap: 10px; align-items: center; }
.state { font-size: 12px; font-weight: 600; padding: 1px 8px; border-radius: 10px; border: 1px solid currentColor; }
.state-serving { color: var(--ok); }
.state-disabled, .state-no_certificate { color: var(--bad); }
.state-plain { color: var(--muted); }
table { border-collapse: collapse; width: 100%; }
.listener th { text-align: left; font-weight: 500; color: var(--muted); width: 150px; vertical-align: top; padding: 2px 8px 2px 0; }
.listener td { padding: 2px 0; overflow-wrap: anywhere; }
code { font: 12px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.expiry-soon { color: var(--warn); font-weight: 600; }
.expiry-expired { color: #fff; background: var(--bad); padding: 0 6px; border-radius: 4px; font-weight: 600; }
.outcome-bad { color: var(--bad); }
.outcome-good { color: var(--ok); }
.muted { color: var(--muted); }
.timeline { background: #fff; border: 1px solid var(--line); border-radius: 8px; }
.timeline th { text-align: left; color: var(--muted); font-weight: 500; border-bottom: 1px solid var(--line); padding: 6px 10px; }
.timeline td { border-bottom: 1px solid #eaeef2; padding: 5px 10px; vertical-align: top; }
.timeline td.details { overflow-wrap: anywhere; }
.timeline td.time { white-space: nowrap; }
.kind { font-weight: 600; white-space: nowrap; }
.kind-certificate_installed, .kind-certificate_restored, .kind-listener_reenabled { color: var(--ok); }
.kind-certificate_rejected, .kind-fetch_failed, .kind-listener_disabled { color: var(--bad); }
.kind-expiry_warning { color: var(--warn); }
.error { background: #ffebe9; border: 1px solid var(--bad); border-radius: 8px; padding: 10px 14px; color: var(--bad); }
"#;

/// The whole page for `views` and `events` (newest first), as of `now_ms`. Either part may be an
/// error message instead, shown in its place.
pub fn render(
    views: Result<&[ListenerView], &str>,
    events: Result<&[Envelope], &str>,
    now_ms: i64,
) -> String {
    let mut html = String::with_capacity(16 * 1024);
    html.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    html.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    html.push_str("<meta http-equiv=\"refresh\" content=\"30\">\n");
    html.push_str("<title>gateway status</title>\n<style>");
    html.push_str(STYLE);
    html.push_str("</style>\n</head>\n<body>\n<h1>gateway status</h1>\n");
    let _ = writeln!(
        html,
        "<p class=\"generated\">As of <time>{}</time> (UTC); refreshes every 30 s.</p>",
        escape(&event_log::format_ms(now_ms))
    );

    html.push_str("<h2>Listeners</h2>\n");
    match views {
        Ok([]) => html.push_str("<p class=\"muted\">No listener is configured.</p>\n"),
        Ok(views) => {
            html.push_str("<div class=\"listeners\">\n");
            for view in views {
                listener_card(&mut html, view);
            }
            html.push_str("</div>\n");
        }
        Err(err) => {
            let _ = writeln!(
                html,
                "<p class=\"error\">The listeners could not be read: {}</p>",
                escape(err)
            );
        }
    }

    let _ = writeln!(
        html,
        "<h2>Recent certificate events <span class=\"muted\">(latest {TIMELINE_EVENTS}, newest first)</span></h2>"
    );
    match events {
        Ok([]) => html.push_str("<p class=\"muted\">The event log is empty.</p>\n"),
        Ok(events) => timeline(&mut html, events),
        Err(err) => {
            let _ = writeln!(
                html,
                "<p class=\"error\">The event log could not be read: {}</p>",
                escape(err)
            );
        }
    }
    html.push_str("</body>\n</html>\n");
    html
}

fn state_label(state: &str) -> &str {
    match state {
        "serving" => "serving",
        "disabled" => "disabled",
        "no_certificate" => "no certificate",
        "plain" => "plain",
        other => other,
    }
}

/// A class name made of safe characters only.
fn class_suffix(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn row(html: &mut String, label: &str, value_html: &str) {
    let _ = writeln!(html, "<tr><th>{label}</th><td>{value_html}</td></tr>");
}

/// Escaped text, or a muted dash.
fn text_or_dash(value: Option<&str>) -> String {
    match value {
        Some(v) if !v.is_empty() => escape(v),
        _ => "<span class=\"muted\">\u{2014}</span>".to_owned(),
    }
}

fn code_or_dash(value: Option<&str>) -> String {
    match value {
        Some(v) if !v.is_empty() => format!("<code>{}</code>", escape(v)),
        _ => text_or_dash(None),
    }
}

fn listener_card(html: &mut String, view: &ListenerView) {
    let _ = writeln!(
        html,
        "<section class=\"listener\" id=\"listener-{}\">\n<h3><span class=\"name\">{}</span> <span class=\"state state-{}\">{}</span> <span class=\"muted\">{} on {}</span></h3>\n<table>",
        escape(&class_suffix(&view.name)),
        escape(&view.name),
        class_suffix(&view.state),
        escape(state_label(&view.state)),
        escape(&view.protocol),
        escape(&view.bind),
    );
    row(
        html,
        "Hostnames",
        &text_or_dash(Some(&view.hostnames.join(", "))),
    );
    row(html, "Source", &code_or_dash(view.source.as_deref()));
    if view.state != "plain" {
        row(
            html,
            "Thumbprint",
            &code_or_dash(view.thumbprint.as_deref()),
        );
        row(html, "Subject", &text_or_dash(view.subject.as_deref()));
        row(
            html,
            "Key Vault version",
            &code_or_dash(view.version.as_deref()),
        );
        let expiry = match (&view.not_after, view.days_to_expiry) {
            (Some(not_after), Some(days)) => {
                let (class, words) = if days < 0 {
                    ("expiry-expired", format!("expired {} days ago", -days))
                } else if days < EXPIRY_WARNING_DAYS {
                    ("expiry-soon", format!("{days} days left"))
                } else {
                    ("expiry-ok", format!("{days} days left"))
                };
                format!(
                    "{} <span class=\"{class}\">{}</span>",
                    escape(not_after),
                    escape(&words)
                )
            }
            (Some(not_after), None) => escape(not_after),
            _ => text_or_dash(None),
        };
        row(html, "Not after", &expiry);
        row(
            html,
            "Installed",
            &text_or_dash(view.installed_at.as_deref()),
        );
        let last_check = match (&view.last_check, &view.last_outcome) {
            (None, None) => {
                let why = if view
                    .source
                    .as_deref()
                    .is_some_and(|s| s.starts_with("https://"))
                {
                    "not checked yet"
                } else {
                    "not checked (certificate file)"
                };
                format!("<span class=\"muted\">{why}</span>")
            }
            (at, outcome) => {
                let mut cell = text_or_dash(at.as_deref());
                if let Some(outcome) = outcome {
                    let good = matches!(outcome["outcome"].as_str(), Some("rotated" | "unchanged"));
                    let _ = write!(
                        cell,
                        " <span class=\"outcome {}\">{}</span>",
                        if good { "outcome-good" } else { "outcome-bad" },
                        escape(&outcome_summary(outcome))
                    );
                }
                cell
            }
        };
        row(html, "Last check", &last_check);
        if let Some(since) = &view.failing_since {
            row(
                html,
                "Failing since",
                &format!("<span class=\"outcome-bad\">{}</span>", escape(since)),
            );
        }
        row(
            html,
            "Next check",
            &text_or_dash(view.next_check.as_deref()),
        );
    }
    html.push_str("</table>\n</section>\n");
}

fn timeline(html: &mut String, events: &[Envelope]) {
    html.push_str(
        "<table class=\"timeline\">\n<thead><tr><th>Time (UTC)</th><th>#</th><th>Listener</th><th>Event</th><th>Details</th></tr></thead>\n<tbody>\n",
    );
    for envelope in events {
        let kind: EventKind = envelope.kind();
        let _ = writeln!(
            html,
            "<tr><td class=\"time\"><time>{}</time></td><td class=\"muted\">{}</td><td>{}</td><td class=\"kind kind-{}\">{}</td><td class=\"details\"><code>{}</code></td></tr>",
            escape(&event_log::format_ms(envelope.at_ms)),
            envelope.seq,
            escape(&envelope.listener),
            class_suffix(kind.as_str()),
            escape(kind.as_str()),
            escape(&envelope.event.to_string()),
        );
    }
    html.push_str("</tbody>\n</table>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(name: &str, state: &str, days: Option<i64>) -> ListenerView {
        ListenerView {
            name: name.to_owned(),
            protocol: "https".into(),
            bind: "127.0.0.1:8443".into(),
            hostnames: vec!["www.example.test".into()],
            source: Some("https://vault.example/secrets/site".into()),
            state: state.to_owned(),
            thumbprint: Some("AB12".into()),
            subject: Some("CN=www.example.test".into()),
            dns_names: None,
            not_after: Some("2030-01-01T00:00:00Z".into()),
            days_to_expiry: days,
            version: Some("v1".into()),
            installed_at: None,
            last_check: Some("2029-01-01T00:00:00Z".into()),
            last_outcome: Some(serde_json::json!({
                "outcome": "failed", "class": "transient", "message": "<script>alert(1)</script>"
            })),
            next_check: None,
            failing_since: None,
        }
    }

    #[test]
    fn dynamic_text_is_escaped() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        let html = render(
            Ok(&[view("<b>evil</b>\" onload=\"x", "serving", Some(100))]),
            Err("<img src=x>"),
            0,
        );
        assert!(!html.contains("<script>"), "{html}");
        assert!(!html.contains("<b>evil"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{html}"
        );
        assert!(!html.contains("src=\"http"), "no external asset: {html}");
    }

    #[test]
    fn expiry_is_highlighted() {
        let html = render(
            Ok(&[
                view("fine", "serving", Some(90)),
                view("soon", "serving", Some(3)),
                view("gone", "serving", Some(-2)),
            ]),
            Ok(&[]),
            0,
        );
        assert!(
            html.contains("<span class=\"expiry-ok\">90 days left</span>"),
            "{html}"
        );
        assert!(
            html.contains("<span class=\"expiry-soon\">3 days left</span>"),
            "{html}"
        );
        assert!(
            html.contains("<span class=\"expiry-expired\">expired 2 days ago</span>"),
            "{html}"
        );
    }

    #[test]
    fn outcomes_read_as_one_line() {
        let rotated =
            serde_json::json!({"outcome": "rotated", "from": "A", "to": "B", "version": "v2"});
        assert_eq!(
            outcome_summary(&rotated),
            "rotated A \u{2192} B (version v2)"
        );
        assert_eq!(outcome_word(&rotated), "rotated");
        let failed =
            serde_json::json!({"outcome": "failed", "class": "configuration", "message": "m"});
        assert_eq!(outcome_word(&failed), "failed (configuration)");
        assert_eq!(outcome_summary(&failed), "failed (configuration): m");
    }
}

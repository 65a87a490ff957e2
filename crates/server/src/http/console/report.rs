//! The access report in the console (`/console/report`, admins only, as
//! `sshjit report --server`): the helper's own report of the server's
//! trail, filtered by person, account, host and period, shown as a table,
//! downloaded as CSV or JSON, and drawn as an SVG chart of the grants
//! active each day (`/console/chart.svg`), break-glass days marked. The
//! chart is drawn here: the page needs no script to show it.

use std::collections::HashSet;
use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use sshjit::commands::report::{Filter, Format, render};
use sshjit::store::chain;
use sshjit::store::history::Entry;
use sshjit::store::trail::{Action, Record};
use sshjit_policy::evaluate::glob_match;
use sshjit_policy::time::{Timestamp, parse_duration, unix_to_civil};
use sshjit_policy::{Subject, Username};

use super::super::admin::trail_lines;
use super::{Frame, Visitor, html, problem, visitor};
use crate::ops::OpError;

const DAY: i64 = 86_400;
/// Days the chart shows when the period does not say.
const CHART_DAYS: i64 = 14;
/// Most days the chart draws (the end of a longer period).
const MAX_CHART_DAYS: i64 = 92;
/// Rows the page shows (the downloads have them all).
const MAX_ROWS: usize = 500;

/// The filters, as the form sends them.
#[derive(Deserialize, Default, Clone)]
pub(super) struct Filters {
    #[serde(default)]
    person: String,
    #[serde(default)]
    account: String,
    #[serde(default)]
    host: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
}

impl Filters {
    /// The query string that repeats these filters (for the downloads and
    /// the chart).
    fn query(&self) -> String {
        let mut out = String::new();
        for (k, v) in [
            ("person", &self.person),
            ("account", &self.account),
            ("host", &self.host),
            ("since", &self.since),
            ("until", &self.until),
        ] {
            if v.is_empty() {
                continue;
            }
            out.push(if out.is_empty() { '?' } else { '&' });
            out.push_str(k);
            out.push('=');
            for b in v.bytes() {
                if b.is_ascii_alphanumeric() || b"-_.:".contains(&b) {
                    out.push(char::from(b));
                } else {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
        }
        out
    }
}

/// A time as the form takes it: `2026-12-01`, RFC 3339, or a duration ago
/// (`7d`).
fn moment(what: &str, s: &str, now: Timestamp) -> Result<Option<Timestamp>, OpError> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    if s.len() > 40 {
        return Err(OpError::Usage(format!("{what}: too long")));
    }
    if let Ok(d) = parse_duration(s) {
        return Ok(Some(now.saturating_sub(d)));
    }
    let full = if s.len() == 10 {
        format!("{s}T00:00:00Z")
    } else {
        s.to_owned()
    };
    Timestamp::parse_rfc3339(&full).map(Some).map_err(|e| {
        OpError::Usage(format!(
            "{what} {s:?}: a date (2026-12-01), a duration (7d) or {e}"
        ))
    })
}

/// The checked filters.
struct Checked {
    since: Option<Timestamp>,
    until: Option<Timestamp>,
    account: Option<Username<'static>>,
    host: Option<String>,
    /// Only the grants of this person: those their requests made (as the
    /// trail's `request_open` records say), and those they recorded.
    person: Option<String>,
}

fn check(f: &Filters, now: Timestamp) -> Result<Checked, OpError> {
    let since = moment("since", &f.since, now)?;
    let until = moment("until", &f.until, now)?;
    let account = match f.account.trim() {
        "" => None,
        a => {
            Some(Username::new(a.to_owned()).map_err(|e| OpError::Usage(format!("account: {e}")))?)
        }
    };
    let host = match f.host.trim() {
        "" => None,
        h if h.len() <= 253 => Some(h.to_owned()),
        _ => return Err(OpError::Usage("host: too long".into())),
    };
    let person = match f.person.trim() {
        "" => None,
        p => Some(crate::ops::person_name(p)?.to_string()),
    };
    Ok(Checked {
        since,
        until,
        account,
        host,
        person,
    })
}

/// The ids of the requests `person` made, from the trail.
fn requests_of(records: &[Record<'_>], person: &str) -> HashSet<String> {
    records
        .iter()
        .filter_map(|r| match &r.action {
            Action::RequestOpen { request } if request.requester.as_str() == person => {
                Some(request.id.to_string())
            }
            _ => None,
        })
        .collect()
}

fn keeps(c: &Checked, asked: &HashSet<String>, e: &Entry) -> bool {
    let host_ok = c.host.as_deref().is_none_or(|h| {
        e.grant.hosts.is_empty()
            || e.grant
                .hosts
                .iter()
                .any(|p| glob_match(p.as_str().as_bytes(), h.as_bytes()))
    });
    let person_ok = c.person.as_ref().is_none_or(|name| {
        asked.contains(e.grant.id.as_str())
            || e.recorded_by == *name
            || matches!(&e.grant.subject, Subject::Principal(p) if p.as_str() == name)
    });
    host_ok && person_ok
}

/// The report of the server's trail in `format`, filtered.
async fn report(app: &super::App, f: &Filters, format: Format) -> Result<String, OpError> {
    let now = Timestamp::now();
    let c = check(f, now)?;
    let lines = trail_lines(app).await?;
    let mut records = Vec::new();
    let walk = chain::walk(lines.as_slice(), |r| records.push(r.clone().into_owned()))
        .map_err(|e| OpError::Internal(format!("reading the trail: {e}")))?;
    let mut problems = Vec::new();
    if let Some(b) = &walk.broken {
        problems.push(format!("the trail, line {}: {b}", b.line));
    }
    if walk.partial.is_some() {
        problems.push("the trail ends in an incomplete record".into());
    }
    let asked = c
        .person
        .as_deref()
        .map(|p| requests_of(&records, p))
        .unwrap_or_default();
    let keep = |e: &Entry| keeps(&c, &asked, e);
    let narrowed = c.host.is_some() || c.person.is_some();
    let filter = Filter {
        since: c.since,
        until: c.until,
        user: c.account.as_ref(),
        keep: narrowed.then_some(&keep as &dyn Fn(&Entry) -> bool),
    };
    Ok(render(
        "the server's trail".into(),
        &records,
        problems,
        &filter,
        format,
        now,
    ))
}

/// The admin behind the request, or the answer that refuses it.
async fn admin(app: &super::App, headers: &HeaderMap) -> Result<Visitor, Response> {
    let v = visitor(app, headers)
        .await
        .map_err(IntoResponse::into_response)?;
    if !v.is_admin() {
        return Err(problem(&OpError::Forbidden(format!(
            "{} is not in group admin",
            v.name()
        ))));
    }
    Ok(v)
}

/// A grant as a row of the page.
struct Row {
    id: String,
    account: String,
    subject: String,
    hosts: String,
    from: String,
    until: String,
    status: String,
    reason: String,
    by: String,
    break_glass: bool,
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn row(e: &Value) -> Row {
    let g = &e["grant"];
    let subject = if g["principal"].is_string() {
        format!("principal {}", text(&g["principal"]))
    } else {
        text(&g["fingerprint"])
    };
    let hosts = g["hosts"]
        .as_array()
        .map(|a| a.iter().map(text).collect::<Vec<_>>().join(", "))
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "*".into());
    Row {
        id: text(&g["id"]),
        account: text(&g["user"]),
        subject,
        hosts,
        from: text(&e["access_from"]),
        until: text(&e["access_until"]),
        status: text(&e["status"]),
        reason: text(&g["reason"]),
        by: text(&e["recorded_by"]),
        break_glass: g["break_glass"].as_bool().unwrap_or(false),
    }
}

#[derive(Template)]
#[template(path = "console/report.html")]
struct ReportPage<'a> {
    frame: Frame<'a>,
    filters: Filters,
    query: String,
    error: Option<String>,
    verified: bool,
    rows: Vec<Row>,
    total: usize,
}

pub(super) async fn page(
    State(app): State<Arc<super::App>>,
    headers: HeaderMap,
    Query(f): Query<Filters>,
) -> Response {
    let v = match admin(&app, &headers).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let (status, error, verified, rows, total) = match report(&app, &f, Format::Json).await {
        Ok(json) => {
            let doc: Value = serde_json::from_str(&json).unwrap_or(Value::Null);
            let grants = doc["grants"].as_array().cloned().unwrap_or_default();
            let total = grants.len();
            let rows = grants.iter().rev().take(MAX_ROWS).map(row).collect();
            let verified = doc["trail"]["verified"].as_bool().unwrap_or(false);
            (StatusCode::OK, None, verified, rows, total)
        }
        Err(e) => (
            StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST),
            Some(e.message().to_owned()),
            true,
            Vec::new(),
            0,
        ),
    };
    app.metrics.request("console_report", status.as_u16());
    html(
        status,
        &ReportPage {
            frame: Frame::of(&app, &v, "report"),
            query: f.query(),
            filters: f,
            error,
            verified,
            rows,
            total,
        },
    )
}

async fn download(app: &super::App, headers: &HeaderMap, f: &Filters, format: Format) -> Response {
    if let Err(r) = admin(app, headers).await {
        return r;
    }
    let (kind, name) = match format {
        Format::Csv => ("text/csv; charset=utf-8", "sshjit-report.csv"),
        _ => ("application/json", "sshjit-report.json"),
    };
    match report(app, f, format).await {
        Ok(body) => {
            app.metrics.request("console_download", 200);
            (
                [
                    (header::CONTENT_TYPE, kind.to_owned()),
                    (
                        header::CONTENT_DISPOSITION,
                        format!("attachment; filename=\"{name}\""),
                    ),
                ],
                body,
            )
                .into_response()
        }
        Err(e) => {
            app.metrics.request("console_download", e.status());
            problem(&e)
        }
    }
}

pub(super) async fn csv(
    State(app): State<Arc<super::App>>,
    headers: HeaderMap,
    Query(f): Query<Filters>,
) -> Response {
    download(&app, &headers, &f, Format::Csv).await
}

pub(super) async fn json(
    State(app): State<Arc<super::App>>,
    headers: HeaderMap,
    Query(f): Query<Filters>,
) -> Response {
    download(&app, &headers, &f, Format::Json).await
}

/// One day's bar.
struct Bar {
    x: i64,
    y: i64,
    height: i64,
    count: usize,
    label: String,
    /// The day's date under the bar (every few days).
    tick: bool,
    break_glass: bool,
}

#[derive(Template)]
#[template(path = "console/chart.svg")]
struct Chart {
    width: i64,
    height: i64,
    top: usize,
    bars: Vec<Bar>,
    bar_width: i64,
    base: i64,
    title: String,
}

const CHART_HEIGHT: i64 = 220;
const CHART_TOP: i64 = 20;
const CHART_BASE: i64 = 180;
const CHART_LEFT: i64 = 36;

fn date(unix: i64) -> String {
    let c = unix_to_civil(unix);
    format!("{:04}-{:02}-{:02}", c.year, c.month, c.day)
}

/// The bars of the grants active each day of `[from, to)`.
fn bars(windows: &[(i64, i64, bool)], from: i64, days: i64) -> (Vec<Bar>, usize, i64) {
    let counts: Vec<(usize, bool)> = (0..days)
        .map(|d| {
            let (start, end) = (from + d * DAY, from + (d + 1) * DAY);
            let active = windows.iter().filter(|(s, e, _)| *s < end && *e > start);
            let bg = active.clone().any(|(_, _, b)| *b);
            (active.count(), bg)
        })
        .collect();
    let top = counts.iter().map(|c| c.0).max().unwrap_or(0).max(1);
    let slot = (640 / days.max(1)).clamp(4, 48);
    let every = (days / 7).max(1);
    let bars = counts
        .iter()
        .enumerate()
        .map(|(i, &(count, break_glass))| {
            let i = i as i64;
            let height = (count as i64 * (CHART_BASE - CHART_TOP)) / top as i64;
            Bar {
                x: CHART_LEFT + i * slot + 1,
                y: CHART_BASE - height,
                height,
                count,
                label: date(from + i * DAY),
                tick: i % every == 0,
                break_glass,
            }
        })
        .collect();
    (bars, top, slot)
}

pub(super) async fn chart(
    State(app): State<Arc<super::App>>,
    headers: HeaderMap,
    Query(f): Query<Filters>,
) -> Response {
    if let Err(r) = admin(&app, &headers).await {
        return r;
    }
    let now = Timestamp::now();
    let result = async {
        let json = report(&app, &f, Format::Json).await?;
        let c = check(&f, now)?;
        let doc: Value = serde_json::from_str(&json)
            .map_err(|e| OpError::Internal(format!("the report: {e}")))?;
        let windows: Vec<(i64, i64, bool)> = doc["grants"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(|e| {
                let s = Timestamp::parse_rfc3339(e["access_from"].as_str()?).ok()?;
                let u = Timestamp::parse_rfc3339(e["access_until"].as_str()?).ok()?;
                Some((
                    s.unix_seconds(),
                    u.unix_seconds(),
                    e["grant"]["break_glass"].as_bool().unwrap_or(false),
                ))
            })
            .collect();
        let end = c.until.unwrap_or(now).unix_seconds();
        let end = end - end.rem_euclid(DAY) + DAY;
        let start = c
            .since
            .map_or(end - CHART_DAYS * DAY, |s| {
                let s = s.unix_seconds();
                s - s.rem_euclid(DAY)
            })
            .max(end - MAX_CHART_DAYS * DAY);
        let days = ((end - start) / DAY).max(1);
        let (bars, top, slot) = bars(&windows, start, days);
        Ok::<_, OpError>(Chart {
            width: CHART_LEFT + days * slot + 8,
            height: CHART_HEIGHT,
            top,
            bar_width: (slot - 2).max(2),
            base: CHART_BASE,
            title: format!(
                "Grants active per day, {} to {}",
                date(start),
                date(end - DAY)
            ),
            bars,
        })
    }
    .await;
    match result.map(|c| c.render()) {
        Ok(Ok(svg)) => {
            app.metrics.request("console_chart", 200);
            ([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response()
        }
        Ok(Err(e)) => problem(&OpError::Internal(e.to_string())),
        Err(e) => {
            app.metrics.request("console_chart", e.status());
            problem(&e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filters_query_repeats_them_percent_encoded() {
        let f = Filters {
            person: "alice".into(),
            host: "web-*".into(),
            since: "2026-12-01".into(),
            account: String::new(),
            until: "a&b=<c>".into(),
        };
        assert_eq!(
            f.query(),
            "?person=alice&host=web-%2A&since=2026-12-01&until=a%26b%3D%3Cc%3E"
        );
        assert_eq!(Filters::default().query(), "");
    }

    #[test]
    fn moments_are_dates_times_or_durations_ago() {
        let now = Timestamp::from_unix(1_800_000_000, 0);
        assert_eq!(moment("since", "", now).unwrap(), None);
        assert_eq!(
            moment("since", "1d", now).unwrap(),
            Some(Timestamp::from_unix(1_800_000_000 - DAY, 0))
        );
        assert_eq!(
            moment("since", "2026-12-01", now).unwrap(),
            Timestamp::parse_rfc3339("2026-12-01T00:00:00Z").ok()
        );
        assert!(moment("since", "yesterday", now).is_err());
        assert!(moment("since", &"9".repeat(41), now).is_err());
    }

    #[test]
    fn each_day_counts_the_grants_active_in_it_and_marks_break_glass() {
        let day0 = 1_800_000_000 - 1_800_000_000 % DAY;
        let windows = [
            (day0 + 100, day0 + 200, false),
            (day0 + DAY - 1, day0 + DAY + 1, true),
            (day0 + 3 * DAY, day0 + 4 * DAY, false),
        ];
        let (bars, top, _) = bars(&windows, day0, 4);
        let counts: Vec<(usize, bool)> = bars.iter().map(|b| (b.count, b.break_glass)).collect();
        assert_eq!(counts, [(2, true), (1, true), (0, false), (1, false)]);
        assert_eq!(top, 2);
        assert_eq!(bars[0].height, CHART_BASE - CHART_TOP);
        assert_eq!(bars[2].height, 0);
        assert_eq!(bars[1].label, date(day0 + DAY));
    }
}

//! Counters for `/metrics`, in Prometheus' text format: requests by route
//! and status, answers to hosts by outcome, the policy endpoint's latency
//! histogram, logins, changes and store errors, and the state's gauges.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
];

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    answers: Mutex<BTreeMap<&'static str, u64>>,
    logins: Mutex<BTreeMap<&'static str, u64>>,
    latency: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
    pub changes: AtomicU64,
    pub store_errors: AtomicU64,
    pub waiting: AtomicU64,
}

fn bump<K: Ord>(map: &Mutex<BTreeMap<K, u64>>, key: K) {
    if let Ok(mut m) = map.lock() {
        *m.entry(key).or_default() += 1;
    }
}

impl Metrics {
    pub fn request(&self, route: &'static str, status: u16) {
        bump(&self.requests, (route, status));
    }

    /// One answer to a host: `served`, `not_modified`, `unauthorized`,
    /// `forbidden`, `bad_request`, `unavailable`.
    pub fn answer(&self, outcome: &'static str, took: Duration) {
        bump(&self.answers, outcome);
        let secs = took.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.latency[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn login(&self, outcome: &'static str) {
        bump(&self.logins, outcome);
    }

    /// The text `/metrics` serves; `gauges` are the state's current values.
    pub fn render(&self, gauges: &[(&str, &str, f64)]) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str("# HELP sshjit_http_requests_total HTTP requests by route and status.\n# TYPE sshjit_http_requests_total counter\n");
        if let Ok(m) = self.requests.lock() {
            for ((route, status), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "sshjit_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
                );
            }
        }
        out.push_str("# HELP sshjit_policy_answers_total Answers to hosts by outcome.\n# TYPE sshjit_policy_answers_total counter\n");
        if let Ok(m) = self.answers.lock() {
            for (outcome, n) in m.iter() {
                let _ = writeln!(
                    out,
                    "sshjit_policy_answers_total{{outcome=\"{outcome}\"}} {n}"
                );
            }
        }
        out.push_str("# HELP sshjit_policy_answer_seconds Time to answer a host.\n# TYPE sshjit_policy_answer_seconds histogram\n");
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "sshjit_policy_answer_seconds_bucket{{le=\"{b}\"}} {}",
                self.latency[i].load(Ordering::Relaxed)
            );
        }
        let count = self.latency_count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "sshjit_policy_answer_seconds_bucket{{le=\"+Inf\"}} {count}\nsshjit_policy_answer_seconds_sum {}\nsshjit_policy_answer_seconds_count {count}",
            self.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        out.push_str("# HELP sshjit_logins_total People's logins by outcome.\n# TYPE sshjit_logins_total counter\n");
        if let Ok(m) = self.logins.lock() {
            for (outcome, n) in m.iter() {
                let _ = writeln!(out, "sshjit_logins_total{{outcome=\"{outcome}\"}} {n}");
            }
        }
        let _ = writeln!(
            out,
            "# HELP sshjit_changes_total Records appended by this server.\n# TYPE sshjit_changes_total counter\nsshjit_changes_total {}",
            self.changes.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP sshjit_store_errors_total Store operations that failed.\n# TYPE sshjit_store_errors_total counter\nsshjit_store_errors_total {}",
            self.store_errors.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP sshjit_long_polls Hosts waiting for a change.\n# TYPE sshjit_long_polls gauge\nsshjit_long_polls {}",
            self.waiting.load(Ordering::Relaxed)
        );
        for (name, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_a_cumulative_histogram() {
        let m = Metrics::default();
        m.request("policy", 200);
        m.request("policy", 200);
        m.request("policy", 401);
        m.answer("served", Duration::from_micros(800));
        m.answer("served", Duration::from_millis(30));
        let text = m.render(&[("sshjit_serial", "The policy's serial.", 7.0)]);
        assert!(text.contains("sshjit_http_requests_total{route=\"policy\",status=\"200\"} 2"));
        assert!(text.contains("sshjit_http_requests_total{route=\"policy\",status=\"401\"} 1"));
        assert!(text.contains("sshjit_policy_answer_seconds_bucket{le=\"0.001\"} 1"));
        assert!(text.contains("sshjit_policy_answer_seconds_bucket{le=\"0.05\"} 2"));
        assert!(text.contains("sshjit_policy_answer_seconds_count 2"));
        assert!(text.contains("sshjit_serial 7"));
    }
}

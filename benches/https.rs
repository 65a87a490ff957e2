//! The helper against `curl` on the same https URL with the same pinned CA:
//! a local TLS server (the integration tests' own) serves a static policy;
//! both clients are run as fresh processes, interleaved, many times; the
//! medians and their ratio are printed. A measurement, not a test: run it
//! with `scripts/bench-https [ITERATIONS]`.

#[path = "../tests/it/support/mod.rs"]
mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use support::https::{Pki, Response, Server, write_pem};
use support::{TestDir, key_grant};

fn main() {
    let iterations: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200);
    let dir = TestDir::new("bench-https");
    let pki = Pki::new("bench CA");
    let ca = dir.join("ca.pem");
    write_pem(&ca, &pki.ca_pem);
    let server = Server::start(&pki);
    // A realistic document: 100 grants for 10 users, 20 revocations.
    let grants: Vec<_> = (0..100)
        .map(|i| {
            key_grant(
                &format!("g-{i}"),
                &format!("user{}", i % 10),
                support::KEY_A,
            )
        })
        .collect();
    let revocations: Vec<_> = (0..20)
        .map(|i| json!({"grant": format!("g-old-{i}"), "reason": "rotated"}))
        .collect();
    let doc = json!({"version": 1, "serial": 1, "grants": grants, "revocations": revocations});
    let body = serde_json::to_vec_pretty(&doc).unwrap();
    server.route("/policy.json", Response::ok(body.clone()));
    let url = server.url("/policy.json");
    let config = dir.config(&format!(
        "ca_file = \"{}\"\nhost = \"bench\"\ntimeout = \"5s\"",
        ca.display()
    ));
    let request_url = format!("{url}?user=user1&host=bench&mode=keys");

    let helper = || {
        let mut c = Command::new(support::bin());
        c.args(["keys", "user1", "--config"])
            .arg(&config)
            .args(["--policy", &url]);
        c
    };
    let curl = || {
        let mut c = Command::new("curl");
        c.args(["-sS", "--fail", "--cacert"])
            .arg(&ca)
            .args(["-o", "/dev/null", &request_url]);
        c
    };
    // Both must work before they are timed.
    for (name, mut c) in [("sshjit", helper()), ("curl", curl())] {
        let out = c.output().unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(out.status.success(), "{name} failed: {out:?}");
    }
    let time = |mut c: Command| {
        c.stdout(Stdio::null()).stderr(Stdio::null());
        let t = Instant::now();
        let st = c.status().unwrap();
        let d = t.elapsed();
        assert!(st.success());
        d
    };
    for _ in 0..10 {
        time(helper());
        time(curl());
    }
    let (mut h, mut k) = (Vec::new(), Vec::new());
    for _ in 0..iterations {
        h.push(time(helper()));
        k.push(time(curl()));
    }
    h.sort();
    k.sort();
    let pct = |v: &[Duration], p: usize| v[(v.len() - 1) * p / 100];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "https GET of a {} byte policy, {iterations} runs each, fresh process per run, pinned CA",
        body.len()
    );
    println!(
        "sshjit keys (fetch + parse + evaluate + log): median {:.2} ms, p10 {:.2} ms, p90 {:.2} ms",
        ms(pct(&h, 50)),
        ms(pct(&h, 10)),
        ms(pct(&h, 90))
    );
    println!(
        "curl --cacert (fetch only):                 median {:.2} ms, p10 {:.2} ms, p90 {:.2} ms",
        ms(pct(&k, 50)),
        ms(pct(&k, 10)),
        ms(pct(&k, 90))
    );
    println!(
        "ratio sshjit/curl (medians): {:.2}",
        ms(pct(&h, 50)) / ms(pct(&k, 50))
    );
}

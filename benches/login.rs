//! `cargo bench --bench login`: what the login path costs, measured side by
//! side with its floor in the same run. Prints medians and ratios; asserts
//! nothing (speed goals live here, not in tests).
//!
//! 1. `sshjit keys` on policies of 100 to 100,000 grants against `cat` of
//!    an authorized_keys file with the same number of lines, on every path
//!    a deployment uses: the index (by the file's identity, and by its
//!    content after a rewrite with the same bytes), no index (the whole
//!    document), a signed policy with and without its index, and https
//!    (a static server answering the whole document, and a filtering
//!    server answering one user's part); peak memory of each.
//! 2. Whole logins through a real sshd: the helper on a 10,000-grant policy
//!    against the same sshd reading a static AuthorizedKeysFile (needs
//!    root, sshd and rsyslogd, as the end-to-end tests do).
//!
//! `SSHJIT_BENCH_RUNS` sets the runs per case (default 200),
//! `SSHJIT_BENCH_SIZES` the policy sizes (default 100,1000,10000,100000),
//! `SSHJIT_BENCH_BEFORE=/path/to/an/older/sshjit` measures that binary on
//! the same files too, interleaved (a before/after in one run), and
//! `SSHJIT_BENCH_INSTRUCTIONS=1` counts each case's instructions once with
//! `valgrind --tool=callgrind` (a measure the machine's noise does not move).

#[path = "../tests/it/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::https::{Pki, Response, Server, signing_key, ssh_sign, write_pem};
use support::sshd::{ClientKey, Options, Sshd, USER_A};
use support::{TestDir, bin, key_grant, synthetic};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

/// Wall time of one run of `cmd`, output discarded.
fn measure(cmd: &mut Command) -> Duration {
    let started = std::time::Instant::now();
    let status = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run");
    let wall = started.elapsed();
    assert!(status.success(), "{cmd:?} failed");
    wall
}

/// Peak resident memory of one run of `cmd` in KiB: the child's
/// `ru_maxrss`, as GNU time (`/usr/bin/time`, Debian's `time`) reports it.
fn peak_rss_kib(cmd: &Command) -> u64 {
    let mut timed = Command::new("/usr/bin/time");
    timed
        .args(["-f", "%M", "--"])
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .env_clear()
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let out = timed
        .output()
        .expect("/usr/bin/time (apt-get install time)");
    assert!(out.status.success(), "{timed:?}: {out:?}");
    let text = String::from_utf8_lossy(&out.stderr);
    text.lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak memory from /usr/bin/time: {text}"))
}

/// Instructions of one run of `cmd`, counted by callgrind.
fn instructions(cmd: &Command) -> Option<u64> {
    let out = Command::new("valgrind")
        .args(["--tool=callgrind", "--callgrind-out-file=/dev/null", "--"])
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .env_clear()
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stderr);
    text.lines()
        .find_map(|l| l.split("Collected : ").nth(1))
        .and_then(|n| n.trim().parse().ok())
}

fn keys_cmd(binary: &Path, policy: &str, config: &Path, user: &str) -> Command {
    let mut c = Command::new(binary);
    c.args(["keys", user, "--host", "web-1", "--policy", policy])
        .arg("--config")
        .arg(config)
        .env_clear()
        .current_dir("/");
    c
}

/// One way to answer sshd, measured.
struct Case {
    label: String,
    cmd: Command,
    times: Vec<Duration>,
}

struct Row {
    n: usize,
    policy_bytes: usize,
    /// cat first, then the helper's cases.
    cases: Vec<(String, Duration, u64, Option<u64>)>,
}

/// The part of `doc` a filtering server (sshjit-server) answers for
/// `user`: that user's grants and the revocations that can name them.
fn filtered(doc: &serde_json::Value, user: &str) -> serde_json::Value {
    let grants: Vec<serde_json::Value> = doc["grants"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["user"] == user)
        .cloned()
        .collect();
    let revocations: Vec<serde_json::Value> = doc["revocations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r.get("user").is_some_and(|u| u == user)
                || grants.iter().any(|g| r.get("grant") == Some(&g["id"]))
        })
        .cloned()
        .collect();
    serde_json::json!({"version": 1, "serial": doc["serial"], "grants": grants, "revocations": revocations})
}

fn helper_against_cat(sizes: &[usize], runs: usize, before: Option<&Path>) -> Vec<Row> {
    let count = std::env::var("SSHJIT_BENCH_INSTRUCTIONS").is_ok_and(|v| v == "1");
    let pki = Pki::new("bench CA");
    let server = Server::start(&pki);
    let mut rows = Vec::new();
    for &n in sizes {
        let dir = TestDir::new(&format!("bench-{n}"));
        let (doc, keys) = synthetic::policy(n, vec![]);
        let indexed = dir.write("indexed.json", &doc);
        let content = dir.write("content.json", &doc);
        let whole = dir.write("whole.json", &doc);
        let signed_indexed = dir.write("signed-indexed.json", &doc);
        let signed_whole = dir.write("signed-whole.json", &doc);
        let authorized_keys = dir.write("authorized_keys", &keys);
        let key = signing_key(&dir, "signer");
        let sig = ssh_sign(&key, &doc, "sshjit-policy");
        for p in [&signed_indexed, &signed_whole] {
            let mut s = p.as_os_str().to_owned();
            s.push(".sig");
            support::write_file(Path::new(&s), sig.as_bytes(), 0o644);
        }
        let signers = dir.write("allowed_signers", format!("bench {}\n", key.public_line));
        let state = dir.join("state");
        std::fs::create_dir(&state).unwrap();
        std::fs::set_permissions(&state, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        let ca = dir.join("ca.pem");
        write_pem(&ca, &pki.ca_pem);
        // Log lines go to a socket that a thread drains, as a syslog
        // daemon would (a full socket would make the helper wait).
        let sink_path = dir.join("log.sock");
        let sink = std::os::unix::net::UnixDatagram::bind(&sink_path).unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while sink.recv(&mut buf).is_ok() {}
        });
        let config = |name: &str, extra: &str| {
            dir.write(
                name,
                format!(
                    "syslog_socket = \"{}\"\nca_file = \"{}\"\ntimeout = \"10s\"\n{extra}\n",
                    sink_path.display(),
                    ca.display()
                ),
            )
        };
        let plain = config("plain.toml", "");
        let signed = config(
            "signed.toml",
            &format!(
                "allowed_signers = \"{}\"\nstate_dir = \"{}\"",
                signers.display(),
                state.display()
            ),
        );
        support::admin(&["index"], &indexed, &plain);
        support::admin(&["index"], &content, &plain);
        support::admin(&["index"], &signed_indexed, &signed);
        // Rewritten with the same bytes (as config management does): the
        // index now matches by content only.
        support::write_file(&content, &doc, 0o644);
        // A user in the middle of the document with three grants.
        let user = synthetic::user_of(n / 2 + 1);
        let value: serde_json::Value = serde_json::from_slice(&doc).unwrap();
        let whole_route = format!("/whole-{n}.json");
        let part_route = format!("/part-{n}.json");
        server.route(&whole_route, Response::ok(doc.clone()));
        server.route(
            &part_route,
            Response::ok(serde_json::to_vec_pretty(&filtered(&value, &user)).unwrap()),
        );
        let (whole_url, part_url) = (server.url(&whole_route), server.url(&part_route));
        let s = |p: &PathBuf| p.to_str().unwrap().to_owned();
        let mut paths: Vec<(&str, String, &Path, &str)> = vec![
            ("index", s(&indexed), &plain, "index=used"),
            ("index by content", s(&content), &plain, "index=content"),
            ("no index", s(&whole), &plain, "index=missing"),
            (
                "signed, index",
                s(&signed_indexed),
                &signed,
                "signed_by=bench",
            ),
            (
                "signed, no index",
                s(&signed_whole),
                &signed,
                "signed_by=bench",
            ),
            ("https, user's part", part_url, &plain, "index=off"),
        ];
        // The helper refuses an https answer over 16 MiB (a 100,000-grant
        // document is 42 MB): there is no such path to measure.
        if doc.len() <= 16 << 20 {
            paths.push(("https, whole document", whole_url, &plain, "index=off"));
        }
        let mut cases = vec![Case {
            label: "cat".into(),
            cmd: {
                let mut c = Command::new("cat");
                c.arg(&authorized_keys);
                c
            },
            times: Vec::new(),
        }];
        let check = dir.write(
            "check.toml",
            format!(
                "syslog_socket = \"{}\"\nca_file = \"{}\"\n",
                dir.join("none").display(),
                ca.display()
            ),
        );
        for (label, policy, cfg, expect) in &paths {
            let cfg_check = if *cfg == signed.as_path() {
                let c = dir.join(&format!("check-{}.toml", cases.len()));
                let text = std::fs::read_to_string(cfg).unwrap().replace(
                    sink_path.to_str().unwrap(),
                    dir.join("none").to_str().unwrap(),
                );
                support::write_file(&c, text.as_bytes(), 0o644);
                c
            } else {
                check.clone()
            };
            for (who, binary) in [("", Some(Path::new(bin()))), ("before: ", before)] {
                let Some(binary) = binary else { continue };
                // Each works before it is timed (the log on stderr shows
                // which path it took), and logs to the socket when timed.
                let out = keys_cmd(binary, policy, &cfg_check, &user)
                    .output()
                    .unwrap();
                let log = String::from_utf8_lossy(&out.stderr);
                assert!(out.status.success(), "{who}{label}: {log}");
                if who.is_empty() {
                    assert!(log.contains(expect), "{label}: expected {expect}: {log}");
                }
                cases.push(Case {
                    label: format!("{who}{label}"),
                    cmd: keys_cmd(binary, policy, cfg, &user),
                    times: Vec::new(),
                });
            }
        }
        let slow = |label: &str| label.contains("no index") || label.contains("whole");
        for r in 0..runs {
            // Interleaved, so drifting machine load hits all alike.
            for c in &mut cases {
                if n >= 100_000 && slow(&c.label) && r >= 20 {
                    continue;
                }
                c.times.push(measure(&mut c.cmd));
            }
        }
        let measured = cases
            .into_iter()
            .map(|c| {
                let rss = peak_rss_kib(&c.cmd);
                let ir = if count { instructions(&c.cmd) } else { None };
                (c.label, median(c.times), rss, ir)
            })
            .collect();
        rows.push(Row {
            n,
            policy_bytes: doc.len(),
            cases: measured,
        });
        eprintln!("  measured {n} grants");
    }
    rows
}

fn print_rows(rows: &[Row], runs: usize) {
    println!(
        "\n## sshjit keys vs cat (medians of {runs} runs, ms; ratio to cat; peak resident memory of one call, KiB; instructions of one call)\n"
    );
    println!(
        "| grants | policy bytes | path | median ms | ratio to cat | peak RSS KiB | instructions |"
    );
    println!("|---:|---:|---|---:|---:|---:|---:|");
    for r in rows {
        let cat = r.cases[0].1;
        for (label, t, rss, ir) in &r.cases {
            println!(
                "| {} | {} | {} | {} | {:.2} | {} | {} |",
                r.n,
                r.policy_bytes,
                label,
                ms(*t),
                t.as_secs_f64() / cat.as_secs_f64(),
                rss,
                ir.map_or_else(|| "-".to_owned(), |i| format!("{:.2} M", i as f64 / 1e6)),
            );
        }
    }
}

fn whole_logins(logins: usize) {
    println!("\n## whole logins through sshd (medians of {logins} logins, ms)\n");
    let root = sshjit::system::euid() == 0;
    if !root || !Path::new("/usr/sbin/sshd").exists() || !Path::new("/usr/sbin/rsyslogd").exists() {
        println!("skipped: needs root, sshd and rsyslogd (as the end-to-end tests do)");
        return;
    }
    let keys = TestDir::new("bench-login-keys");
    let key = ClientKey::generate(&keys.path, "bench");
    let (doc, _) = synthetic::policy(10_000, vec![key_grant("g-bench", USER_A, &key.public_line)]);
    let doc: serde_json::Value = serde_json::from_slice(&doc).unwrap();
    let helper = Sshd::start("bench-helper", &doc, Options::default());
    helper.index();
    let static_file = keys.write("authorized_keys", format!("{}\n", key.public_line));
    let plain = Sshd::start(
        "bench-static",
        &serde_json::json!({"version": 1}),
        Options {
            static_keys_file: Some(static_file),
            ..Options::default()
        },
    );
    let time = |sshd: &Sshd| {
        let started = std::time::Instant::now();
        let l = sshd.login(USER_A, &key, "true");
        assert!(l.succeeded(), "{l:?}");
        started.elapsed()
    };
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for i in 0..logins {
        // Alternate which goes first, so neither gains from the other.
        if i % 2 == 0 {
            a.push(time(&helper));
            b.push(time(&plain));
        } else {
            b.push(time(&plain));
            a.push(time(&helper));
        }
    }
    let (a, b) = (median(a), median(b));
    println!("| sshd reading | login median | ratio |");
    println!("|---|---:|---:|");
    println!("| static AuthorizedKeysFile | {} | 1.00 |", ms(b));
    println!(
        "| sshjit, 10,000-grant policy with index | {} | {:.3} ({:+.1}%) |",
        ms(a),
        a.as_secs_f64() / b.as_secs_f64(),
        (a.as_secs_f64() / b.as_secs_f64() - 1.0) * 100.0
    );
}

fn main() {
    let runs = env_or("SSHJIT_BENCH_RUNS", 200usize);
    let sizes: Vec<usize> = std::env::var("SSHJIT_BENCH_SIZES")
        .unwrap_or_else(|_| "100,1000,10000,100000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let before = std::env::var_os("SSHJIT_BENCH_BEFORE").map(PathBuf::from);
    println!("# sshjit login-path benchmark ({})", bin());
    if let Some(b) = &before {
        println!("(before: {})", b.display());
    }
    let rows = helper_against_cat(&sizes, runs, before.as_deref());
    print_rows(&rows, runs);
    whole_logins(env_or("SSHJIT_BENCH_LOGINS", 100usize));
}

//! `cargo bench --bench login`: what the login path costs, measured side by
//! side with its floor in the same run. Prints medians and ratios; asserts
//! nothing (speed goals live here, not in tests).
//!
//! 1. `sshjit keys` on policies of 100 to 100,000 grants, with and without
//!    the index, against `cat` of an authorized_keys file with the same
//!    number of lines; peak memory of each.
//! 2. Whole logins through a real sshd: the helper on a 10,000-grant policy
//!    against the same sshd reading a static AuthorizedKeysFile (needs
//!    root, sshd and rsyslogd, as the end-to-end tests do).
//!
//! `SSHJIT_BENCH_RUNS` sets the runs per case (default 200), and
//! `SSHJIT_BENCH_SIZES` the policy sizes (default 100,1000,10000,100000).

#[path = "../tests/it/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

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

fn keys_cmd(policy: &Path, config: &Path, user: &str) -> Command {
    let mut c = Command::new(bin());
    c.args(["keys", user, "--host", "web-1", "--policy"])
        .arg(policy)
        .arg("--config")
        .arg(config)
        .env_clear()
        .current_dir("/");
    c
}

struct Row {
    n: usize,
    cat: Duration,
    indexed: Duration,
    whole: Duration,
    rss_cat: u64,
    rss_indexed: u64,
    rss_whole: u64,
    policy_bytes: usize,
}

fn helper_against_cat(sizes: &[usize], runs: usize) -> Vec<Row> {
    let mut rows = Vec::new();
    for &n in sizes {
        let dir = TestDir::new(&format!("bench-{n}"));
        let (doc, keys) = synthetic::policy(n, vec![]);
        let indexed = dir.write("indexed.json", &doc);
        let whole = dir.write("whole.json", &doc);
        let authorized_keys = dir.write("authorized_keys", &keys);
        // Log lines go to a socket that a thread drains, as a syslog
        // daemon would (a full socket would make the helper wait).
        let sink_path = dir.join("log.sock");
        let sink = std::os::unix::net::UnixDatagram::bind(&sink_path).unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while sink.recv(&mut buf).is_ok() {}
        });
        let config = dir.write(
            "sshjit.toml",
            format!("syslog_socket = \"{}\"\n", sink_path.display()),
        );
        support::admin(&["index"], &indexed, &config);
        // A user in the middle of the document with three grants.
        let user = synthetic::user_of(n / 2 + 1);
        // The index is used where meant (a config logging to stderr shows
        // it), and the measured config logs to the socket, not stderr.
        let check = dir.write(
            "check.toml",
            format!("syslog_socket = \"{}\"\n", dir.join("none").display()),
        );
        for (policy, expect) in [(&indexed, "index=used"), (&whole, "index=missing")] {
            let out = keys_cmd(policy, &check, &user).output().unwrap();
            let log = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success() && log.contains(expect),
                "expected {expect}: {log}"
            );
            let out = keys_cmd(policy, &config, &user).output().unwrap();
            assert!(out.status.success() && out.stderr.is_empty(), "{out:?}");
        }
        let whole_runs = if n >= 100_000 { runs.min(20) } else { runs };
        let (mut t_cat, mut t_idx, mut t_whole) = (Vec::new(), Vec::new(), Vec::new());
        for r in 0..runs {
            // Interleaved, so drifting machine load hits all alike.
            t_cat.push(measure(Command::new("cat").arg(&authorized_keys)));
            t_idx.push(measure(&mut keys_cmd(&indexed, &config, &user)));
            if r < whole_runs {
                t_whole.push(measure(&mut keys_cmd(&whole, &config, &user)));
            }
        }
        rows.push(Row {
            n,
            cat: median(t_cat),
            indexed: median(t_idx),
            whole: median(t_whole),
            rss_cat: peak_rss_kib(Command::new("cat").arg(&authorized_keys)),
            rss_indexed: peak_rss_kib(&keys_cmd(&indexed, &config, &user)),
            rss_whole: peak_rss_kib(&keys_cmd(&whole, &config, &user)),
            policy_bytes: doc.len(),
        });
        eprintln!("  measured {n} grants");
    }
    rows
}

fn print_rows(rows: &[Row], runs: usize) {
    println!(
        "\n## sshjit keys vs cat (medians of {runs} runs, ms; peak resident memory of one call, KiB)\n"
    );
    println!(
        "| grants | policy bytes | cat | sshjit (index) | ratio | sshjit (whole document) | ratio | peak RSS, cat | peak RSS, index | peak RSS, whole |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {:.2} | {} | {:.2} | {} | {} | {} |",
            r.n,
            r.policy_bytes,
            ms(r.cat),
            ms(r.indexed),
            r.indexed.as_secs_f64() / r.cat.as_secs_f64(),
            ms(r.whole),
            r.whole.as_secs_f64() / r.cat.as_secs_f64(),
            r.rss_cat,
            r.rss_indexed,
            r.rss_whole,
        );
    }
    if let (Some(first), Some(last)) = (rows.first(), rows.last()) {
        println!(
            "\ngrowth from {} to {} grants ({}x the policy): sshjit with index {:.2}x, whole document {:.2}x, cat {:.2}x",
            first.n,
            last.n,
            last.n / first.n.max(1),
            last.indexed.as_secs_f64() / first.indexed.as_secs_f64(),
            last.whole.as_secs_f64() / first.whole.as_secs_f64(),
            last.cat.as_secs_f64() / first.cat.as_secs_f64(),
        );
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
    println!("# sshjit login-path benchmark ({})", bin());
    let rows = helper_against_cat(&sizes, runs);
    print_rows(&rows, runs);
    whole_logins(env_or("SSHJIT_BENCH_LOGINS", 100usize));
}

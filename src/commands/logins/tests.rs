use super::*;
use sshjit_policy::time::Civil;

const FP: &str = "SHA256:X5oprPYTCKn2RSt7zk0vLaTKD2WNGktiH+URhgz06P8";

fn reference() -> Timestamp {
    Timestamp::parse_rfc3339("2026-11-21T12:00:00Z").unwrap()
}

fn decision(prefix: &str) -> String {
    format!(
        "{prefix}mode=keys user=deploy fp={FP} host=web-1 source=/etc/sshjit/policy.json policy_serial=7 matched=g-1,g-2 lines=1 outcome=allow latency_us=412"
    )
}

fn allowed(time: Option<Timestamp>, origin: Option<&str>) -> Event {
    Event::Allowed {
        time,
        origin: origin.map(str::to_owned),
        host: Some("web-1".into()),
        user: "deploy".into(),
        fingerprint: Some(FP.into()),
        matched: vec!["g-1".into(), "g-2".into()],
    }
}

fn local(month: u32, day: u32, hour: u32, minute: u32, second: u32) -> Timestamp {
    let secs = crate::system::local_to_unix(&Civil {
        year: 2026,
        month,
        day,
        hour,
        minute,
        second,
    })
    .unwrap();
    Timestamp::from_unix(secs, 0)
}

#[test]
fn fields_are_read_as_the_helper_writes_them() {
    let f = parse_fields(r#"a=1 b="x y" c="q\"uote\\d\x0a" d= e"#);
    assert_eq!(
        f,
        [
            ("a", "1".to_owned()),
            ("b", "x y".into()),
            ("c", "q\"uote\\d\n".into()),
            ("d", String::new()),
        ]
    );
    // The writer and the reader agree.
    let mut line = crate::log::Line::new();
    line.field("key_id", "x outcome=allow\nfake")
        .field("matched", "g-1");
    let f = parse_fields(line.as_str());
    assert_eq!(f[0], ("key_id", "x outcome=allow\nfake".into()));
    assert_eq!(f[1], ("matched", "g-1".into()));
}

#[test]
fn every_prefix_style() {
    let r = reference();
    // The test harness's rsyslog template: no time, no host.
    assert_eq!(
        parse_line(&decision("authpriv.info sshjit[123]: "), r),
        Some(allowed(None, None))
    );
    // Our own stderr fallback.
    assert_eq!(
        parse_line(&decision("sshjit: "), r),
        Some(allowed(None, None))
    );
    // Classic auth.log: local time, the year from the reference.
    assert_eq!(
        parse_line(&decision("Nov 21 10:00:00 web-1 sshjit[123]: "), r),
        Some(allowed(Some(local(11, 21, 10, 0, 0)), Some("web-1")))
    );
    assert_eq!(
        parse_line(&decision("Nov  1 09:05:07 web-1 sshjit[123]: "), r),
        Some(allowed(Some(local(11, 1, 9, 5, 7)), Some("web-1")))
    );
    // ISO (rsyslog's high-precision format).
    assert_eq!(
        parse_line(
            &decision("2026-11-21T11:00:00.123456+01:00 web-1 sshjit[123]: "),
            r
        ),
        Some(allowed(
            Some(Timestamp::parse_rfc3339("2026-11-21T10:00:00.123456Z").unwrap()),
            Some("web-1")
        ))
    );
    // RFC 5424, with and without structured data.
    let t = Some(Timestamp::parse_rfc3339("2026-11-21T10:00:00Z").unwrap());
    assert_eq!(
        parse_line(
            &decision("<86>1 2026-11-21T10:00:00Z web-1 sshjit 123 - - "),
            r
        ),
        Some(allowed(t, Some("web-1")))
    );
    assert_eq!(
        parse_line(
            &decision(
                "<86>1 2026-11-21T10:00:00Z web-1 sshjit 123 - [meta x=\"a\\]b\"][y] \u{feff}"
            ),
            r
        ),
        Some(allowed(t, Some("web-1")))
    );
}

#[test]
fn a_classic_time_after_the_file_belongs_to_last_year() {
    let r = Timestamp::parse_rfc3339("2026-01-02T00:00:00Z").unwrap();
    let Some(Event::Allowed { time, .. }) =
        parse_line(&decision("Dec 31 23:00:00 h sshjit[1]: "), r)
    else {
        panic!("not parsed");
    };
    assert_eq!(time.unwrap().to_civil().year, 2025);
}

#[test]
fn only_allow_decisions_and_accepted_logins_count() {
    let r = reference();
    for line in [
        "Nov 21 10:00:00 web-1 sshjit[1]: mode=keys user=deploy host=web-1 outcome=none reason=no-valid-grant",
        "Nov 21 10:00:00 web-1 sshjit[1]: mode=keys user=deploy outcome=error error=\"x matched=g-1 outcome=allow\"",
        "Nov 21 10:00:00 web-1 sshjit[1]: action=grant outcome=ok id=g-1",
        "Nov 21 10:00:00 web-1 notsshjit[1]: mode=keys user=deploy matched=g-1 outcome=allow",
        "Nov 21 10:00:00 web-1 sshd[9]: Failed publickey for deploy from 10.0.0.1 port 2 ssh2: ED25519 SHA256:x",
        "Nov 21 10:00:00 web-1 CRON[9]: (root) CMD (true)",
        "",
        "garbage",
    ] {
        assert_eq!(parse_line(line, r), None, "{line}");
    }
    let accepted = |line: &str| parse_line(line, r);
    assert_eq!(
        accepted(&format!(
            "Nov 21 10:00:01 web-1 sshd[9]: Accepted publickey for deploy from 10.0.0.1 port 5555 ssh2: ED25519 {FP}"
        )),
        Some(Event::Accepted {
            time: Some(local(11, 21, 10, 0, 1)),
            origin: Some("web-1".into()),
            user: "deploy".into(),
            fingerprint: FP.into(),
        })
    );
    // OpenSSH 9.8+ logs from sshd-session; certificates name the key first.
    assert!(matches!(
        accepted(&format!(
            "2026-11-21T10:00:01Z web-1 sshd-session[9]: Accepted publickey for deploy from ::1 port 2 ssh2: ED25519-CERT {FP} ID alice@corp (serial 7) CA ED25519 SHA256:ca"
        )),
        Some(Event::Accepted { fingerprint, .. }) if fingerprint == FP
    ));
    // A bare message names no program: it is not taken for sshd's.
    assert_eq!(
        accepted(&format!(
            "Accepted publickey for deploy from 127.0.0.1 port 2 ssh2: ED25519 {FP}"
        )),
        None
    );
}

#[test]
fn decisions_followed_by_accepted_lines_are_logins() {
    let accepted = |t: &str| {
        format!(
            "Nov 21 {t} web-1 sshd[9]: Accepted publickey for deploy from 10.0.0.1 port 5 ssh2: ED25519 {FP}\n"
        )
    };
    let mut text = String::new();
    // A login: two decisions (query, then signature) and sshd's Accepted.
    text += &(decision("Nov 21 10:00:00 web-1 sshjit[1]: ") + "\n");
    text += &(decision("Nov 21 10:00:00 web-1 sshjit[2]: ") + "\n");
    text += &accepted("10:00:01");
    // A probe of the key without a login.
    text += &(decision("Nov 21 11:00:00 web-1 sshjit[3]: ") + "\n");
    // An Accepted line long after the last decision belongs to something else.
    text += &accepted("11:30:00");
    // Another host's decision does not explain web-1's login.
    text += &(decision("Nov 21 11:40:00 web-2 sshjit[4]: ") + "\n");
    text += &accepted("11:40:01");
    let log = read(text.as_bytes(), reference(), None, None).unwrap();
    assert_eq!(log.decisions, 4);
    assert_eq!(log.accepted, 3);
    let u = &log.by_grant["g-1"];
    assert_eq!(u.decisions, 4);
    assert_eq!(u.logins, 1);
    assert_eq!(u.first, Some(local(11, 21, 10, 0, 0)));
    assert_eq!(u.last, Some(local(11, 21, 11, 40, 0)));
    assert_eq!(u.hosts.iter().collect::<Vec<_>>(), ["web-1"]);
    assert_eq!(log.by_grant["g-2"].logins, 1);

    // The period bounds which lines count.
    let since = Some(local(11, 21, 10, 30, 0));
    let log = read(text.as_bytes(), reference(), since, None).unwrap();
    assert_eq!(log.by_grant["g-1"].decisions, 2);
    assert_eq!(log.by_grant["g-1"].logins, 0);
}

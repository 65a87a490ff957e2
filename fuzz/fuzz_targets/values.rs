//! The small parsers on the boundary: RFC 3339 times (round trip),
//! durations, keys, fingerprints, user names, sshd's line grammar (the
//! oracle itself must not panic), policy URLs (round trip) and
//! allowed_signers files.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sshjit::source::{Query, Url};
use sshjit_policy::openssh::allowed_signers::AllowedSigners;
use sshjit_policy::openssh::options::{parse_keys_line, parse_principals_line};
use sshjit_policy::time::{Timestamp, parse_duration};
use sshjit_policy::{AuthorizedKey, Fingerprint, Username, types::parse_serial};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(t) = Timestamp::parse_rfc3339(s) {
        let back = Timestamp::parse_rfc3339(&t.to_rfc3339()).expect("own output parses");
        assert_eq!(back, t);
    }
    let _ = parse_duration(s);
    let _ = parse_serial(s);
    if let Ok(k) = AuthorizedKey::parse(s) {
        let fp = k.fingerprint();
        assert_eq!(Fingerprint::parse(&fp.to_string()).unwrap(), fp);
        assert!(k.same_key(&k));
        assert!(!k.as_str().contains('\n'));
    }
    if let Ok(f) = Fingerprint::parse(s) {
        assert_eq!(f.to_string(), s);
    }
    if let Ok(u) = Username::new(s) {
        assert!(!u.as_str().starts_with('-') && !u.as_str().contains(['/', ' ', '\n', '"', ',']));
    }
    let _ = parse_keys_line(s);
    let _ = parse_principals_line(s);
    if let Ok(u) = Url::parse(s) {
        let shown = u.to_string();
        assert_eq!(Url::parse(&shown).expect("own output parses"), u);
        assert!(u.is_tls() || u.is_loopback());
        let q = Query {
            user: Some(s),
            host: Some(s),
            mode: Some("keys"),
        };
        let request = u.request(&q, ".sig");
        assert!(request.bytes().all(|b| b.is_ascii_graphic()), "{request}");
        assert!(!request.contains('#'));
    }
    let _ = AllowedSigners::parse("fuzz", s, &sshjit_policy::openssh::local_time::Fixed(0));
});

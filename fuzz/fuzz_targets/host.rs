//! Host integration's readers and writer: sshd's auth record (`reap`), the
//! reap rules, and the KRL written from any policy that validates.
//! The first byte picks which; the rest is the input.
//!
//! - auth record: no panic; every credential's fingerprint reads back;
//!   judging it against a small policy never panics and a credential no
//!   grant or revocation can name is never ended;
//! - rules: no panic; every account named is a valid user name;
//! - KRL: the bytes read back section by section as PROTOCOL.krl lays them
//!   out, holding exactly the policy's serials (never 0), key IDs and
//!   fingerprint hashes, sorted and unique.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sshjit::commands::krl::Revoked;
use sshjit::commands::reap::{Rules, Verdict, judge, parse_record};
use sshjit_policy::time::Timestamp;
use sshjit_policy::{Fingerprint, HostName, Policy, Username};

const POLICY: &[u8] = br#"{"version":1,"grants":[
  {"id":"g-k","user":"deploy","key":"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBmhXmfyH35TmVDzfJ+0t0DbYFg88Gcc+UtpLZreAJk9 a@test","expires_at":"2030-01-01T00:00:00Z","reason":"r"},
  {"id":"g-p","user":"deploy","principal":"alice","expires_at":"2030-01-01T00:00:00Z","reason":"r"}],
  "revocations":[{"key_id":"gone"},{"serial":7}]}"#;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 3 {
        0 => auth_record(rest),
        1 => rules(rest),
        _ => krl(rest),
    }
});

fn auth_record(bytes: &[u8]) {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let Ok(creds) = parse_record(text) else {
        return;
    };
    let policy = Policy::parse(POLICY).unwrap();
    let user = Username::new("deploy").unwrap();
    let other = Username::new("nobody").unwrap();
    let host = HostName::new("web-1").unwrap();
    let now = Timestamp::from_unix(1_800_000_000, 0);
    for c in &creds {
        let fp = match c {
            sshjit::commands::reap::Credential::Key { fingerprint }
            | sshjit::commands::reap::Credential::Certificate { fingerprint, .. } => *fingerprint,
        };
        assert_eq!(Fingerprint::parse(&fp.to_string()).unwrap(), fp);
        let _ = judge(&policy, &user, &host, c, now);
        // No grant of `nobody`, and no fingerprint revocation: never ended
        // unless its certificate's key ID or serial is revoked.
        if let Verdict::End { grants, .. } = judge(&policy, &other, &host, c, now) {
            assert!(grants.is_empty());
            assert!(matches!(
                c,
                sshjit::commands::reap::Credential::Certificate { key_id, serial, .. }
                    if key_id == "gone" || *serial == 7
            ));
        }
    }
}

fn rules(bytes: &[u8]) {
    if let Ok(r) = Rules::parse(bytes) {
        for name in r.accounts.keys() {
            assert!(Username::new(name.as_str()).is_ok());
            let _ = r.for_account(name);
        }
    }
}

/// Reads a big-endian u32-length string at `at`.
fn string(b: &[u8], at: &mut usize) -> Vec<u8> {
    let len = u32::from_be_bytes(b[*at..*at + 4].try_into().unwrap()) as usize;
    let s = b[*at + 4..*at + 4 + len].to_vec();
    *at += 4 + len;
    s
}

fn krl(bytes: &[u8]) {
    let Ok(policy) = Policy::parse(bytes) else {
        return;
    };
    let r = Revoked::of(&policy);
    assert!(!r.serials.contains(&0));
    assert!(r.serials.windows(2).all(|w| w[0] < w[1]));
    assert!(r.key_ids.windows(2).all(|w| w[0] < w[1]));
    assert!(r.sha256.windows(2).all(|w| w[0] < w[1]));
    let out = r.encode(3, 4, "c");
    assert_eq!(&out[..8], b"SSHKRL\n\0");
    let mut at = 8 + 4 + 8 + 8 + 8;
    assert!(string(&out, &mut at).is_empty());
    assert_eq!(string(&out, &mut at), b"c");
    let (mut serials, mut ids, mut hashes) = (Vec::new(), Vec::new(), Vec::new());
    while at < out.len() {
        let kind = out[at];
        at += 1;
        let section = string(&out, &mut at);
        match kind {
            1 => {
                let mut s = 0;
                assert!(string(&section, &mut s).is_empty(), "any CA");
                assert!(string(&section, &mut s).is_empty(), "reserved");
                while s < section.len() {
                    let sub = section[s];
                    s += 1;
                    let data = string(&section, &mut s);
                    match sub {
                        0x20 => serials.extend(
                            data.chunks(8)
                                .map(|c| u64::from_be_bytes(c.try_into().unwrap())),
                        ),
                        0x23 => {
                            let mut d = 0;
                            while d < data.len() {
                                ids.push(String::from_utf8(string(&data, &mut d)).unwrap());
                            }
                        }
                        other => panic!("certificate subsection {other:#x}"),
                    }
                }
            }
            5 => {
                let mut d = 0;
                while d < section.len() {
                    let h = string(&section, &mut d);
                    hashes.push(<[u8; 32]>::try_from(h.as_slice()).unwrap());
                }
            }
            other => panic!("section {other}"),
        }
    }
    assert_eq!(at, out.len());
    assert_eq!(serials, r.serials);
    assert_eq!(ids, r.key_ids);
    assert_eq!(hashes, r.sha256);
}

//! The options writer: any grant that validates must render, and sshd's
//! grammar must read back exactly the from, command and restrict we meant
//! (the renderer checks this itself; here it must never fail).
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::json;
use sshjit_policy::Policy;
use sshjit_policy::openssh::options::{parse_keys_line, parse_principals_line};
use sshjit_policy::render::{Expiry, render};
use sshjit_policy::time::Timestamp;

#[derive(Debug, arbitrary::Arbitrary)]
struct Input {
    command: Option<String>,
    from: Vec<String>,
    restrict: bool,
    principal: Option<String>,
    comment: String,
    expires_offset: u32,
}

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBmhXmfyH35TmVDzfJ+0t0DbYFg88Gcc+UtpLZreAJk9";

fuzz_target!(|input: Input| {
    let mut grant = json!({
        "id": "g-1", "user": "u", "reason": "fuzz",
        "expires_at": Timestamp::from_unix(1_800_000_000 + i64::from(input.expires_offset), 0).to_rfc3339(),
    });
    match &input.principal {
        Some(p) => grant["principal"] = json!(p),
        None => grant["key"] = json!(format!("{KEY} {}", input.comment)),
    }
    if let Some(c) = &input.command {
        grant["command"] = json!(c);
    }
    if !input.from.is_empty() {
        grant["from"] = json!(input.from);
    }
    if input.restrict {
        grant["restrict"] = json!(true);
    }
    let doc = serde_json::to_vec(&json!({"version": 1, "grants": [grant]})).unwrap();
    let Ok(policy) = Policy::parse(&doc) else {
        return;
    };
    let valid: Vec<_> = policy.grants.iter().collect();
    let now = Timestamp::from_unix(1_700_000_000, 0);
    let out = render(&valid, Expiry::Utc, now).expect("a valid grant renders");
    let text = String::from_utf8(out.text).unwrap();
    let line = text.strip_suffix('\n').unwrap();
    assert!(!line.contains('\n'));
    let parsed = if input.principal.is_some() {
        parse_principals_line(line)
    } else {
        parse_keys_line(line)
    }
    .unwrap_or_else(|e| panic!("{line:?}: {e}"));
    let g = &policy.grants[0];
    let command = parsed.option("command").and_then(|o| o.value.as_deref());
    assert_eq!(command, g.command.as_ref().map(|c| c.as_str()));
    let from = parsed.option("from").and_then(|o| o.value.clone());
    let expected_from = (!g.from.is_empty()).then(|| {
        g.from
            .iter()
            .map(|p| p.as_str())
            .collect::<Vec<_>>()
            .join(",")
    });
    assert_eq!(from, expected_from);
    assert_eq!(parsed.option("restrict").is_some(), g.restrict);
});

//! The syslog reader of `report --logins`: any local user can write lines
//! with the `sshjit` tag, so no input may panic it (a forged escape once
//! did, suppressing the report). Whole files of any bytes are read; single
//! lines are parsed in every prefix format; and a decision line as the
//! helper writes it (`log::Line`) reads back field for field.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sshjit::commands::logins::{Event, parse_fields, parse_line, read};
use sshjit::log::Line;
use sshjit_policy::time::Timestamp;

fuzz_target!(|data: &[u8]| {
    let reference = Timestamp::from_unix(1_795_000_000, 0);
    let since = Timestamp::from_unix(1_700_000_000, 0);
    // A whole file.
    if let Ok(log) = read(data, reference, Some(since), None) {
        assert!(log.decisions <= log.lines && log.accepted <= log.lines);
        for usage in log.by_grant.values() {
            assert!(usage.logins <= usage.decisions);
        }
    }
    let text = String::from_utf8_lossy(data);
    for line in text.lines() {
        if let Some(Event::Allowed { matched, .. }) = parse_line(line, reference) {
            assert!(matched.iter().all(|id| !id.is_empty()));
        }
        for prefix in [
            "",
            "Nov 21 10:00:00 web-1 sshjit[1]: ",
            "2026-11-21T10:00:00.123+01:00 web-1 sshjit[1]: ",
            "<86>1 2026-11-21T10:00:00Z web-1 sshjit 1 - - ",
            "authpriv.info sshjit[1]: ",
        ] {
            let _ = parse_line(&format!("{prefix}{line}"), reference);
        }
        let _ = parse_fields(line);
    }
    // Round trip: what the helper writes, the reader reads back. C1
    // controls are written as their code point (`\x85`), which reads back
    // as a lone byte: left out; long values are cut by the writer.
    let fields: Vec<(String, String)> = text
        .split('\u{1f}')
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, v)| {
            !k.is_empty()
                && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && v.chars().count() <= 256
                && !v.chars().any(|c| ('\u{80}'..='\u{9f}').contains(&c))
        })
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .take(8)
        .collect();
    let mut line = Line::new();
    for (k, v) in &fields {
        line.field(k, v);
    }
    let back = parse_fields(line.as_str());
    assert_eq!(back.len(), fields.len(), "{:?}", line.as_str());
    for ((k, v), (bk, bv)) in fields.iter().zip(&back) {
        assert_eq!((k.as_str(), v), (*bk, bv), "{:?}", line.as_str());
    }
});

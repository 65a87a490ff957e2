//! What may be shown: values quoted and escaped for a log line or a
//! terminal, and the test for control characters.

/// `"value"` with control characters, quotes and backslashes escaped, cut
/// after `max` characters. Safe to put in a log line or a terminal.
pub fn quote_for_display(value: &str, max: usize) -> String {
    let mut out = String::with_capacity(value.len().min(max) + 2);
    out.push('"');
    for (i, c) in value.chars().enumerate() {
        if i == max {
            out.push_str("...");
            break;
        }
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// True when `s` has no control character (C0, DEL or C1): nothing that could
/// end a line, hide text on a terminal or cut a string short.
pub fn has_no_controls(s: &str) -> bool {
    !s.chars().any(char::is_control)
}

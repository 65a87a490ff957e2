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
            // Invisible characters that reorder or hide text: as their
            // UTF-8 bytes, which a reader of `\xNN` escapes puts back.
            c if is_invisible_format(c) => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("\\x{b:02x}"));
                }
            }
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

/// The invisible format characters that reorder or hide text on a screen:
/// bidi embeddings, overrides, isolates and marks, zero-width characters,
/// line and paragraph separators, the byte order mark, interlinear
/// annotations and tags.
pub fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{061c}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{2069}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffb}'
            | '\u{e0000}'..='\u{e007f}'
    )
}

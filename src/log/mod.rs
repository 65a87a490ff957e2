//! The login path's record: one structured line per decision, to syslog
//! (LOG_AUTHPRIV, ident `sshjit`), or to stderr when there is no syslog
//! socket.

pub mod syslog;

pub use syslog::{Severity, Syslog};

/// Longest value kept in a log line.
const MAX_VALUE: usize = 256;

/// Builds `key=value` pairs; values are bare when they are plain tokens and
/// quoted (with `\"`, `\\` and `\xNN` escapes) otherwise, so that a hostile
/// argument can never forge a field or a line.
#[derive(Debug, Default, Clone)]
pub struct Line {
    text: String,
}

impl Line {
    pub fn new() -> Self {
        Line::default()
    }

    pub fn field(&mut self, key: &str, value: &str) -> &mut Self {
        if !self.text.is_empty() {
            self.text.push(' ');
        }
        self.text.push_str(key);
        self.text.push('=');
        let plain = !value.is_empty()
            && value.len() <= MAX_VALUE
            && value
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"._:/@+=,-".contains(&c));
        if plain {
            self.text.push_str(value);
        } else {
            self.text
                .push_str(&sshjit_policy::text::quote_for_display(value, MAX_VALUE));
        }
        self
    }

    pub fn field_opt(&mut self, key: &str, value: Option<&str>) -> &mut Self {
        if let Some(v) = value {
            self.field(key, v);
        }
        self
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_cannot_forge_fields() {
        let mut l = Line::new();
        l.field("user", "alice")
            .field("fp", "SHA256:abc+/=")
            .field("key_id", "x outcome=allow\nfake")
            .field("empty", "")
            .field_opt("none", None);
        assert_eq!(
            l.as_str(),
            "user=alice fp=SHA256:abc+/= key_id=\"x outcome=allow\\x0afake\" empty=\"\""
        );
    }
}

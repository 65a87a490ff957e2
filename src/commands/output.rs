//! What a command that succeeded prints: its result for stdout and the
//! remarks for stderr. The command line (`cli`) prints them, in one place.

/// A remark for the person at the terminal, on stderr.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", content = "text", rename_all = "snake_case")]
pub enum Remark {
    /// `note: TEXT`
    Note(String),
    /// `warning: TEXT`: something to act on; the command still succeeded.
    Warning(String),
    /// A line of its own (`granted ...`).
    Line(String),
}

impl Remark {
    /// The remark as printed, with its newline.
    pub fn text(&self) -> String {
        match self {
            Remark::Note(m) => format!("note: {m}\n"),
            Remark::Warning(m) => format!("warning: {m}\n"),
            Remark::Line(m) => format!("{m}\n"),
        }
    }
}

/// A command's result.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Output {
    /// For stdout.
    pub text: String,
    /// For stderr, in order, before `text`.
    pub remarks: Vec<Remark>,
    /// Printed, yet refused: the status is 1 (`report` on a trail that
    /// does not verify).
    pub refused: bool,
}

impl Output {
    pub fn text(text: impl Into<String>) -> Self {
        Output {
            text: text.into(),
            ..Output::default()
        }
    }

    pub fn note(&mut self, message: impl Into<String>) -> &mut Self {
        self.remarks.push(Remark::Note(message.into()));
        self
    }

    pub fn warn(&mut self, message: impl Into<String>) -> &mut Self {
        self.remarks.push(Remark::Warning(message.into()));
        self
    }

    pub fn line(&mut self, message: impl Into<String>) -> &mut Self {
        self.remarks.push(Remark::Line(message.into()));
        self
    }
}

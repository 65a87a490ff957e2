//! Walking a whole trail: every record's own hash, the `seq` numbers and
//! `prev` links between records, and the rules between neighbours. Used by
//! `audit verify`, `audit repair` and `report`.

use std::fmt;
use std::io::{self, Read};

use super::tail::{Line, Lines};
use super::trail::{Action, LineError, Record, ZERO_HASH, decode};
use sshjit_policy::time::Timestamp;

/// The first thing wrong with a trail, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Break {
    /// 1-based line number.
    pub line: u64,
    pub problem: Problem,
}

/// What is wrong at a break.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// The line is not a good record (`LineError::Altered`: it was edited).
    Line(LineError),
    /// Records `expected..seq` are missing before record `seq`.
    Missing { expected: u64, seq: u64 },
    /// Record `seq` appears where record `expected` should be.
    OutOfOrder { expected: u64, seq: u64 },
    /// Record `seq`'s `prev` is not the hash of the record before it.
    Unlinked { seq: u64 },
    /// Record `seq` voids a record that is not the change just before it.
    VoidsOther { seq: u64, voided: u64 },
    /// Record `seq` is a change whose serial does not grow.
    SerialNotAbove { seq: u64, serial: u64, before: u64 },
    /// Record `seq` is a change without the serial and hash of its result.
    NoResult { seq: u64 },
}

impl fmt::Display for Break {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.problem {
            Problem::Line(e @ LineError::Altered) => write!(f, "record on line {}: {e}", self.line),
            Problem::Line(e) => write!(f, "line {}: {e}", self.line),
            other => other.fmt(f),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Problem::Line(ref e) => e.fmt(f),
            Problem::Missing { expected, seq } if seq == expected + 1 => write!(
                f,
                "record {expected} is missing before record {seq}: records were removed"
            ),
            Problem::Missing { expected, seq } => write!(
                f,
                "records {expected} to {} are missing before record {seq}: records were removed",
                seq - 1
            ),
            Problem::OutOfOrder { expected, seq } => write!(
                f,
                "record {seq} appears where record {expected} should be: records were duplicated or reordered"
            ),
            Problem::Unlinked { seq } => write!(
                f,
                "record {seq} does not follow the record before it (its prev hash differs): a record before it was altered or replaced"
            ),
            Problem::VoidsOther { seq, voided } => write!(
                f,
                "record {seq} voids record {voided}, which is not the change just before it"
            ),
            Problem::SerialNotAbove {
                seq,
                serial,
                before,
            } => write!(
                f,
                "record {seq} sets serial {serial}, not above the serial {before} before it"
            ),
            Problem::NoResult { seq } => write!(
                f,
                "record {seq} is a change without the serial and hash of its result"
            ),
        }
    }
}

/// What a walk found.
#[derive(Debug, Default)]
pub struct Summary {
    /// Complete, well-chained records before any break.
    pub records: u64,
    pub first_time: Option<Timestamp>,
    pub last_time: Option<Timestamp>,
    /// The last two good records, oldest first.
    pub last: Vec<Record<'static>>,
    /// Bytes after the last `\n` (an append that did not finish) and where
    /// they start.
    pub partial: Option<(u64, Vec<u8>)>,
    /// The last record is complete but lacks its final `\n` (the next
    /// edit adds it).
    pub unterminated: bool,
    /// The first break in the chain; the walk stops there.
    pub broken: Option<Break>,
}

impl Summary {
    pub fn head(&self) -> Option<&Record<'static>> {
        self.last.last()
    }
}

/// Walks every record, calling `each` on the good ones in order.
pub fn walk<R: Read>(reader: R, mut each: impl FnMut(&Record<'_>)) -> io::Result<Summary> {
    let mut lines = Lines::new(reader);
    let mut walk = Summary::default();
    let mut prev_hash = ZERO_HASH.to_owned();
    let mut offset: u64 = 0;
    while let Some((line_no, line)) = lines.next_line()? {
        let bytes = match line {
            Line::Complete(b) => b,
            // A last line that decodes lost only its final newline: its
            // hash covers everything else, so it is a complete record.
            Line::Partial(b) if decode(b).is_ok() => {
                walk.unterminated = true;
                b
            }
            Line::Partial(b) => {
                walk.partial = Some((offset, b.to_vec()));
                break;
            }
        };
        offset += bytes.len() as u64 + 1;
        let fail = |problem| {
            Some(Break {
                line: line_no,
                problem,
            })
        };
        let record = match decode(bytes) {
            Ok(r) => r,
            Err(e) => {
                walk.broken = fail(Problem::Line(e));
                break;
            }
        };
        let expected = walk.records + 1;
        if let Some(problem) = link_problem(&record, expected, &prev_hash, walk.last.last()) {
            walk.broken = fail(problem);
            break;
        }
        each(&record);
        prev_hash = record.hash().to_owned();
        walk.records = expected;
        walk.first_time.get_or_insert(record.time);
        walk.last_time = Some(record.time);
        if walk.last.len() == 2 {
            walk.last.remove(0);
        }
        walk.last.push(record.into_owned());
    }
    Ok(walk)
}

/// What is wrong between a record and the one before it, if anything.
fn link_problem(
    record: &Record<'_>,
    expected: u64,
    prev_hash: &str,
    before: Option<&Record<'static>>,
) -> Option<Problem> {
    let seq = record.seq;
    if seq > expected {
        return Some(Problem::Missing { expected, seq });
    }
    if seq < expected {
        return Some(Problem::OutOfOrder { expected, seq });
    }
    if record.prev != prev_hash {
        return Some(Problem::Unlinked { seq });
    }
    if let Action::Repair {
        voids: Some(voided),
        ..
    } = &record.action
    {
        let voids_previous_edit = before.is_some_and(|b| b.seq == *voided && b.action.is_edit());
        if !voids_previous_edit {
            return Some(Problem::VoidsOther {
                seq,
                voided: *voided,
            });
        }
    }
    if record.action.is_edit() {
        if let (Some(b), Some(s)) = (before.and_then(|b| b.serial), record.serial)
            && s <= b
        {
            return Some(Problem::SerialNotAbove {
                seq,
                serial: s,
                before: b,
            });
        }
        if record.serial.is_none() || record.policy_sha256.is_none() {
            return Some(Problem::NoResult { seq });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::trail::{encode, sha256_hex};
    use sshjit_policy::{Actor, Reason};

    fn record(seq: u64, prev: &str, action: Action<'static>, serial: u64) -> (Vec<u8>, String) {
        let r = Record {
            seq,
            time: Timestamp::from_unix(1_795_255_200 + seq as i64, 0),
            actor: Actor::new("bob").unwrap(),
            os_user: "root".into(),
            sudo_user: None,
            host: "admin-1".into(),
            action,
            serial: Some(serial),
            policy_sha256: Some(sha256_hex(serial.to_string().as_bytes())),
            prev: prev.into(),
            hash: None,
        };
        encode(&r).unwrap()
    }

    fn freeze() -> Action<'static> {
        Action::Freeze {
            reason: Reason::new("INC-1").unwrap(),
        }
    }

    fn thaw() -> Action<'static> {
        Action::Thaw {
            reason: Reason::new("INC-1 over").unwrap(),
        }
    }

    fn chain(n: u64) -> Vec<Vec<u8>> {
        let mut prev = ZERO_HASH.to_owned();
        let mut out = Vec::new();
        for seq in 1..=n {
            let action = if seq % 2 == 1 { freeze() } else { thaw() };
            let (line, hash) = record(seq, &prev, action, seq);
            out.push(line);
            prev = hash;
        }
        out
    }

    fn walk_lines(lines: &[Vec<u8>]) -> Summary {
        walk(lines.concat().as_slice(), |_| {}).unwrap()
    }

    #[test]
    fn problems_read_as_audit_verify_prints_them() {
        let missing = |expected, seq| Problem::Missing { expected, seq }.to_string();
        assert_eq!(
            missing(3, 4),
            "record 3 is missing before record 4: records were removed"
        );
        assert_eq!(
            missing(3, 6),
            "records 3 to 5 are missing before record 6: records were removed"
        );
        let at = |line, problem| Break { line, problem }.to_string();
        assert_eq!(
            at(2, Problem::Line(LineError::Altered)),
            "record on line 2: its contents do not match its hash: it was altered"
        );
        assert_eq!(
            at(2, Problem::Line(LineError::Syntax("x".into()))),
            "line 2: not a trail record: x"
        );
    }

    #[test]
    fn a_good_chain_walks_to_the_end() {
        let w = walk_lines(&chain(5));
        assert_eq!(w.broken, None);
        assert_eq!(w.records, 5);
        assert_eq!(w.head().unwrap().seq, 5);
        assert_eq!(w.last.len(), 2);
        assert!(w.partial.is_none());
    }

    #[test]
    fn an_edited_record_breaks_the_chain_where_it_is() {
        let mut lines = chain(5);
        let text = String::from_utf8(lines[2].clone()).unwrap();
        lines[2] = text.replace("INC-1", "INC-2").into_bytes();
        let w = walk_lines(&lines);
        let b = w.broken.unwrap();
        assert_eq!(b.line, 3);
        assert!(b.to_string().contains("altered"), "{b}");
        assert_eq!(w.records, 2);
    }

    #[test]
    fn a_removed_record_is_named() {
        let mut lines = chain(5);
        lines.remove(2);
        let b = walk_lines(&lines).broken.unwrap();
        assert_eq!(b.line, 3);
        assert!(b.to_string().contains("record 3 is missing"), "{b}");
    }

    #[test]
    fn a_record_rewritten_with_a_fresh_hash_breaks_the_next_link() {
        let mut lines = chain(4);
        let prev1 = decode(lines[0].strip_suffix(b"\n").unwrap())
            .unwrap()
            .hash
            .unwrap();
        // Record 2 recomputed with other contents: its own hash is fine,
        // but record 3 still names the original.
        lines[1] = record(2, &prev1, freeze(), 2).0;
        let b = walk_lines(&lines).broken.unwrap();
        assert_eq!(b.line, 3);
        assert!(b.to_string().contains("does not follow"), "{b}");
    }

    #[test]
    fn an_incomplete_last_line_is_reported_not_fatal() {
        let mut lines = chain(3);
        let cut = lines[2].len() / 2;
        lines[2].truncate(cut);
        let w = walk_lines(&lines);
        assert_eq!(w.broken, None);
        assert_eq!(w.records, 2);
        let (offset, bytes) = w.partial.unwrap();
        assert_eq!(offset, (lines[0].len() + lines[1].len()) as u64);
        assert_eq!(bytes.len(), cut);
    }

    #[test]
    fn serials_must_grow_with_edits() {
        let (l1, h1) = record(1, ZERO_HASH, freeze(), 5);
        let (l2, _) = record(2, &h1, thaw(), 5);
        let b = walk_lines(&[l1, l2]).broken.unwrap();
        assert!(b.to_string().contains("not above"), "{b}");
    }

    #[test]
    fn garbage_is_not_a_record() {
        let mut lines = chain(2);
        lines.insert(1, b"{\"seq\":2}\n".to_vec());
        let b = walk_lines(&lines).broken.unwrap();
        assert_eq!(b.line, 2);
        assert!(b.to_string().contains("not a trail record"), "{b}");
    }
}

//! An edit's session under the lock: the policy and the trail's end as
//! found, how they relate (`trail::diagnose`), the records that mend an
//! interrupted earlier edit, and the append that makes records durable.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::error::{StoreError, io_error};
use super::file::{PolicyFile, TRAIL_MODE, open_trail, read_policy, temp_sha};
use super::tail::{TailBytes, read_tail};
use super::trail::{
    Action, Diagnosis, DocState, Record, ZERO_HASH, decode, diagnose, encode, sha256_hex,
};
use super::who::Who;
use crate::fs::atomic::{self, AtomicError};
use sshjit_policy::time::Timestamp;
use sshjit_policy::{Policy, Reason};

/// The trail record a committed change ended with.
#[derive(Clone, Debug)]
pub struct Committed {
    pub seq: u64,
    pub hash: String,
    pub serial: u64,
    /// What the edit mended on the way (interrupted earlier edits).
    pub repaired: Vec<String>,
    /// The change is in effect, but something after it failed (the
    /// directory's fsync): say so rather than report a failure.
    pub warning: Option<String>,
}

/// Under the lock: the policy, the trail's end and how they relate.
pub struct Session<'t> {
    target: &'t PolicyFile,
    pub policy: Policy<'static>,
    pub current: Option<DocState>,
    trail: Option<File>,
    pub last: Vec<Record<'static>>,
    tail: TailBytes,
    /// The last record is complete but its `\n` is missing.
    unterminated: bool,
    pub diagnosis: Diagnosis,
}

impl<'t> Session<'t> {
    /// Reads everything an edit or a repair decides on. Call with the lock
    /// held. A policy that is not there is refused: editing commands never
    /// create one.
    pub fn open(target: &'t PolicyFile) -> Result<Self, StoreError> {
        Session::open_as(target, false)
    }

    /// For `sshjit init`: there must be no policy; a trail is looked at
    /// by the caller (an init interrupted before its rename leaves one).
    pub fn open_new(target: &'t PolicyFile) -> Result<Self, StoreError> {
        Session::open_as(target, true)
    }

    fn open_as(target: &'t PolicyFile, new: bool) -> Result<Self, StoreError> {
        let bytes = read_policy(target)?;
        match (&bytes, new) {
            (None, false) => return Err(StoreError::NoPolicy(target.policy.clone())),
            (Some(_), true) => return Err(StoreError::Exists(target.policy.clone())),
            _ => {}
        }
        let policy = match &bytes {
            Some(b) => Policy::parse(b)
                .map_err(|error| StoreError::Invalid {
                    path: target.policy.clone(),
                    error: crate::fs::secure::shown(&target.policy, error),
                })?
                .into_owned(),
            None => Policy::empty(),
        };
        let current = bytes.as_ref().map(|b| DocState {
            sha256: sha256_hex(b),
            serial: policy.serial,
        });
        let trail_path = target.trail();
        let mut trail = open_trail(&trail_path)?;
        let mut tail = match trail.as_mut() {
            Some(f) => {
                read_tail(f, 2).map_err(io_error(format!("reading {}", trail_path.display())))?
            }
            None => TailBytes::default(),
        };
        let mut last = Vec::new();
        for line in &tail.lines {
            let record = decode(line).map_err(|error| StoreError::TrailDamaged {
                path: trail_path.clone(),
                error,
            })?;
            last.push(record.into_owned());
        }
        // A last record that lost only its final newline decodes (its hash
        // covers every byte but that newline): it is complete, and the
        // next append adds the newline rather than discarding it.
        let mut unterminated = false;
        if !tail.partial.is_empty()
            && let Ok(record) = decode(&tail.partial)
        {
            last.push(record.into_owned());
            tail.partial.clear();
            unterminated = true;
            let keep = last.len().saturating_sub(2);
            last.drain(..keep);
        }
        if let [a, b] = last.as_slice()
            && (b.seq != a.seq + 1 || b.prev != a.hash())
        {
            return Err(StoreError::TrailUnchained { path: trail_path });
        }
        let tmp = temp_sha(target)?;
        let diagnosis = diagnose(&last, trail.is_some(), current.as_ref(), tmp.as_deref());
        Ok(Session {
            target,
            policy,
            current,
            trail,
            last,
            tail,
            unterminated,
            diagnosis,
        })
    }

    /// The refusal for a trail an edit may not mend on its own.
    pub fn refusal(&self) -> StoreError {
        let explanation = match &self.diagnosis {
            Diagnosis::Mismatch { explanation } => explanation.clone(),
            _ => "the trail needs repair".to_owned(),
        };
        StoreError::TrailMismatch {
            path: self.target.trail(),
            explanation,
        }
    }

    /// Whether a trail file is there.
    pub fn has_trail(&self) -> bool {
        self.trail.is_some()
    }

    /// Whether the trail ends in an incomplete line.
    pub fn has_partial(&self) -> bool {
        !self.tail.partial.is_empty()
    }

    /// The records that mend what the diagnosis found: a `repair` for an
    /// interrupted edit or an incomplete last line, and an `adopt` of the
    /// policy as it is when the trail starts (or, from `audit repair`, when
    /// `adopt` is given), all describing the current document. `note`
    /// starts the repair's reason (the admin's, from `audit repair`).
    pub fn mending_records(
        &self,
        note: Option<&str>,
        adopt: Option<Reason<'static>>,
    ) -> Vec<(Action<'static>, Option<DocState>)> {
        let mut out = Vec::new();
        let voids = match self.diagnosis {
            Diagnosis::Interrupted { seq } => Some(seq),
            _ => None,
        };
        let partial = &self.tail.partial;
        if voids.is_some() || !partial.is_empty() {
            let mut what: Vec<String> = note.map(str::to_owned).into_iter().collect();
            if let Some(seq) = voids {
                what.push(format!(
                    "record {seq} was appended by an edit that stopped before replacing the policy, so it never took effect"
                ));
            }
            if !partial.is_empty() {
                what.push(format!(
                    "an edit stopped while appending its record; its {} incomplete bytes were discarded",
                    partial.len()
                ));
            }
            out.push((
                Action::Repair {
                    reason: reason_text(&what.join("; ")),
                    voids,
                    discarded_bytes: (!partial.is_empty()).then_some(partial.len() as u64),
                    discarded_sha256: (!partial.is_empty()).then(|| sha256_hex(partial)),
                },
                self.current.clone(),
            ));
        }
        let adopt = adopt.or_else(|| {
            (self.diagnosis == Diagnosis::Untracked)
                .then(|| reason_text("the trail starts: the policy as sshjit first found it"))
        });
        if let Some(reason) = adopt {
            out.push((
                Action::Adopt {
                    reason,
                    frozen: self.policy.frozen,
                    grants: self.policy.grants.clone(),
                    revocations: self.policy.revocations.clone(),
                },
                self.current.clone(),
            ));
        }
        out
    }

    /// Appends records (discarding an incomplete last line first) in one
    /// write, and makes them durable before returning.
    pub fn append(
        &mut self,
        who: &Who,
        now: Timestamp,
        records: Vec<(Action<'static>, Option<DocState>)>,
    ) -> Result<Committed, StoreError> {
        let path = self.target.trail();
        let (mut seq, mut prev) = match self.last.last() {
            Some(r) => (r.seq, r.hash().to_owned()),
            None => (0, ZERO_HASH.to_owned()),
        };
        let mut bytes = Vec::new();
        if self.unterminated {
            bytes.push(b'\n');
        }
        let mut serial = 0;
        let mut repaired = Vec::new();
        let mut appended = Vec::new();
        for (action, state) in records {
            seq += 1;
            if let Action::Repair { reason, .. } = &action {
                repaired.push(reason.as_str().to_owned());
            }
            let record = Record {
                seq,
                time: now,
                actor: who.actor.clone(),
                os_user: who.os_user.clone(),
                sudo_user: who.sudo_user.clone(),
                host: who.host.clone(),
                action,
                serial: state.as_ref().and_then(|s| s.serial),
                policy_sha256: state.map(|s| s.sha256),
                prev,
                hash: None,
            };
            serial = record.serial.unwrap_or(0);
            let (line, hash) = encode(&record).map_err(|e| StoreError::Io {
                what: "encoding the trail record".into(),
                error: io::Error::other(e),
            })?;
            bytes.extend_from_slice(&line);
            prev = hash.clone();
            appended.push(Record {
                hash: Some(hash),
                ..record
            });
        }
        let f = match self.trail.take() {
            Some(mut f) => {
                if !self.tail.partial.is_empty() {
                    f.set_len(self.tail.complete_len)
                        .map_err(io_error(format!("truncating {}", path.display())))?;
                }
                f.write_all(&bytes)
                    .and_then(|()| f.sync_data())
                    .map_err(io_error(format!("appending to {}", path.display())))?;
                f
            }
            None => create_trail(&path, &bytes)?,
        };
        self.trail = Some(f);
        self.tail.partial.clear();
        self.unterminated = false;
        self.last.extend(appended);
        let keep = self.last.len().saturating_sub(2);
        self.last.drain(..keep);
        Ok(Committed {
            seq,
            hash: prev,
            serial,
            repaired,
            warning: None,
        })
    }
}

/// Creates the trail with its first records in place: written to a temp
/// file, made durable, then renamed, so that an existing trail always
/// holds a complete record and an empty one can only mean tampering.
fn create_trail(path: &Path, bytes: &[u8]) -> Result<File, StoreError> {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    let options = atomic::Options {
        temp: Some(&tmp),
        ..atomic::Options::mode(TRAIL_MODE)
    };
    // The trail must be durable before the policy it explains: here a
    // failed directory sync is a failure.
    atomic::write(path, bytes, options).map_err(|e| match e {
        AtomicError::Write { path, error } => {
            io_error(format!("writing {}", path.display()))(error)
        }
        AtomicError::Rename { error, .. } => {
            io_error(format!("creating {}", path.display()))(error)
        }
        AtomicError::DirSync { dir, error } => {
            io_error(format!("syncing {}", dir.display()))(error)
        }
    })?;
    OpenOptions::new()
        .read(true)
        .append(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(io_error(format!("opening {}", path.display())))
}

/// A reason from text sshjit composes: cut to the bound, never empty.
pub fn reason_text(text: &str) -> Reason<'static> {
    let mut end = text.len().min(1000);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Reason::new(text[..end].to_owned())
        .or_else(|_| Reason::new("(no reason given)"))
        .expect("a valid reason")
}

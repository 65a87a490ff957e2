//! The single write path of the policy ([`edit`]): lock, re-read, check
//! the trail's end, apply, validate, write the temp file, append the
//! record, rename, sync the directory, index.

use std::path::Path;

use super::error::{StoreError, io_error};
use super::file::{POLICY_MODE, PolicyFile};
use super::lock::{self, Waiting};
use super::session::{Committed, Session};
use super::trail::{Action, DocState, sha256_hex};
use super::who::Who;
use crate::fs::atomic::{self, AtomicError};
use sshjit_policy::Policy;
use sshjit_policy::time::Timestamp;

/// What a change function decided.
pub enum Edit<T> {
    /// Write the changed policy, recorded as `action`.
    Change {
        action: Box<Action<'static>>,
        value: T,
    },
    /// Nothing to write (e.g. already frozen).
    Unchanged(T),
}

impl<T> Edit<T> {
    pub fn change(action: Action<'static>, value: T) -> Self {
        Edit::Change {
            action: Box::new(action),
            value,
        }
    }
}

/// What an edit returned: the change function's value, and the record it
/// committed (`None`: nothing was written).
pub struct Edited<T> {
    pub value: T,
    pub committed: Option<Committed>,
}

/// The single write path of the policy: every command that changes it
/// goes through here. `change` sees the current document (empty when there
/// is no file yet) and changes it or refuses with its own error, which
/// `edit` returns as it is. The serial is bumped here. `waiting` hears if
/// another edit holds the lock for a while.
pub fn edit<T, E: From<StoreError>>(
    target: &PolicyFile,
    who: &Who,
    now: Timestamp,
    waiting: Waiting<'_>,
    change: impl FnOnce(&mut Policy<'static>) -> Result<Edit<T>, E>,
) -> Result<Edited<T>, E> {
    let _lock = lock::exclusive(target, waiting)?;
    let mut session = Session::open(target)?;
    if !session.diagnosis.is_automatic() {
        return Err(session.refusal().into());
    }
    // What mends an earlier interruption, described from the document as
    // found (an adopt record holds it whole).
    let mending = session.mending_records(None, None);
    // Decide first: a refusal or a no-op writes nothing at all.
    let mut policy = std::mem::replace(&mut session.policy, Policy::empty());
    let (action, value) = match change(&mut policy)? {
        Edit::Unchanged(value) => {
            return Ok(Edited {
                value,
                committed: None,
            });
        }
        Edit::Change { action, value } => (*action, value),
    };
    let committed = write(target, who, now, &mut session, mending, policy, action)?;
    Ok(Edited {
        value,
        committed: Some(committed),
    })
}

/// Writes a decided change: the mending records, the temp file, the
/// change's record, the rename, the directory sync and the index.
fn write(
    target: &PolicyFile,
    who: &Who,
    now: Timestamp,
    session: &mut Session<'_>,
    mending: Vec<(Action<'static>, Option<DocState>)>,
    mut policy: Policy<'static>,
    action: Action<'static>,
) -> Result<Committed, StoreError> {
    let serial = policy
        .serial
        .unwrap_or(0)
        .checked_add(1)
        .ok_or(StoreError::SerialExhausted)?;
    policy.serial = Some(serial);
    let document = policy.to_document().map_err(StoreError::Result)?;
    let result = DocState {
        sha256: sha256_hex(&document),
        serial: Some(serial),
    };

    // Mend an earlier interruption before touching the temp file, whose
    // contents are the evidence of that interruption.
    let repaired = if mending.is_empty() {
        Vec::new()
    } else {
        session.append(who, now, mending)?.repaired
    };
    let temp = target.tmp_path();
    let options = atomic::Options {
        temp: Some(&temp),
        ..atomic::Options::mode(POLICY_MODE)
    };
    let pending = atomic::prepare(&target.policy, &document, options).map_err(|e| match e {
        AtomicError::Write { path, error }
        | AtomicError::Rename { path, error }
        | AtomicError::DirSync { dir: path, error } => {
            io_error(format!("writing {}", path.display()))(error)
        }
    })?;
    let mut committed = match session.append(who, now, vec![(action, Some(result))]) {
        Ok(c) => c,
        Err(e) => {
            // The record may be in the trail already: the temp file is
            // then what tells the next edit that this one never took
            // effect (`temp_sha`), so it stays, as after a crash.
            std::mem::forget(pending);
            return Err(e);
        }
    };
    committed.warning = match pending.commit() {
        Ok(()) => None,
        // From here the change is in effect: a failure is a warning, not a
        // refusal the admin would retry.
        Err(e @ AtomicError::DirSync { .. }) => Some(format!(
            "the change is in effect, but it may not survive a power cut: {e}"
        )),
        Err(AtomicError::Write { error, .. } | AtomicError::Rename { error, .. }) => {
            return Err(io_error(format!("replacing {}", target.policy.display()))(
                error,
            ));
        }
    };
    index(&target.policy, &mut committed);
    committed.repaired = repaired;
    Ok(committed)
}

/// The login path's index of the new document, built under the lock. A
/// failure costs only speed: the old index no longer matches the file, so
/// the helper reads the whole document until `sshjit index` succeeds.
fn index(policy: &Path, committed: &mut Committed) {
    if let Err(e) = crate::index::write_for(policy) {
        let w = format!(
            "the change is in effect, but its index was not written ({e}): run `sshjit index`"
        );
        committed.warning = Some(match committed.warning.take() {
            Some(prev) => format!("{prev}; {w}"),
            None => w,
        });
    }
}

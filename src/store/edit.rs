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
use sshjit_policy::time::Timestamp;
use sshjit_policy::{Policy, Reason};

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
/// goes through here. `change` sees the current document and changes it
/// or refuses with its own error, which `edit` returns as it is. The
/// serial is bumped here. `waiting` hears if another edit holds the lock
/// for a while. A policy that is not there is refused before anything is
/// created (lock, directories): only [`create`] makes a new one.
pub fn edit<T, E: From<StoreError>>(
    target: &PolicyFile,
    who: &Who,
    now: Timestamp,
    waiting: Waiting<'_>,
    change: impl FnOnce(&mut Policy<'static>) -> Result<Edit<T>, E>,
) -> Result<Edited<T>, E> {
    target.require_existing()?;
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
    let serial = policy
        .serial
        .unwrap_or(0)
        .checked_add(1)
        .ok_or(StoreError::SerialExhausted)?;
    let committed = write(
        target,
        who,
        now,
        &mut session,
        mending,
        policy,
        action,
        serial,
    )?;
    Ok(Edited {
        value,
        committed: Some(committed),
    })
}

/// `sshjit init`: creates a new, empty policy (serial 0) and its trail,
/// whose first record adopts that empty document with `reason`. Only
/// where nothing is (no policy, no symlink, no trail), only under a name
/// ending in `.json`, and the directories above it only with
/// `make_dirs` (the configured location).
pub fn create(
    target: &PolicyFile,
    who: &Who,
    now: Timestamp,
    reason: Reason<'static>,
    make_dirs: bool,
) -> Result<Committed, StoreError> {
    let named_json = target
        .policy
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.len() > ".json".len() && n.ends_with(".json"));
    if !named_json {
        return Err(StoreError::NotJsonName(target.policy.clone()));
    }
    if target.require_existing().is_ok() {
        return Err(StoreError::Exists(target.policy.clone()));
    }
    let dir = target.dir();
    if make_dirs {
        // Nothing is made under a directory the helper would refuse.
        let existing = dir.ancestors().find(|d| d.exists()).unwrap_or(dir);
        crate::fs::secure::check_directory(existing).map_err(StoreError::Insecure)?;
        lock::create_dirs(dir)?;
    } else if !dir.is_dir() {
        return Err(StoreError::NoDirectory(dir.to_owned()));
    }
    let _lock = lock::exclusive(target, None)?;
    let mut session = Session::open_new(target)?;
    if session.has_trail() {
        return finish_init(target, &session);
    }
    let action = Action::Adopt {
        reason,
        frozen: false,
        grants: Vec::new(),
        revocations: Vec::new(),
    };
    // Serial 0: the first change is serial 1.
    write(
        target,
        who,
        now,
        &mut session,
        Vec::new(),
        Policy::empty(),
        action,
        0,
    )
}

/// An init killed between its trail's rename and its policy's leaves a
/// trail whose one record adopts the empty document (serial 0) and no
/// policy: writing that document finishes it. Any other trail without its
/// policy is someone else's history, and refused.
fn finish_init(target: &PolicyFile, session: &Session<'_>) -> Result<Committed, StoreError> {
    let orphan = || StoreError::OrphanTrail(target.trail());
    let [record] = session.last.as_slice() else {
        return Err(orphan());
    };
    let empty = matches!(
        &record.action,
        Action::Adopt { frozen: false, grants, revocations, .. }
            if grants.is_empty() && revocations.is_empty()
    );
    let mut policy = Policy::empty();
    policy.serial = Some(0);
    let document = policy.to_document().map_err(StoreError::Result)?;
    let sha = sha256_hex(&document);
    if record.seq != 1
        || !empty
        || record.serial != Some(0)
        || record.policy_sha256.as_deref() != Some(sha.as_str())
        || session.has_partial()
    {
        return Err(orphan());
    }
    let temp = target.tmp_path();
    let options = atomic::Options {
        temp: Some(&temp),
        ..atomic::Options::mode(POLICY_MODE)
    };
    atomic::write(&target.policy, &document, options).map_err(|e| StoreError::Io {
        what: format!("writing {}", target.policy.display()),
        error: std::io::Error::other(e.to_string()),
    })?;
    let mut committed = Committed {
        seq: record.seq,
        hash: record.hash().to_owned(),
        serial: 0,
        repaired: vec!["finished an init that stopped before writing the policy".into()],
        warning: None,
    };
    index(&target.policy, &mut committed);
    Ok(committed)
}

/// Writes a decided change: the mending records, the temp file, the
/// change's record, the rename, the directory sync and the index.
#[allow(clippy::too_many_arguments)]
fn write(
    target: &PolicyFile,
    who: &Who,
    now: Timestamp,
    session: &mut Session<'_>,
    mending: Vec<(Action<'static>, Option<DocState>)>,
    mut policy: Policy<'static>,
    action: Action<'static>,
    serial: u64,
) -> Result<Committed, StoreError> {
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
    // The new document's index goes in place first, so that no login
    // finds the new policy without an index of its contents (until the
    // rename, it matches by the document's SHA-256; `settle` then gives it
    // the renamed file's identity).
    let prebuilt =
        crate::index::prebuild(&target.policy, pending.temp_metadata(), &policy, &document);
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
    match prebuilt {
        Ok(bytes) => {
            if let Err(e) = crate::index::settle(&target.policy, bytes) {
                index_warning(&mut committed, &e);
            }
        }
        Err(_) => index(&target.policy, &mut committed),
    }
    committed.repaired = repaired;
    Ok(committed)
}

/// The login path's index of the new document, built under the lock. A
/// failure costs only speed: the old index no longer matches the file, so
/// the helper reads the whole document until `sshjit index` succeeds.
fn index(policy: &Path, committed: &mut Committed) {
    if let Err(e) = crate::index::write_for(policy, None) {
        index_warning(committed, &e);
    }
}

fn index_warning(committed: &mut Committed, e: &std::io::Error) {
    let w =
        format!("the change is in effect, but its index was not written ({e}): run `sshjit index`");
    committed.warning = Some(match committed.warning.take() {
        Some(prev) => format!("{prev}; {w}"),
        None => w,
    });
}

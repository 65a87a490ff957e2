//! The one way the policy file is written. [`edit`] takes the lock (`lock`),
//! re-reads the policy, checks the trail's end against it, applies the
//! change, validates the result, writes a temp file and fsyncs it, appends
//! the trail record(s) and fsyncs them, renames the temp file over the
//! policy and fsyncs the directory.
//!
//! The trail record is appended *before* the rename: a change never takes
//! effect without its record. `kill -9` at any point therefore leaves the
//! policy old or new (rename is atomic) and the trail either consistent
//! with it or ending in one of two states that only an interrupted edit
//! produces and that the next edit mends on its own, with a `repair`
//! record: an incomplete last line (the append stopped), or a last record
//! whose document is still in the temp file (the rename never happened).

pub mod chain;
pub mod history;
pub mod lock;
pub mod trail;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::commands::Who;
use crate::fs::secure::{self as file, FileError};
use sshjit_policy::time::Timestamp;
use sshjit_policy::{MAX_DOCUMENT_BYTES, Policy, PolicyError, Reason};
use trail::{
    Action, Diagnosis, DocState, Record, TailBytes, ZERO_HASH, decode, diagnose, encode, read_tail,
    sha256_hex, trail_path,
};

/// The policy's mode: readable by the helper's account, writable by its owner only.
pub const POLICY_MODE: u32 = 0o644;
/// The trail's mode: it holds the history of every key and reason.
pub const TRAIL_MODE: u32 = 0o640;

/// The policy file an admin command works on, and the files beside it.
#[derive(Clone, Debug)]
pub struct PolicyFile {
    /// The file itself, symlinks resolved: an edit replaces the file, never
    /// a symlink to it.
    pub policy: PathBuf,
}

impl PolicyFile {
    /// Resolves the path given on the command line or in the config.
    pub fn resolve(path: &Path) -> Result<PolicyFile, StoreError> {
        let io_err = |error| StoreError::Io {
            what: format!("resolving {}", path.display()),
            error,
        };
        let absolute = std::path::absolute(path).map_err(io_err)?;
        let policy = match fs::symlink_metadata(&absolute) {
            Ok(_) => fs::canonicalize(&absolute).map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => StoreError::Refused(format!(
                    "{} is a symlink to a missing file: point it at the policy or remove it",
                    path.display()
                )),
                _ => io_err(e),
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let name = absolute.file_name().ok_or_else(|| {
                    StoreError::Refused(format!("{} names no file", path.display()))
                })?;
                match absolute.parent().map(fs::canonicalize) {
                    Some(Ok(dir)) => dir.join(name),
                    _ => absolute.clone(),
                }
            }
            Err(e) => return Err(io_err(e)),
        };
        Ok(PolicyFile { policy })
    }

    pub fn trail(&self) -> PathBuf {
        trail_path(&self.policy)
    }

    pub fn dir(&self) -> &Path {
        self.policy.parent().unwrap_or(Path::new("/"))
    }

    fn sibling(&self, suffix: &str) -> PathBuf {
        let mut name = self.policy.file_name().unwrap_or_default().to_owned();
        name.push(suffix);
        self.policy.with_file_name(name)
    }

    pub fn lock_path(&self) -> PathBuf {
        self.sibling(".lock")
    }

    pub fn tmp_path(&self) -> PathBuf {
        self.sibling(".tmp")
    }
}

/// Why nothing was written.
#[derive(Debug)]
pub enum StoreError {
    /// The change itself was refused (a message for the admin).
    Refused(String),
    /// The existing policy (or its directory) fails the helper's checks.
    Insecure(FileError),
    /// The existing policy does not validate.
    Invalid { path: PathBuf, error: PolicyError },
    /// The changed document would not validate.
    Result(PolicyError),
    /// The trail does not match the policy and needs an admin.
    Trail(String),
    /// Reading or writing failed.
    Io { what: String, error: io::Error },
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Refused(m) => f.write_str(m),
            StoreError::Insecure(e) => e.fmt(f),
            StoreError::Invalid { path, error } => write!(
                f,
                "the policy {} is invalid ({error}); fix or restore it first (`sshjit check` shows where)",
                path.display()
            ),
            StoreError::Result(e) => write!(f, "the changed policy would not validate: {e}"),
            StoreError::Trail(m) => f.write_str(m),
            StoreError::Io { what, error } => write!(f, "{what}: {error}"),
        }
    }
}

impl StoreError {
    /// True for failures of the machine rather than refusals.
    pub fn is_internal(&self) -> bool {
        matches!(self, StoreError::Io { .. })
    }
}

pub(super) fn io_error(what: impl Into<String>) -> impl FnOnce(io::Error) -> StoreError {
    let what = what.into();
    move |error| StoreError::Io { what, error }
}

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

pub struct Edited<T> {
    pub value: T,
    pub committed: Option<Committed>,
}

/// The single write path of the policy: every command that changes it
/// goes through here. `change` sees the current document (empty when there
/// is no file yet) and changes it or refuses; its `Err` is a refusal
/// message. The serial is bumped here.
pub fn edit<T>(
    target: &PolicyFile,
    who: &Who,
    now: Timestamp,
    change: impl FnOnce(&mut Policy<'static>) -> Result<Edit<T>, String>,
) -> Result<Edited<T>, StoreError> {
    let _lock = lock::lock(target)?;
    let mut session = Session::open(target)?;
    if !session.diagnosis.is_automatic() {
        return Err(session.refusal());
    }
    // What mends an earlier interruption, described from the document as
    // found (an adopt record holds it whole).
    let mending = session.mending_records(None, None);
    // Decide first: a refusal or a no-op writes nothing at all.
    let mut policy = std::mem::replace(&mut session.policy, Policy::empty());
    let (action, value) = match change(&mut policy).map_err(StoreError::Refused)? {
        Edit::Unchanged(value) => {
            return Ok(Edited {
                value,
                committed: None,
            });
        }
        Edit::Change { action, value } => (*action, value),
    };
    let serial =
        policy.serial.unwrap_or(0).checked_add(1).ok_or_else(|| {
            StoreError::Refused("the policy's serial cannot grow any further".into())
        })?;
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
    write_temp(target, &document)?;
    let mut committed = session.append(who, now, vec![(action, Some(result))])?;
    fs::rename(target.tmp_path(), &target.policy)
        .map_err(io_error(format!("replacing {}", target.policy.display())))?;
    // From here the change is in effect: a failure is a warning, not a
    // refusal the admin would retry.
    committed.warning = sync_dir(target.dir())
        .err()
        .map(|e| format!("the change is in effect, but it may not survive a power cut: {e}"));
    // The login path's index of the new document, built under the lock. A
    // failure costs only speed: the old index no longer matches the file,
    // so the helper reads the whole document until `sshjit index` succeeds.
    if let Err(e) = crate::index::write_for(&target.policy) {
        let w = format!(
            "the change is in effect, but its index was not written ({e}): run `sshjit index`"
        );
        committed.warning = Some(match committed.warning.take() {
            Some(prev) => format!("{prev}; {w}"),
            None => w,
        });
    }
    committed.repaired = repaired;
    Ok(Edited {
        value,
        committed: Some(committed),
    })
}

/// Reads the policy as the helper would (same ownership and permission
/// checks); `None` when there is none yet.
pub fn read_policy(target: &PolicyFile) -> Result<Option<Vec<u8>>, StoreError> {
    match file::read_secure(&target.policy, MAX_DOCUMENT_BYTES) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(FileError::NotFound(_)) => {
            file::check_directory(target.dir()).map_err(StoreError::Insecure)?;
            Ok(None)
        }
        Err(e) => Err(StoreError::Insecure(e)),
    }
}

/// Opens the trail for reading and appending, after the same checks as the
/// policy; `None` when there is none yet.
pub fn open_trail(path: &Path) -> Result<Option<File>, StoreError> {
    open_trail_as(path, true)
}

/// Opens the trail for reading only (an auditor need not be able to write it).
pub fn read_trail(path: &Path) -> Result<Option<File>, StoreError> {
    open_trail_as(path, false)
}

fn open_trail_as(path: &Path, append: bool) -> Result<Option<File>, StoreError> {
    let opened = OpenOptions::new()
        .read(true)
        .append(append)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path);
    let f = match opened {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(format!("opening {}", path.display()))(e)),
    };
    file::check_open_file(path, &f).map_err(StoreError::Insecure)?;
    Ok(Some(f))
}

/// The document an interrupted edit left in the temp file, by hash.
pub fn temp_sha(target: &PolicyFile) -> Result<Option<String>, StoreError> {
    let path = target.tmp_path();
    let opened = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path);
    let f = match opened {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        // A symlink or something odd: not ours, so it proves nothing.
        Err(_) => return Ok(None),
    };
    if !f.metadata().is_ok_and(|m| m.is_file()) {
        return Ok(None);
    }
    let mut bytes = Vec::new();
    f.take(MAX_DOCUMENT_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io_error(format!("reading {}", path.display())))?;
    Ok(Some(sha256_hex(&bytes)))
}

/// Under the lock: the policy, the trail's end and how they relate.
pub struct Session<'t> {
    target: &'t PolicyFile,
    pub policy: Policy<'static>,
    pub current: Option<DocState>,
    trail: Option<File>,
    pub last: Vec<Record<'static>>,
    tail: TailBytes,
    pub diagnosis: Diagnosis,
}

impl<'t> Session<'t> {
    /// Reads everything an edit or a repair decides on. Call with the lock held.
    pub fn open(target: &'t PolicyFile) -> Result<Self, StoreError> {
        let bytes = read_policy(target)?;
        let policy = match &bytes {
            Some(b) => Policy::parse(b)
                .map_err(|error| StoreError::Invalid {
                    path: target.policy.clone(),
                    error,
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
        let tail = match trail.as_mut() {
            Some(f) => {
                read_tail(f, 2).map_err(io_error(format!("reading {}", trail_path.display())))?
            }
            None => TailBytes::default(),
        };
        let mut last = Vec::new();
        for line in &tail.lines {
            let record = decode(line).map_err(|e| {
                StoreError::Trail(format!(
                    "the end of the trail {} is damaged ({e}); nothing was changed. Run `sshjit audit verify` for details",
                    trail_path.display()
                ))
            })?;
            last.push(record.into_owned());
        }
        if let [a, b] = last.as_slice()
            && (b.seq != a.seq + 1 || b.prev != a.hash())
        {
            return Err(StoreError::Trail(format!(
                "the last two records of the trail {} do not chain; nothing was changed. Run `sshjit audit verify` for details",
                trail_path.display()
            )));
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
            diagnosis,
        })
    }

    /// The refusal for a trail an edit may not mend on its own.
    pub fn refusal(&self) -> StoreError {
        let explanation = match &self.diagnosis {
            Diagnosis::Mismatch { explanation } => explanation.as_str(),
            _ => "the trail needs repair",
        };
        StoreError::Trail(format!(
            "the trail {} does not match the policy: {explanation}. Nothing was changed. \
             Check what happened (`sshjit audit verify`), then record the policy as it is with \
             `sshjit audit repair --reason TEXT`",
            self.target.trail().display()
        ))
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
            None => create_trail(self.target, &path, &bytes)?,
        };
        self.trail = Some(f);
        self.tail.partial.clear();
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
fn create_trail(target: &PolicyFile, path: &Path, bytes: &[u8]) -> Result<File, StoreError> {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error(format!("removing {}", tmp.display()))(e)),
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(TRAIL_MODE)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)
        .map_err(io_error(format!("creating {}", tmp.display())))?;
    f.set_permissions(fs::Permissions::from_mode(TRAIL_MODE))
        .and_then(|()| f.write_all(bytes))
        .and_then(|()| f.sync_all())
        .map_err(io_error(format!("writing {}", tmp.display())))?;
    fs::rename(&tmp, path).map_err(io_error(format!("creating {}", path.display())))?;
    // The trail must be durable before the policy it explains.
    sync_dir(target.dir())?;
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

/// Writes the new document to `policy.json.tmp`, mode 0644 whatever the
/// umask, and makes it durable.
fn write_temp(target: &PolicyFile, document: &[u8]) -> Result<(), StoreError> {
    let path = target.tmp_path();
    match fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error(format!("removing {}", path.display()))(e)),
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(POLICY_MODE)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)
        .map_err(io_error(format!("creating {}", path.display())))?;
    f.set_permissions(fs::Permissions::from_mode(POLICY_MODE))
        .and_then(|()| f.write_all(document))
        .and_then(|()| f.sync_all())
        .map_err(io_error(format!("writing {}", path.display())))
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(format!("syncing {}", dir.display())))
}

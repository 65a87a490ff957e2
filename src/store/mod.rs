//! The one way the policy file is written. `edit` takes the lock (`lock`),
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
//!
//! Layout: `edit` (the write path), `session` (what an edit reads under
//! the lock, and the append), `file` (the policy and the files beside it),
//! `lock`, `trail` (the record format; `request`: what it records of
//! sshjit-server's access requests), `tail` (reading a trail's lines), `chain` (walking a whole trail),
//! `history` (the trail replayed for `report`), `who` and `revocation`
//! (what the commands and the history share), `error`. The store never
//! prints and knows nothing of the commands above it.

pub mod chain;
pub mod edit;
pub mod error;
pub mod file;
pub mod history;
pub mod lock;
pub mod request;
pub mod revocation;
pub mod session;
pub mod tail;
pub mod trail;
pub mod who;

pub use edit::{Edit, Edited, create, edit};
pub use error::StoreError;
pub use file::{
    POLICY_MODE, PolicyFile, TRAIL_MODE, open_trail, read_policy, read_trail, temp_sha,
};
pub use revocation::RevocationRule;
pub use session::{Committed, Session, reason_text};
pub use who::Who;

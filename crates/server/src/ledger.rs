//! The policy as the trail makes it, held in memory: every answer to a
//! host is read from here, never from the database, and every change is
//! made here first and then appended to the store with its record.
//!
//! A [`View`] is one consistent state: the last record's number and hash,
//! the policy after it, and the hosts' token hashes. It is replaced whole
//! (readers keep the `Arc` they took). [`Ledger::catch_up`] reads the
//! records other writers appended (another server on the same PostgreSQL,
//! or `sshjit-server host add` run beside a running server), checks each
//! one's hash and link, and replays it onto the policy. [`Ledger::commit`]
//! decides a change against the current view, appends its record with the
//! next number, and on a conflict (another server appended that number)
//! catches up and decides again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use sshjit::store::Who;
use sshjit::store::trail::{self, Action, Record, ZERO_HASH};
use sshjit_policy::time::Timestamp;
use sshjit_policy::{HostName, Policy};
use tokio::sync::watch;

use crate::store::{Append, Checkpoint, Effect, Store, StoreError, StoredRecord};

/// A checkpoint of the whole document is written with every this many
/// records, so a start replays at most that many.
const CHECKPOINT_EVERY: u64 = 256;
/// Attempts of one change against other writers before giving up.
const MAX_ATTEMPTS: u32 = 16;
/// Records read from the store at a time while catching up.
const BATCH: u32 = 512;

/// One consistent state of the trail and what it makes.
pub struct View {
    /// The last record's number (0: none yet) and hash.
    pub seq: u64,
    pub head: String,
    pub serial: u64,
    /// Shared by the views that follow records which leave it unchanged.
    pub policy: Arc<Policy<'static>>,
    /// Each user's grants, by index into `policy.grants`.
    pub by_user: Arc<HashMap<String, Vec<usize>>>,
    /// SHA-256 of the policy document (`to_document`) at this state.
    pub document_sha256: String,
    /// Enrolled hosts by the SHA-256 of their token.
    pub hosts: Arc<HashMap<String, HostName<'static>>>,
    /// Answers already built and signed for this state.
    pub answers: crate::answer::Cache,
}

impl View {
    fn empty() -> View {
        let policy = Policy::empty();
        View {
            seq: 0,
            head: ZERO_HASH.to_owned(),
            serial: 0,
            document_sha256: document_sha(&policy, 0).unwrap_or_default(),
            by_user: Arc::new(HashMap::new()),
            policy: Arc::new(policy),
            hosts: Arc::new(HashMap::new()),
            answers: crate::answer::Cache::default(),
        }
    }

    /// The same state with the policy replaced.
    fn with_policy(
        policy: Policy<'static>,
    ) -> (Arc<Policy<'static>>, Arc<HashMap<String, Vec<usize>>>) {
        let mut by_user: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, g) in policy.grants.iter().enumerate() {
            by_user.entry(g.user.to_string()).or_default().push(i);
        }
        (Arc::new(policy), Arc::new(by_user))
    }
}

/// The document a record's `policy_sha256` describes: the policy with the
/// record's serial, in the policy file's canonical form.
fn document(policy: &Policy<'static>, serial: u64) -> Result<Vec<u8>, LedgerError> {
    if policy.serial == Some(serial) {
        return policy
            .to_document()
            .map_err(|e| LedgerError::Invalid(format!("the resulting policy: {e}")));
    }
    let mut p = policy.clone();
    p.serial = Some(serial);
    p.to_document()
        .map_err(|e| LedgerError::Invalid(format!("the resulting policy: {e}")))
}

fn document_sha(policy: &Policy<'static>, serial: u64) -> Result<String, LedgerError> {
    Ok(trail::sha256_hex(&document(policy, serial)?))
}

/// What a change decided against the current view.
pub enum Decision<T> {
    /// Nothing to write.
    Unchanged(T),
    /// Append `action`; `policy` is the document after it when the action
    /// changes it (its serial becomes the next one, or its own when that is
    /// higher); `effect` is what it changes besides.
    Change {
        action: Box<Action<'static>>,
        policy: Option<Box<Policy<'static>>>,
        effect: Effect,
        value: T,
    },
}

/// Why a change was not made.
#[derive(Debug)]
pub enum LedgerError {
    Store(StoreError),
    /// The trail in the store does not verify (a record altered, a link
    /// broken, a record that does not fit the document before it).
    Broken(String),
    /// The result would not be a valid policy.
    Invalid(String),
    /// Other writers kept appending first.
    Busy,
}

impl std::fmt::Display for LedgerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LedgerError::Store(e) => e.fmt(f),
            LedgerError::Broken(m) => write!(f, "the trail does not verify: {m}"),
            LedgerError::Invalid(m) => f.write_str(m),
            LedgerError::Busy => f.write_str("other servers kept changing the policy: try again"),
        }
    }
}

impl std::error::Error for LedgerError {}

impl From<StoreError> for LedgerError {
    fn from(e: StoreError) -> Self {
        LedgerError::Store(e)
    }
}

/// A change that was made: its record.
#[derive(Clone, Debug)]
pub struct Committed {
    pub seq: u64,
    pub serial: u64,
    pub hash: String,
    pub record: Record<'static>,
}

pub struct Ledger {
    store: Store,
    view: RwLock<Arc<View>>,
    /// One writer at a time in this server.
    writer: tokio::sync::Mutex<()>,
    /// The current serial, for long polls waiting for a change.
    changes: watch::Sender<u64>,
    /// When the view was last confirmed current against the store.
    confirmed: Mutex<Instant>,
    /// This server's host name, for the records it writes.
    host: String,
}

impl Ledger {
    /// Loads the trail from the store: the latest checkpoint, then the
    /// records after it, every one checked.
    pub async fn open(store: Store) -> Result<Ledger, LedgerError> {
        let host = sshjit::system::hostname().unwrap_or_else(|_| "unknown".into());
        let (tx, _) = watch::channel(0);
        let ledger = Ledger {
            store,
            view: RwLock::new(Arc::new(View::empty())),
            writer: tokio::sync::Mutex::new(()),
            changes: tx,
            confirmed: Mutex::new(Instant::now()),
            host,
        };
        let last = ledger.store.last_seq().await?;
        if let Some(cp) = ledger.store.checkpoint(last).await? {
            let start = ledger.view_at(cp).await?;
            ledger.install(start);
        }
        ledger.catch_up().await?;
        Ok(ledger)
    }

    /// The view a checkpoint gives: its document, and the hash of its
    /// record (the link the next record must name).
    async fn view_at(&self, cp: Checkpoint) -> Result<View, LedgerError> {
        let policy = Policy::parse(&cp.document)
            .map_err(|e| LedgerError::Broken(format!("checkpoint {}: {e}", cp.seq)))?
            .into_owned();
        let record = self
            .store
            .records_after(cp.seq - 1, 1)
            .await?
            .into_iter()
            .next()
            .filter(|r| r.seq == cp.seq)
            .ok_or_else(|| LedgerError::Broken(format!("checkpoint {} has no record", cp.seq)))?;
        let decoded = decode(&record)?;
        let serial = policy.serial.unwrap_or(0);
        if decoded.policy_sha256.as_deref() != Some(trail::sha256_hex(&cp.document).as_str()) {
            return Err(LedgerError::Broken(format!(
                "checkpoint {} does not match its record's policy_sha256",
                cp.seq
            )));
        }
        let (policy, by_user) = View::with_policy(policy);
        Ok(View {
            seq: cp.seq,
            head: record.hash,
            serial,
            document_sha256: trail::sha256_hex(&cp.document),
            policy,
            by_user,
            hosts: Arc::new(self.load_hosts().await?),
            answers: Default::default(),
        })
    }

    async fn load_hosts(&self) -> Result<HashMap<String, HostName<'static>>, LedgerError> {
        let mut hosts = HashMap::new();
        for h in self.store.hosts().await? {
            let name = HostName::new(h.name)
                .map_err(|e| LedgerError::Broken(format!("hosts table: {e}")))?;
            hosts.insert(h.token_sha256, name.into_owned());
        }
        Ok(hosts)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The current view.
    pub fn view(&self) -> Arc<View> {
        Arc::clone(&self.view.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// How long ago the view was last confirmed current.
    pub fn lag(&self) -> Duration {
        self.confirmed.lock().map_or(Duration::MAX, |t| t.elapsed())
    }

    /// Waits for the serial to differ from `serial`, at most `timeout`.
    pub async fn wait_change(&self, serial: u64, timeout: Duration) -> bool {
        let mut rx = self.changes.subscribe();
        let waited = tokio::time::timeout(timeout, rx.wait_for(|s| *s != serial)).await;
        matches!(waited, Ok(Ok(_)))
    }

    fn install(&self, view: View) {
        let serial = view.serial;
        *self.view.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(view);
        self.confirm();
        self.changes.send_replace(serial);
    }

    fn confirm(&self) {
        if let Ok(mut t) = self.confirmed.lock() {
            *t = Instant::now();
        }
    }

    /// Reads and replays every record appended since the view's; confirms
    /// the view current when there are none.
    pub async fn catch_up(&self) -> Result<(), LedgerError> {
        loop {
            let view = self.view();
            let batch = self.store.records_after(view.seq, BATCH).await?;
            if batch.is_empty() {
                self.confirm();
                return Ok(());
            }
            let (mut seq, mut head, mut serial) = (view.seq, view.head.clone(), view.serial);
            // The policy is copied only when a record changes it.
            let mut working: Option<Policy<'static>> = None;
            let mut document_sha256 = view.document_sha256.clone();
            let mut hosts_changed = false;
            let last = batch.len() - 1;
            for (i, stored) in batch.iter().enumerate() {
                let record = decode(stored)?;
                if record.seq != seq + 1 || record.prev != head {
                    return Err(LedgerError::Broken(format!(
                        "record {} does not follow record {seq} ({head})",
                        record.seq
                    )));
                }
                if record.action.is_edit() || matches!(record.action, Action::Adopt { .. }) {
                    let policy = working.get_or_insert_with(|| (*view.policy).clone());
                    record
                        .action
                        .apply(policy)
                        .map_err(|e| LedgerError::Broken(format!("record {}: {e}", record.seq)))?;
                }
                hosts_changed |= matches!(
                    record.action,
                    Action::HostAdd { .. } | Action::HostRemove { .. }
                );
                seq = record.seq;
                head = stored.hash.clone();
                serial = record.serial.unwrap_or(serial);
                // The document each record describes is checked at the
                // end of a batch (hashing it per record would cost more
                // than the replay itself when catching up a long way).
                if i == last {
                    let sha = match &mut working {
                        Some(p) => {
                            p.serial = Some(serial);
                            document_sha(p, serial)?
                        }
                        None => document_sha(&view.policy, serial)?,
                    };
                    if record.policy_sha256.as_deref() != Some(sha.as_str()) {
                        return Err(LedgerError::Broken(format!(
                            "replaying to record {} gives a document other than the one it records",
                            record.seq
                        )));
                    }
                    document_sha256 = sha;
                }
            }
            let (policy, by_user) = match working {
                Some(p) => View::with_policy(p),
                None => (Arc::clone(&view.policy), Arc::clone(&view.by_user)),
            };
            let hosts = if hosts_changed {
                Arc::new(self.load_hosts().await?)
            } else {
                Arc::clone(&view.hosts)
            };
            let next = View {
                seq,
                head,
                serial,
                policy,
                by_user,
                document_sha256,
                hosts,
                answers: Default::default(),
            };
            self.install(next);
        }
    }

    /// Follows other writers until the process ends: wakes on the store's
    /// notifications (PostgreSQL) or every `every`, and catches up.
    pub async fn follow(self: Arc<Self>, every: Duration) {
        loop {
            self.store.changed(every).await;
            if let Err(e) = self.catch_up().await {
                crate::log::event("follow", &[("error", &e.to_string())]);
                tokio::time::sleep(every).await;
            }
        }
    }

    /// Decides a change against the current view and appends its record;
    /// after another writer's append, catches up and decides again.
    pub async fn commit<T, E: From<LedgerError>>(
        &self,
        who: &Who,
        decide: impl Fn(&View) -> Result<Decision<T>, E>,
    ) -> Result<(T, Option<Committed>), E> {
        let _writer = self.writer.lock().await;
        for _ in 0..MAX_ATTEMPTS {
            let view = self.view();
            let (action, policy, effect, value) = match decide(&view)? {
                Decision::Unchanged(v) => return Ok((v, None)),
                Decision::Change {
                    action,
                    policy,
                    effect,
                    value,
                } => (action, policy, effect, value),
            };
            let seq = view.seq + 1;
            let (serial, policy, document) = match policy {
                Some(mut p) => {
                    // Never below a serial the document itself carries (an
                    // imported policy that hosts have already seen).
                    let serial = (view.serial + 1).max(p.serial.unwrap_or(0));
                    p.serial = Some(serial);
                    let doc = document(&p, serial)?;
                    (serial, Some(*p), Some(doc))
                }
                None => (view.serial, None, None),
            };
            let sha = match &document {
                Some(d) => trail::sha256_hex(d),
                None => view.document_sha256.clone(),
            };
            let record = Record {
                seq,
                time: Timestamp::from_unix(Timestamp::now().unix_seconds(), 0),
                actor: who.actor.clone(),
                os_user: who.os_user.clone(),
                sudo_user: who.sudo_user.clone(),
                host: if who.host.is_empty() {
                    self.host.clone()
                } else {
                    who.host.clone()
                },
                action: *action,
                serial: Some(serial),
                policy_sha256: Some(sha.clone()),
                prev: view.head.clone(),
                hash: None,
            };
            let (line, hash) = trail::encode(&record)
                .map_err(|e| LedgerError::Invalid(format!("encoding the record: {e}")))?;
            let checkpoint = if seq.is_multiple_of(CHECKPOINT_EVERY) {
                Some(Checkpoint {
                    seq,
                    document: match document {
                        Some(d) => d,
                        None => self::document(policy.as_ref().unwrap_or(&view.policy), serial)?,
                    },
                })
            } else {
                None
            };
            let append = Append {
                record: StoredRecord {
                    seq,
                    serial: Some(serial),
                    hash: hash.clone(),
                    line,
                },
                checkpoint,
                effect: effect.clone(),
            };
            match self.store.append(append).await {
                Ok(()) => {
                    let hosts = match &effect {
                        Effect::HostAdd { .. } | Effect::HostRemove { .. } => {
                            // The store now holds exactly this change.
                            let mut h = (*view.hosts).clone();
                            apply_host_effect(&mut h, &effect);
                            Arc::new(h)
                        }
                        _ => Arc::clone(&view.hosts),
                    };
                    let (policy, by_user) = match policy {
                        Some(p) => View::with_policy(p),
                        None => (Arc::clone(&view.policy), Arc::clone(&view.by_user)),
                    };
                    self.install(View {
                        seq,
                        head: hash.clone(),
                        serial,
                        policy,
                        by_user,
                        document_sha256: sha,
                        hosts,
                        answers: Default::default(),
                    });
                    let mut record = record;
                    record.hash = Some(hash.clone());
                    return Ok((
                        value,
                        Some(Committed {
                            seq,
                            serial,
                            hash,
                            record,
                        }),
                    ));
                }
                Err(StoreError::Conflict) => {
                    self.catch_up().await?;
                }
                Err(e) => return Err(LedgerError::Store(e).into()),
            }
        }
        Err(LedgerError::Busy.into())
    }
}

fn apply_host_effect(hosts: &mut HashMap<String, HostName<'static>>, effect: &Effect) {
    match effect {
        Effect::HostAdd { name, token_sha256 } => {
            if let Ok(n) = HostName::new(name.clone()) {
                hosts.insert(token_sha256.clone(), n.into_owned());
            }
        }
        Effect::HostRemove { name } => hosts.retain(|_, h| h.as_str() != name),
        _ => {}
    }
}

/// A stored record, decoded and checked against its own hash.
fn decode(stored: &StoredRecord) -> Result<Record<'static>, LedgerError> {
    let line = stored.line.strip_suffix(b"\n").unwrap_or(&stored.line);
    let record = trail::decode(line)
        .map_err(|e| LedgerError::Broken(format!("record {}: {e}", stored.seq)))?
        .into_owned();
    if record.seq != stored.seq || record.hash() != stored.hash {
        return Err(LedgerError::Broken(format!(
            "record {} is filed under another number or hash",
            stored.seq
        )));
    }
    Ok(record)
}

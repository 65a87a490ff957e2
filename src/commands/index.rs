//! `sshjit index`: (re)build the policy index that lets the login path read
//! one user's part of a large policy. The admin commands keep it current;
//! run this after editing the policy by hand, or keep `sshjit index
//! --watch` running (as root) where another tool (Ansible, Puppet, `sshjit
//! sync`) writes the policy: it rebuilds the index whenever the policy or
//! its signature changes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sshjit_policy::openssh::allowed_signers::AllowedSigners;

use crate::config;
use crate::index::{Identity, Index};
use crate::source::Source;
use crate::{Globals, exit, index, term};

/// `sshjit index [--watch [--interval D]]`.
pub fn run(globals: &Globals, watch: Option<Duration>) -> u8 {
    match watch {
        None => once(globals),
        Some(interval) => watch_loop(globals, interval),
    }
}

/// The sources, the file sources among them, and the allowed signers when
/// the host requires signed policies.
struct Setup {
    sources: Vec<Source>,
    files: Vec<PathBuf>,
    signers: Option<AllowedSigners>,
}

/// Reads the config; on failure, the exit status and why.
fn setup(globals: &Globals) -> Result<Setup, (u8, String)> {
    let config =
        config::load(globals.config.as_deref()).map_err(|e| (exit::DENIED, e.to_string()))?;
    let sources = crate::sources(globals, &config).map_err(|e| (exit::USAGE, e.to_string()))?;
    // A host that requires signatures gets an index of the signed
    // document only, its signature verified here, once.
    let signers = match &config.fetch.allowed_signers {
        None => None,
        Some(p) => {
            Some(crate::source::signature::load(p).map_err(|e| (exit::DENIED, e.to_string()))?)
        }
    };
    let files = sources
        .iter()
        .filter_map(|s| match s {
            Source::File(p) => Some(p.clone()),
            Source::Https(_) => None,
        })
        .collect();
    Ok(Setup {
        sources,
        files,
        signers,
    })
}

/// Builds the index of `path` under the admin commands' lock (no edit can
/// run meanwhile).
pub fn rebuild(path: &Path, signers: Option<&AllowedSigners>) -> std::io::Result<index::Written> {
    // A policy that is not there gets no lock file beside it either.
    crate::store::PolicyFile::resolve(path)
        .and_then(|file| file.require_existing().map(|()| file))
        .and_then(|file| crate::store::lock::lock(&file).map(|lock| (file, lock)))
        .map_err(|e| std::io::Error::other(e.to_string()))
        .and_then(|(file, _lock)| index::write_for(&file.policy, signers))
}

pub fn written(path: &Path, w: &index::Written) -> String {
    format!(
        "indexed {}: {} bytes of policy, {} bytes of index in {}{}\n",
        path.display(),
        w.document_bytes,
        w.bytes,
        w.path.display(),
        if w.signed {
            " (its signature verified)"
        } else {
            ""
        }
    )
}

fn once(globals: &Globals) -> u8 {
    let Setup {
        sources,
        files,
        signers,
    } = match setup(globals) {
        Ok(s) => s,
        Err((code, e)) => {
            term::eprint(&format!("error: {e}\n"));
            return code;
        }
    };
    let mut code = exit::OK;
    let mut out = String::new();
    for source in &sources {
        if let Source::Https(_) = source {
            out.push_str(&format!(
                "skipped {source}: only file sources have an index\n"
            ));
        }
    }
    for path in &files {
        match rebuild(path, signers.as_ref()) {
            Ok(w) => out.push_str(&written(path, &w)),
            Err(e) => {
                term::eprint(&format!("error: {}: {e}\n", path.display()));
                code = exit::DENIED;
            }
        }
    }
    let printed = term::print(&out);
    if code == exit::OK { printed } else { code }
}

/// What the watcher last saw of a policy: its identity and its
/// signature's (when signatures are required).
type Seen = (Option<Identity>, Option<Identity>);

fn seen(path: &Path, signed: bool) -> Seen {
    let id = |p: &Path| std::fs::metadata(p).ok().map(|m| Identity::of(&m));
    (
        id(path),
        if signed {
            id(&index::signature_path(path))
        } else {
            None
        },
    )
}

/// Whether the index beside `path` describes it as it is now (and, with
/// signatures required, records the signature beside it now).
fn current(path: &Path, signed: bool) -> bool {
    let Ok(policy) = crate::fs::secure::open_secure(path, sshjit_policy::MAX_DOCUMENT_BYTES) else {
        return false;
    };
    let Ok(file) = crate::fs::secure::open_secure(
        &index::index_path(&policy.canonical),
        index::MAX_INDEX_BYTES as usize,
    ) else {
        return false;
    };
    let len = file.meta.len();
    let Ok(index) = Index::open((file.file, len), &Identity::of(&policy.meta)) else {
        return false;
    };
    if !signed {
        return true;
    }
    use ssh_key::sha2::{Digest, Sha256};
    let sig = crate::fs::secure::read_secure(
        &index::signature_path(path),
        sshjit_policy::openssh::allowed_signers::MAX_SIGNATURE_BYTES,
    );
    matches!((index.signature(), sig), (Ok(Some(r)), Ok(s)) if r[..] == Sha256::digest(&s)[..])
}

/// Keeps every file source's index current: checks each policy (and its
/// signature) every `interval` (a `stat`, nothing more while nothing
/// changes) and rebuilds the index when it no longer describes the file.
/// The config is read again each round. Runs until killed; says on stderr
/// what it does (the journal, under systemd).
fn watch_loop(globals: &Globals, interval: Duration) -> u8 {
    let mut last: HashMap<PathBuf, Seen> = HashMap::new();
    let mut said = String::new();
    loop {
        match setup(globals) {
            Err((_, e)) => {
                let msg = format!("error: {e} (will look again)\n");
                if msg != said {
                    term::eprint(&msg);
                    said = msg;
                }
            }
            Ok(Setup { files, signers, .. }) => {
                said.clear();
                let signed = signers.is_some();
                for path in files {
                    let now = seen(&path, signed);
                    if last.get(&path) == Some(&now) {
                        continue;
                    }
                    if now.0.is_some() && !current(&path, signed) {
                        match rebuild(&path, signers.as_ref()) {
                            Ok(w) => term::eprint(&written(&path, &w)),
                            Err(e) => term::eprint(&format!(
                                "error: {}: {e} (the login path reads the whole document until it is indexed)\n",
                                path.display()
                            )),
                        }
                    }
                    // What the build saw, or what is there: changed
                    // again, it is looked at again.
                    last.insert(path.clone(), seen(&path, signed));
                }
            }
        }
        std::thread::sleep(interval);
    }
}

/// One line for `check`: whether the index is in use, and that it matches
/// the document byte for byte.
pub fn status(path: &std::path::Path, document: &[u8]) -> String {
    use ssh_key::sha2::{Digest, Sha256};
    let (meta, canonical) =
        match crate::fs::secure::open_secure(path, sshjit_policy::MAX_DOCUMENT_BYTES) {
            Ok(f) => (f.meta, f.canonical),
            Err(e) => return format!("index: cannot check: {e}\n"),
        };
    let idx = index::index_path(&canonical);
    let file = match crate::fs::secure::open_secure(&idx, index::MAX_INDEX_BYTES as usize) {
        Ok(f) => f,
        Err(crate::fs::secure::FileError::NotFound(_)) => {
            return "index: none (large policies are faster with one: run `sshjit index`)\n".into();
        }
        Err(e) => return format!("index: refused: {e}\n"),
    };
    let len = file.meta.len();
    let sha = Sha256::digest(document);
    match index::Index::open_unverified((file.file, len)) {
        Ok(i) if i.policy_sha256[..] != sha[..] => format!(
            "index: {} not used ({}): the login path reads the whole document; run `sshjit index`\n",
            idx.display(),
            i.describes(&index::Identity::of(&meta))
                .err()
                .map_or_else(|| "another document".to_owned(), |e| e.to_string())
        ),
        Ok(i) if i.describes(&index::Identity::of(&meta)).is_ok() => format!(
            "index: {} is current and used by the login path\n",
            idx.display()
        ),
        Ok(_) => format!(
            "index: {} matches the document's contents, so the login path uses it, by its SHA-256 (the file was replaced since it was built: `sshjit index` makes logins faster)\n",
            idx.display()
        ),
        Err(e) => format!(
            "index: {} not used ({e}): the login path reads the whole document; run `sshjit index`\n",
            idx.display()
        ),
    }
}

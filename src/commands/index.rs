//! `sshjit index`: (re)build the policy index that lets the login path read
//! one user's part of a large policy. The admin commands keep it current;
//! run this after editing the policy by hand.

use crate::config;
use crate::source::Source;
use crate::{Globals, exit, index, term};

pub fn run(globals: &Globals) -> u8 {
    let config = match config::load(globals.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            term::eprint(&format!("error: {e}\n"));
            return exit::DENIED;
        }
    };
    let sources = match crate::sources(globals, &config) {
        Ok(s) => s,
        Err(e) => {
            term::eprint(&format!("error: {e}\n"));
            return exit::USAGE;
        }
    };
    let mut code = exit::OK;
    let mut out = String::new();
    if config.fetch.allowed_signers.is_some() {
        out.push_str(
            "note: allowed_signers is set, so the login path verifies the whole signed document and does not use the index\n",
        );
    }
    for source in &sources {
        let Source::File(path) = source else {
            out.push_str(&format!(
                "skipped {source}: only file sources have an index\n"
            ));
            continue;
        };
        // Under the admin commands' lock: no edit can run meanwhile.
        // A policy that is not there gets no lock file beside it either.
        let indexed = crate::store::PolicyFile::resolve(path)
            .and_then(|file| file.require_existing().map(|()| file))
            .and_then(|file| crate::store::lock::lock(&file).map(|lock| (file, lock)))
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|(file, _lock)| index::write_for(&file.policy));
        match indexed {
            Ok(w) => out.push_str(&format!(
                "indexed {}: {} bytes of policy, {} bytes of index in {}\n",
                path.display(),
                w.document_bytes,
                w.bytes,
                w.path.display()
            )),
            Err(e) => {
                term::eprint(&format!("error: {}: {e}\n", path.display()));
                code = exit::DENIED;
            }
        }
    }
    let printed = term::print(&out);
    if code == exit::OK { printed } else { code }
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
    match index::Index::open((file.file, len), &index::Identity::of(&meta)) {
        Ok(i) if i.policy_sha256[..] == Sha256::digest(document)[..] => {
            format!(
                "index: {} is current and used by the login path\n",
                idx.display()
            )
        }
        Ok(_) => format!(
            "index: {} does not match the document's contents: run `sshjit index`\n",
            idx.display()
        ),
        Err(e) => format!(
            "index: {} not used ({e}): the login path reads the whole document; run `sshjit index`\n",
            idx.display()
        ),
    }
}

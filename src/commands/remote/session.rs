//! The session a login leaves: a bearer token and when it ends, kept in
//! `~/.cache/sshjit/sessions/HOST_PORT.json` (or under `$XDG_CACHE_HOME`),
//! a directory only the user can enter and a file only the user can read.
//! A file someone else could read or change is not used.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::settings::base_dir;
use crate::commands::failure::Failure;
use crate::fs::atomic;
use crate::source::Url;
use sshjit_policy::time::Timestamp;

const MAX_BYTES: u64 = 16 * 1024;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Session {
    /// The server it is for, as given at login.
    pub server: String,
    pub person: String,
    pub token: String,
    pub expires_at: Timestamp,
}

fn dir() -> Result<PathBuf, Failure> {
    base_dir("XDG_CACHE_HOME", ".cache")
        .map(|d| d.join("sshjit/sessions"))
        .ok_or_else(|| Failure::refused("no home directory for the session cache (set HOME)"))
}

fn file_for(url: &Url) -> Result<PathBuf, Failure> {
    let name: String = url
        .authority()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    Ok(dir()?.join(format!("{name}.json")))
}

impl Session {
    /// The session for `url`, when there is one that has not ended.
    pub fn load(url: &Url) -> Result<Option<Session>, Failure> {
        let path = file_for(url)?;
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Failure::refused(format!("{}: {e}", path.display()))),
        };
        let me = crate::system::euid();
        if !meta.is_file() || meta.uid() != me || meta.mode() & 0o077 != 0 || meta.len() > MAX_BYTES
        {
            return Err(Failure::refused(format!(
                "{}: not a private file of yours (it must be a regular file, mode 0600): remove it and log in again",
                path.display()
            )));
        }
        let bytes =
            fs::read(&path).map_err(|e| Failure::refused(format!("{}: {e}", path.display())))?;
        let Ok(session) = serde_json::from_slice::<Session>(&bytes) else {
            let _ = fs::remove_file(&path);
            return Ok(None);
        };
        if session.expires_at <= Timestamp::now() {
            let _ = fs::remove_file(&path);
            return Ok(None);
        }
        Ok(Some(session))
    }

    /// Keeps the session for the user only.
    pub fn save(&self, url: &Url) -> Result<PathBuf, Failure> {
        let path = file_for(url)?;
        let dir = path
            .parent()
            .ok_or_else(|| Failure::internal("no directory for the session"))?;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| Failure::refused(format!("{}: {e}", dir.display())))?;
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
        let bytes = serde_json::to_vec(self)
            .map_err(|e| Failure::internal(format!("encoding the session: {e}")))?;
        atomic::write(&path, &bytes, atomic::Options::mode(0o600))
            .map_err(|e| Failure::refused(format!("keeping the session: {e}")))?;
        Ok(path)
    }

    /// Forgets the session for `url` (after a logout, or when the server
    /// says it is over).
    pub fn forget(url: &Url) -> Result<(), Failure> {
        let path = file_for(url)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Failure::refused(format!("{}: {e}", path.display()))),
        }
    }
}

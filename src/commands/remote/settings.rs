//! The client config, `~/.config/sshjit/client.toml` (or under
//! `$XDG_CONFIG_HOME`): defaults for the people's commands. Optional;
//! unknown keys are an error.
//!
//! ```toml
//! server = "https://sshjit.example.com"   # the default for --server
//! ca_file = "/etc/sshjit/ca.pem"          # trust only these roots for it
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::commands::failure::Failure;
use crate::fs::secure::{self as file, FileError};

const MAX_BYTES: usize = 16 * 1024;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientSettings {
    pub server: Option<String>,
    pub ca_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    server: Option<String>,
    ca_file: Option<PathBuf>,
}

/// `$XDG_CONFIG_HOME/sshjit/client.toml`, else `~/.config/sshjit/client.toml`.
pub fn path() -> Option<PathBuf> {
    base_dir("XDG_CONFIG_HOME", ".config").map(|d| d.join("sshjit/client.toml"))
}

/// An absolute directory from `var`, else `$HOME/fallback`.
pub(crate) fn base_dir(var: &str, fallback: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .map(|h| h.join(fallback))
        })
}

impl ClientSettings {
    /// The settings; defaults when there is no file.
    pub fn load() -> Result<ClientSettings, Failure> {
        match path() {
            Some(p) => ClientSettings::load_from(&p),
            None => Ok(ClientSettings::default()),
        }
    }

    pub fn load_from(path: &Path) -> Result<ClientSettings, Failure> {
        let bytes = match file::read_secure(path, MAX_BYTES) {
            Ok(b) => b,
            Err(FileError::NotFound(_)) if !path.is_symlink() => {
                return Ok(ClientSettings::default());
            }
            Err(e) => return Err(Failure::refused(e.to_string())),
        };
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| Failure::refused(format!("{}: not UTF-8", path.display())))?;
        let raw: Raw = toml::from_str(text)
            .map_err(|e| Failure::refused(format!("{}: {}", path.display(), e.message())))?;
        if let Some(ca) = &raw.ca_file
            && !ca.is_absolute()
        {
            return Err(Failure::refused(format!(
                "{}: ca_file must be an absolute path",
                path.display()
            )));
        }
        Ok(ClientSettings {
            server: raw.server,
            ca_file: raw.ca_file,
        })
    }
}

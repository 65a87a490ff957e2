//! Commands for people: read-only aids (`check`, `explain`) that share the
//! login path's reading and evaluation, so what they say is what sshd gets.

pub mod check;
pub mod explain;
pub mod index;

use crate::Globals;
use crate::config::{self, Config};
use crate::source::{self, Document};

/// Reads the config and fetches the document exactly as the helper does.
pub fn fetch(globals: &Globals) -> Result<(Config, Document), String> {
    let config = config::load(globals.config.as_deref()).map_err(|e| e.to_string())?;
    let sources = crate::sources(globals, &config)?;
    let doc = source::fetch(&sources).map_err(|e| e.to_string())?;
    Ok((config, doc))
}

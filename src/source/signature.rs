//! The `allowed_signers` file of a host that requires signed policies:
//! read through the secure open (whoever can write it can sign policies),
//! parsed by the core with this host's local-time rules.

use std::path::Path;

pub use sshjit_policy::openssh::allowed_signers::{
    AllowedSigners, MAX_ALLOWED_SIGNERS_BYTES, NAMESPACE, SignatureError, Signer,
};

use crate::fs::secure;
use crate::system::HostLocalTime;

/// Reads and parses an allowed_signers file.
pub fn load(path: &Path) -> Result<AllowedSigners, SignatureError> {
    let bytes = secure::read_secure(path, MAX_ALLOWED_SIGNERS_BYTES)
        .map_err(|e| SignatureError::Signers(e.to_string()))?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| SignatureError::Signers(format!("{}: not UTF-8", path.display())))?;
    AllowedSigners::parse(&path.display().to_string(), text, &HostLocalTime).map_err(|e| {
        // A line of it is quoted only if anyone may read the file.
        if secure::world_readable(path) {
            e
        } else {
            SignatureError::Signers(format!(
                "{}: not a valid allowed_signers file (the content is not shown: the file is not readable by everyone)",
                path.display()
            ))
        }
    })
}

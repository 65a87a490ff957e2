//! OpenSSH's own grammars, as sshd and ssh-keygen read them: authorized_keys
//! and principals lines with their options, allowed_signers, and sshd's
//! reading of a zone-less time.

pub mod allowed_signers;
pub mod local_time;
pub mod options;

//! Host integration, each against the real tool: the KRL read by
//! `ssh-keygen -Q` and by a real sshd's `RevokedKeys` (`krl`); live
//! sessions ended through a real sshd (`reap`); the Fail2Ban filter run by
//! the real `fail2ban-regex` over a real sshd's and helper's log
//! (`fail2ban`); and the Debian packages installed with `dpkg` (`package`).

mod fail2ban;
mod krl;
mod package;
mod reap;

//! All integration tests, in one binary: process-level tests of the built
//! `sshjit` binary (`cli`), end-to-end tests through a real sshd (`e2e`),
//! and the admin commands at both levels (`admin`).

mod admin;
mod cli;
mod e2e;
mod support;

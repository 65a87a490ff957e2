//! All integration tests, in one binary: process-level tests of the built
//! `sshjit` binary (`cli`, `https`), property tests (`props`) and
//! end-to-end tests through a real sshd (`e2e`).

mod cli;
mod e2e;
mod https;
mod props;
mod storm;
mod support;

//! All integration tests, in one binary: process-level tests of the built
//! `sshjit` binary (`cli`, `https`), the admin commands at both levels
//! (`admin`), property tests (`props`), end-to-end tests through a real
//! sshd (`e2e`) and a login storm (`storm`).

mod admin;
mod cli;
mod e2e;
mod https;
mod layering;
mod props;
mod quickstart;
mod storm;
mod support;

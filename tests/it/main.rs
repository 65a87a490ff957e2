//! All integration tests, in one binary: process-level tests of the built
//! `sshjit` binary (`cli`, `https`), the admin commands at both levels
//! (`admin`), property tests (`props`), end-to-end tests through a real
//! sshd (`e2e`), a login storm (`storm`), and the check that the index fuzz
//! target's seeds are the builder's output (`fuzz_seeds`).

mod admin;
mod cli;
mod e2e;
mod fuzz_seeds;
mod https;
mod layering;
mod props;
mod quickstart;
mod requests;
mod server;
mod storm;
mod support;

//! All integration tests, in one binary: process-level tests of the built
//! `sshjit` binary (`cli`, `https`), the admin commands at both levels
//! (`admin`), property tests (`props`), end-to-end tests through a real
//! sshd (`e2e`), a login storm (`storm`), the regression tests of the
//! hostile review (`review`), the check that the index fuzz target's seeds
//! are the builder's output (`fuzz_seeds`), sshjit-server as a process
//! (`server`), access requests end to end (`requests`), the web console in a real
//! headless Chromium (`console`), and host
//! integration (`host`: KRL, reap, Fail2Ban, the Debian packages).

mod admin;
mod cli;
mod console;
mod e2e;
mod fuzz_seeds;
mod host;
mod https;
mod layering;
mod props;
mod quickstart;
mod requests;
mod review;
mod server;
mod storm;
mod support;

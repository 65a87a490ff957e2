//! The config parser: no panic on any input; what it accepts is within bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sshjit::config::{MAX_TIMEOUT, parse};
use sshjit::source::Source;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = parse(Path::new("/etc/sshjit/sshjit.toml"), data) {
        assert!(!c.sources.is_empty() && c.sources.len() <= 8);
        assert!(!c.timeout.is_zero() && c.timeout <= MAX_TIMEOUT);
        assert!(c.syslog_socket.is_absolute());
        assert!(c.fetch.state_dir.is_absolute());
        if let Some(cache) = &c.fetch.cache {
            assert!(cache.dir.is_absolute());
            assert!(!cache.max_stale.is_zero() && cache.max_stale <= sshjit::config::MAX_STALE);
        }
        for s in &c.sources {
            match s {
                Source::File(p) => assert!(p.is_absolute()),
                Source::Https(u) => assert!(u.is_tls() || u.is_loopback()),
            }
        }
    }
});

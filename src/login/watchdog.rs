//! The login's own deadline: sshd has none, so a second thread denies when
//! a call overruns: it logs one line and exits non-zero, so sshd discards
//! anything printed.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::exit;
use crate::log::{Severity, Syslog};

pub struct Watchdog {
    /// True until the main thread claims the outcome or the watchdog fires.
    running: Arc<AtomicBool>,
    /// The deadline and where to log, both updated once the config is read.
    state: Arc<Mutex<(Instant, Syslog)>>,
    started: Instant,
}

impl Watchdog {
    /// Starts the deadline thread; `line` gives what it logs when it fires,
    /// from the time taken so far.
    pub fn arm(
        timeout: Duration,
        syslog: Syslog,
        line: impl Fn(Duration) -> String + Send + 'static,
        started: Instant,
    ) -> io::Result<Self> {
        let running = Arc::new(AtomicBool::new(true));
        let state = Arc::new(Mutex::new((started + timeout, syslog)));
        let (r, s) = (Arc::clone(&running), Arc::clone(&state));
        std::thread::Builder::new()
            .name("deadline".into())
            .spawn(move || Watchdog::watch(&r, &s, &line, started))?;
        Ok(Watchdog {
            running,
            state,
            started,
        })
    }

    fn watch(
        running: &AtomicBool,
        state: &Mutex<(Instant, Syslog)>,
        line: &dyn Fn(Duration) -> String,
        started: Instant,
    ) {
        loop {
            let deadline = state.lock().map_or_else(|_| Instant::now(), |s| s.0);
            let now = Instant::now();
            if now < deadline {
                std::thread::sleep(deadline - now);
                continue;
            }
            if running.swap(false, Ordering::SeqCst) {
                let line = line(started.elapsed());
                if let Ok(s) = state.lock() {
                    s.1.log(Severity::Err, &line);
                }
                std::process::exit(i32::from(exit::INTERNAL));
            }
            return;
        }
    }

    /// The config's timeout and syslog socket, once it is read.
    pub fn update(&self, timeout: Duration, syslog: Syslog) {
        if let Ok(mut s) = self.state.lock() {
            *s = (self.started + timeout, syslog);
        }
    }

    pub fn still_running(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }

    /// Claims the outcome for the main thread; false if the watchdog already fired.
    pub fn disarm(&self) -> bool {
        self.running.swap(false, Ordering::SeqCst)
    }
}

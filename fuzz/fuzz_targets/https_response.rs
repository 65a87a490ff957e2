//! The https response path: the real client (ureq, our header and size
//! handling) reads whatever a server on loopback answers — the fuzz input,
//! sent raw as the HTTP response — and what it accepts goes on through the
//! policy parser and the login path's invariants. No panic, no hang past
//! the deadline, nothing larger than the limits accepted.
#![no_main]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use sshjit::source::https::{Client, MAX_RESPONSE_BYTES, MAX_SIGNATURE_BYTES, TlsSettings};
use sshjit::source::{Query, Url};
use sshjit_policy::Policy;

#[path = "../invariants.rs"]
mod invariants;

struct Server {
    url: Url,
    answer: Arc<Mutex<Vec<u8>>>,
}

/// One server for the whole run: every connection gets the current input.
static SERVER: LazyLock<Server> = LazyLock::new(|| {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let answer = Arc::new(Mutex::new(Vec::new()));
    let shared = Arc::clone(&answer);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let _ = conn.set_read_timeout(Some(Duration::from_millis(500)));
            // Read the request head, then answer and close.
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let bytes = shared.lock().unwrap().clone();
            let _ = conn.write_all(&bytes);
        }
    });
    Server {
        url: Url::parse(&format!("http://127.0.0.1:{port}/policy.json")).unwrap(),
        answer,
    }
});

static CLIENT: LazyLock<Client> =
    LazyLock::new(|| Client::new(&TlsSettings::default()).expect("client"));

fuzz_target!(|data: &[u8]| {
    let Some((&flags, response)) = data.split_first() else {
        return;
    };
    *SERVER.answer.lock().unwrap() = response.to_vec();
    let query = Query {
        user: Some("deploy"),
        host: Some("web-1"),
        mode: Some("keys"),
    };
    let signed = flags & 1 == 1;
    let deadline = Instant::now() + Duration::from_secs(2);
    let started = Instant::now();
    let result = CLIENT.fetch(&SERVER.url, &query, signed, deadline);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "fetch outlived its deadline"
    );
    if let Ok(f) = result {
        assert!(f.body.len() <= MAX_RESPONSE_BYTES);
        assert!(
            f.signature
                .as_ref()
                .is_none_or(|s| s.len() <= MAX_SIGNATURE_BYTES)
        );
        assert_eq!(f.signature.is_some(), signed);
        if let Ok(policy) = Policy::parse(&f.body) {
            invariants::check_policy(&f.body, &policy);
        }
    }
});

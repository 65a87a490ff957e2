//! Policy parse + validate + evaluate + render: see `invariants.rs` for what
//! must hold on every valid document.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sshjit_policy::Policy;

#[path = "../invariants.rs"]
mod invariants;

fuzz_target!(|data: &[u8]| {
    if let Ok(policy) = Policy::parse(data) {
        invariants::check_policy(data, &policy);
    }
});

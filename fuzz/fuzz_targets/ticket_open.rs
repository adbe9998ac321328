//! A cookie or bearer value → `Ticket::open` and `Sealer::open` per purpose; see `checks::ticket_open`.
#![no_main]

#[path = "../checks.rs"]
#[allow(dead_code)]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::ticket_open(data));

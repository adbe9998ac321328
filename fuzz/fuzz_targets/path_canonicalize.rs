//! A request target → `path::canonicalize`, with its invariants; see `checks::path_canonicalize`.
#![no_main]

#[path = "../checks.rs"]
#[allow(dead_code)]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::path_canonicalize(data));

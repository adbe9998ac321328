//! A raw HTTP/1 request head → request hygiene, client IP, header and cookie stripping; see
//! `checks::request_headers`.
#![no_main]

#[path = "../checks.rs"]
#[allow(dead_code)]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::request_headers(data));

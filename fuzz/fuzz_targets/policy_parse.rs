//! A policy document (PPL YAML) → `Policy::parse`, then evaluation; see `checks::policy_parse`.
#![no_main]

#[path = "../checks.rs"]
#[allow(dead_code)]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::policy_parse(data));

//! Any string as a return path, programmatic `redirect_uri`, login return and redirect-route
//! target; see `checks::redirect_target`.
#![no_main]

#[path = "../checks.rs"]
#[allow(dead_code)]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::redirect_target(data));

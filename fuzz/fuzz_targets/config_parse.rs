//! A config file → `config::parse`; see `checks::config_parse`. File names in it resolve
//! against the repository's `config/` directory, as for the shipped examples.
#![no_main]

#[path = "../checks.rs"]
#[allow(dead_code)]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let base_dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../config"));
    checks::config_parse(data, base_dir);
});

//! The fuzz corpora as regression tests (SECURITY.md principle 10): every file of
//! `fuzz/seeds/<target>/` (hand-picked), `fuzz/corpus/<target>/` (found by fuzzing, minimized)
//! and `fuzz/regressions/<target>/` (crash reproductions) goes through the same check as the
//! libFuzzer target (`fuzz/checks.rs`), on stable and without libFuzzer. A missing or empty
//! seed or corpus directory fails, so a moved directory cannot turn this into a silent pass.

use std::{
    fs,
    panic::{self, AssertUnwindSafe},
    path::{Path, PathBuf},
    time::{Duration, UNIX_EPOCH},
};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use gatehouse::session::{Purpose, Sealer, Ticket};

#[path = "../fuzz/checks.rs"]
mod checks;

const FUZZ_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz");

#[test]
fn policy_parse_corpus() {
    replay("policy_parse", checks::policy_parse);
}

#[test]
fn config_parse_corpus() {
    let base_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    replay("config_parse", |data| checks::config_parse(data, &base_dir));
}

#[test]
fn path_canonicalize_corpus() {
    replay("path_canonicalize", checks::path_canonicalize);
}

#[test]
fn ticket_open_corpus() {
    replay("ticket_open", checks::ticket_open);
}

#[test]
fn request_headers_corpus() {
    replay("request_headers", checks::request_headers);
}

#[test]
fn redirect_target_corpus() {
    replay("redirect_target", checks::redirect_target);
}

/// The sealed seeds still open: if the key derivation or format changes, the ticket corpus
/// would silently become junk that only exercises the rejection path. Regenerate them with
/// `cargo test --test fuzz_corpus -- --ignored write_ticket_seeds`.
#[test]
fn ticket_seeds_open() {
    let sealer = Sealer::new(&checks::SECRET);
    let dir = Path::new(FUZZ_DIR).join("seeds/ticket_open");
    let read = |name: &str| fs::read_to_string(dir.join(name)).unwrap_or_default();
    for name in ["ticket-valid", "ticket-valid-2"] {
        assert!(
            Ticket::open(&sealer, &read(name)).is_some(),
            "{name} does not open"
        );
    }
    for (name, purpose, context) in [
        ("login-state", Purpose::LoginState, &b""[..]),
        ("signin-hop", Purpose::SignIn, b"hop"),
        ("signout", Purpose::SignOut, &[0x5a; 16]),
    ] {
        assert!(
            sealer.open(purpose, context, &read(name)).is_some(),
            "{name} does not open"
        );
    }
}

/// Writes the sealed seeds of `fuzz/seeds/ticket_open/` (valid tickets, malformed ticket
/// plaintexts, values of every other purpose, tampered values, junk) with the real API.
#[test]
#[ignore = "writes into fuzz/seeds; run by hand after changing the ticket format"]
fn write_ticket_seeds() {
    let sealer = Sealer::new(&checks::SECRET);
    let dir = Path::new(FUZZ_DIR).join("seeds/ticket_open");
    let ticket = Ticket::generate(UNIX_EPOCH + Duration::from_secs(1_774_859_400));
    let raw = |version: u8, len: usize| {
        let mut raw = vec![0x11; len];
        if let Some(first) = raw.first_mut() {
            *first = version;
        }
        raw
    };
    let valid = ticket.seal(&sealer);
    // One flipped bit of the nonce-ciphertext-tag bytes, still valid base64.
    let mut raw_valid = URL_SAFE_NO_PAD.decode(&valid).unwrap_or_default();
    raw_valid[20] ^= 0x01;
    let flipped = URL_SAFE_NO_PAD.encode(&raw_valid).into_bytes();
    let seeds: Vec<(&str, Vec<u8>)> = vec![
        ("ticket-valid", valid.clone().into_bytes()),
        (
            "ticket-valid-2",
            Ticket::generate(UNIX_EPOCH).seal(&sealer).into_bytes(),
        ),
        (
            "ticket-version-2",
            seal(&sealer, Purpose::Ticket, b"", &raw(2, 57)),
        ),
        (
            "ticket-short",
            seal(&sealer, Purpose::Ticket, b"", &raw(1, 56)),
        ),
        (
            "ticket-long",
            seal(&sealer, Purpose::Ticket, b"", &raw(1, 58)),
        ),
        (
            "ticket-empty-plaintext",
            seal(&sealer, Purpose::Ticket, b"", b""),
        ),
        (
            "ticket-as-login-state",
            seal(&sealer, Purpose::LoginState, b"", &raw(1, 57)),
        ),
        (
            "login-state",
            seal(
                &sealer,
                Purpose::LoginState,
                b"",
                br#"{"state":"s","nonce":"n","issued_at":1}"#,
            ),
        ),
        (
            "signin-hop",
            seal(
                &sealer,
                Purpose::SignIn,
                b"hop",
                br#"{"return_to":"https://app.example.com/"}"#,
            ),
        ),
        (
            "signin-handoff",
            seal(
                &sealer,
                Purpose::SignIn,
                b"handoff",
                br#"{"return_to":"/x"}"#,
            ),
        ),
        (
            "signout",
            seal(&sealer, Purpose::SignOut, &[0x5a; 16], b"sign-out"),
        ),
        (
            "record",
            seal(&sealer, Purpose::Record, &[0x5a; 16], br#"{"version":1}"#),
        ),
        ("ticket-flipped-bit", flipped),
        (
            "ticket-truncated",
            valid.as_bytes()[..valid.len() - 3].to_vec(),
        ),
        ("ticket-padded", format!("{valid}==").into_bytes()),
        ("ticket-quoted", format!("\"{valid}\"").into_bytes()),
        ("raw-ticket-plaintext", raw(1, 57)),
        ("junk-empty", Vec::new()),
        ("junk-not-base64", b"!!!!not*base64$$".to_vec()),
        (
            "junk-std-base64",
            b"q83vq83v+/+/q83vq83vq83vq83vq83vq83vq83vq83vq80=".to_vec(),
        ),
        ("junk-too-long", vec![b'A'; 4100]),
        ("junk-binary", vec![0xff, 0xfe, 0, 1, 0x80]),
    ];
    for (name, bytes) in seeds {
        fs::write(dir.join(name), bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

fn seal(sealer: &Sealer, purpose: Purpose, context: &[u8], plaintext: &[u8]) -> Vec<u8> {
    sealer.seal(purpose, context, plaintext).into_bytes()
}

/// Runs `check` on every seed, corpus and regression file of `target`; fails listing every
/// file whose check panicked.
fn replay(target: &str, check: impl Fn(&[u8])) {
    let mut files = Vec::new();
    for kind in ["seeds", "corpus"] {
        let dir = Path::new(FUZZ_DIR).join(kind).join(target);
        let found = files_in(&dir);
        assert!(!found.is_empty(), "{} is missing or empty", dir.display());
        files.extend(found);
    }
    // Crash reproductions are optional: a target may never have crashed.
    files.extend(files_in(
        &Path::new(FUZZ_DIR).join("regressions").join(target),
    ));
    let failed: Vec<String> = files
        .iter()
        .filter(|file| {
            let data =
                fs::read(file).unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
            panic::catch_unwind(AssertUnwindSafe(|| check(&data))).is_err()
        })
        .map(|file| file.display().to_string())
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} {target} inputs failed their check:\n{}",
        failed.len(),
        files.len(),
        failed.join("\n")
    );
}

/// The regular files directly in `dir`, sorted; empty when `dir` does not exist.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

//! Deserialization that reports every bad key, not only the first: on an error, the failing
//! key is recorded and removed, and deserialization is retried on what is left.

use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;
use serde_yaml::Value;

use super::problem::{index_path, key_path, Report};

/// More errors than this in one part of a file are not worth listing one by one.
const MAX_ERRORS: usize = 200;

/// Deserializes `value` (found at key path `base`) into the file struct `T`, recording one
/// error per failing key. Every field of a file struct is optional, so removing a failing key
/// always lets deserialization go on. Returns None only when nothing usable remains (the value
/// is of the wrong kind altogether, or too broken to go on).
pub(super) fn deserialize_all<T: DeserializeOwned>(
    mut value: Value,
    base: &str,
    report: &mut Report,
) -> Option<T> {
    for _ in 0..MAX_ERRORS {
        let error = match serde_path_to_error::deserialize::<_, T>(&value) {
            Ok(parsed) => return Some(parsed),
            Err(error) => error,
        };
        let segments: Vec<Segment> = error.path().iter().cloned().collect();
        report.error(&join(base, &segments), friendly(&error.inner().to_string()));
        if !remove_failing_key(&mut value, &segments) {
            return None;
        }
    }
    report.error(base, "too many errors; stopped here");
    None
}

fn join(base: &str, segments: &[Segment]) -> String {
    let mut path = base.to_owned();
    for segment in segments {
        path = match segment {
            Segment::Map { key } => key_path(&path, key),
            Segment::Seq { index } => index_path(&path, *index),
            Segment::Enum { variant } => key_path(&path, variant),
            Segment::Unknown => break,
        };
    }
    path
}

/// Removes the innermost mapping key on `segments`. False when there is none to remove.
fn remove_failing_key(value: &mut Value, segments: &[Segment]) -> bool {
    let Some(last_key) = segments
        .iter()
        .rposition(|s| matches!(s, Segment::Map { .. }))
    else {
        return false;
    };
    let mut node = value;
    for segment in &segments[..last_key] {
        let next = match segment {
            Segment::Map { key } => node.get_mut(key.as_str()),
            Segment::Seq { index } => node.get_mut(*index),
            Segment::Enum { .. } | Segment::Unknown => None,
        };
        match next {
            Some(next) => node = next,
            None => return false,
        }
    }
    match (&segments[last_key], node.as_mapping_mut()) {
        (Segment::Map { key }, Some(mapping)) => mapping.remove(key.as_str()).is_some(),
        _ => false,
    }
}

/// Rewrites serde's messages into the words of a config file.
fn friendly(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let (name, expected) = rest.split_once('`').unwrap_or((rest, ""));
        let known: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
        return match suggest(name, &known) {
            Some(close) => format!("unknown key {name:?} (did you mean {close:?}?)"),
            None => format!("unknown key {name:?}"),
        };
    }
    let message = message
        .replace("expected u16", "expected an integer from 0 to 65535")
        .replace("expected u32", "expected a non-negative integer")
        .replace("expected usize", "expected a non-negative integer")
        .replace("expected a sequence", "expected a list")
        .replace("expected struct ", "expected a mapping: ");
    match message.split_once("expected a mapping: ") {
        Some((head, _)) => format!("{head}expected a mapping"),
        None => message,
    }
}

/// The known name closest to `name`, if it is close enough to be a likely typo.
fn suggest<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    let limit = (name.len() / 3).clamp(1, 3);
    known
        .iter()
        .map(|k| (edit_distance(name, k), *k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

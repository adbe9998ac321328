//! Problems found in a configuration file, and the collector that gathers them while the
//! file is checked (so every problem is reported, not only the first).

use std::fmt;

use super::lines::LineIndex;

/// One problem (error or warning) in a configuration file: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file name as given to `load`/`parse`, for messages.
    pub file: String,
    /// Key path such as `routes[2].to[0]` or `cookie_secret`; empty for the whole file.
    pub path: String,
    /// 1-based line of the key (or of its nearest ancestor that has one), when known.
    pub line: Option<usize>,
    /// What is wrong, and where it helps, how to fix it.
    pub message: String,
}

/// Every error found in one configuration file. `Display` prints one problem per line.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", render(.problems))]
pub struct ConfigErrors {
    /// The file name as given to `load`/`parse`.
    pub file: String,
    /// All errors, ordered by line (problems without a line last).
    pub problems: Vec<Problem>,
}

/// Gathers errors and warnings by key path while a file is converted; lines are attached at
/// the end from the [`LineIndex`].
#[derive(Debug, Default)]
pub(super) struct Report {
    errors: Vec<(String, String)>,
    warnings: Vec<(String, String)>,
}

/// `parent.key` (or `key` at the top level).
pub(super) fn key_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// `parent[index]`.
pub(super) fn index_path(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

fn render(problems: &[Problem]) -> String {
    let lines: Vec<String> = problems.iter().map(Problem::to_string).collect();
    lines.join("\n")
}

// === impl Problem ===

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

// === impl Report ===

impl Report {
    /// Records an error at `path`.
    pub(super) fn error(&mut self, path: &str, message: impl Into<String>) {
        self.errors.push((path.to_owned(), message.into()));
    }

    /// Records a warning at `path`.
    pub(super) fn warn(&mut self, path: &str, message: impl Into<String>) {
        self.warnings.push((path.to_owned(), message.into()));
    }

    /// Unwraps `result`, recording its error at `path`.
    pub(super) fn check<T>(&mut self, path: &str, result: Result<T, String>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(message) => {
                self.error(path, message);
                None
            }
        }
    }

    /// Number of errors so far (to tell whether a part added any).
    pub(super) fn error_count(&self) -> usize {
        self.errors.len()
    }

    /// Whether an error was already recorded at `path` or below it; used so a key that failed
    /// to deserialize is not also reported as missing.
    pub(super) fn has_error_under(&self, path: &str) -> bool {
        self.errors.iter().any(|(p, _)| {
            p == path
                || (p.starts_with(path)
                    && matches!(p.as_bytes().get(path.len()), Some(b'.') | Some(b'[')))
        })
    }

    /// Attaches lines and file name: `(errors, warnings)`, each ordered by line.
    pub(super) fn finish(self, file: &str, lines: &LineIndex) -> (Vec<Problem>, Vec<Problem>) {
        let convert = |list: Vec<(String, String)>| {
            let mut problems: Vec<Problem> = list
                .into_iter()
                .map(|(path, message)| Problem {
                    file: file.to_owned(),
                    line: lines.line_of(&path),
                    path,
                    message,
                })
                .collect();
            problems.sort_by_key(|p| p.line.unwrap_or(usize::MAX));
            problems
        };
        (convert(self.errors), convert(self.warnings))
    }
}

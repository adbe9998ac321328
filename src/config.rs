//! Configuration: the YAML file (Pomerium's key names) → a validated, typed [`Config`].
//!
//! Two layers: serde file structs (`file`) that reject unknown keys, converted with exhaustive
//! destructuring into the typed structs of `types`. Checking collects every problem with its
//! key path and line instead of stopping at the first. Pure: reads the config file and the
//! files it names (secrets, certificates, CAs), nothing else; no network.

use std::path::Path;

mod collect;
mod duration;
mod file;
mod global;
mod identity;
mod lines;
mod policies;
mod problem;
mod route;
mod types;
mod upstream;
mod values;

pub use self::{
    duration::parse_duration,
    lines::LineIndex,
    problem::{ConfigErrors, Problem},
    types::*,
};

use self::{file::FileConfig, problem::Report, values::Sources};

/// A configuration that passed validation.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The typed configuration.
    pub config: Config,
    /// Things that are allowed but probably not what was meant (a route nobody may use,
    /// settings not acted on yet). Never empty-string or security problems: those are errors.
    pub warnings: Vec<Problem>,
    /// Key path → line of the file, for checks that run later on parts kept as YAML (inline
    /// policies at `routes[i].policy`).
    pub lines: LineIndex,
}

/// Reads, parses and validates the config file at `path`. Relative file names inside it
/// (`*_file`, `policies_dir`, certificates) resolve against the file's directory. On failure
/// the error lists every problem found, each with its key path and line.
pub fn load(path: &Path) -> Result<Loaded, ConfigErrors> {
    let file_name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
        file: file_name.clone(),
        problems: vec![Problem {
            file: file_name.clone(),
            path: String::new(),
            line: None,
            message: format!("cannot read the config file: {e}"),
        }],
    })?;
    let base_dir = path.parent().unwrap_or_else(|| Path::new("."));
    parse(&text, base_dir, &file_name)
}

/// Parses and validates config `text`, as [`load`] does for a file: files it names resolve
/// against `base_dir`; `file_name` is used in messages only. Every route's policy is compiled
/// (into `Access::compiled`); a problem inside a named policy file is reported against that
/// file, with its line there.
pub fn parse(text: &str, base_dir: &Path, file_name: &str) -> Result<Loaded, ConfigErrors> {
    let lines = LineIndex::build(text);
    let fail = |problems: Vec<Problem>| ConfigErrors {
        file: file_name.to_owned(),
        problems,
    };
    let mut value: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| {
        fail(vec![Problem {
            file: file_name.to_owned(),
            path: String::new(),
            line: e.location().map(|l| l.line()),
            message: format!("invalid YAML: {e}"),
        }])
    })?;
    let mut report = Report::default();
    if let Err(e) = value.apply_merge() {
        report.error("", format!("invalid YAML merge key: {e}"));
    }
    let mut config = if value.is_mapping() {
        let sources = Sources {
            base_dir: base_dir.to_path_buf(),
        };
        collect::deserialize_all::<FileConfig>(value, "", &mut report)
            .map(|file| global::build(file, &sources, &mut report))
    } else {
        report.error(
            "",
            "the config must be a mapping of keys (address, routes, …)",
        );
        None
    };
    // Policies compile even when other keys have errors, so one run lists every problem.
    let policy_file_problems = config
        .as_mut()
        .map(|config| policies::compile(config, &mut report))
        .unwrap_or_default();
    let (mut errors, warnings) = report.finish(file_name, &lines);
    errors.extend(policy_file_problems);
    match config {
        Some(config) if errors.is_empty() => Ok(Loaded {
            config,
            warnings,
            lines,
        }),
        _ => Err(fail(errors)),
    }
}

#[cfg(test)]
mod tests;

//! Compiles every route's access rules into its policy once the routes are built, so
//! `gatehouse check` reports policy problems together with the config's own.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    sync::Arc,
};

use super::{
    lines::LineIndex,
    problem::{index_path, Problem, Report},
    types::{Config, MtlsEnforcement, PolicySource},
};
use crate::policy::{PolicyLibrary, PolicyProblem};

/// Problems found inside named policy files, kept apart because they belong to another file.
#[derive(Debug, Default)]
struct NamedFileProblems {
    /// (policy name, path inside the file, message, first config path naming it).
    found: Vec<(String, String, String, String)>,
    seen: HashSet<(String, String, String)>,
}

/// Compiles each route of `config` with one [`PolicyLibrary`] for `policies_dir` and stores
/// the result in `Access::compiled`. Problems at config paths (inline policies, shortcuts,
/// missing names) go to `report`; problems inside a named policy file are returned, once per
/// file location (not once per route naming the file), with the file's own line numbers.
/// When `downstream_mtls` is set and its enforcement is not `policy`, every route gets
/// Pomerium's default `deny: invalid_client_certificate` rule.
pub(super) fn compile(config: &mut Config, report: &mut Report) -> Vec<Problem> {
    let mut library = PolicyLibrary::new(config.policies_dir.as_deref());
    let default_mtls_rule = config
        .downstream_mtls
        .as_ref()
        .is_some_and(|m| m.enforcement != MtlsEnforcement::Policy);
    // A bad policies_dir is reported already; naming files in it would only repeat that.
    let dir_failed = report.has_error_under("policies_dir");
    let mut in_files = NamedFileProblems::default();
    for route in &mut config.routes {
        if dir_failed && matches!(route.access.policy, Some(PolicySource::Named(_))) {
            continue;
        }
        let prefix = index_path("routes", route.index);
        match library.compile_route(&route.access, &prefix) {
            Ok(mut policy) => {
                if default_mtls_rule {
                    policy.add_default_client_certificate_rule();
                }
                route.access.compiled = Arc::new(policy);
            }
            Err(problems) => {
                for problem in problems {
                    match split_named(&problem) {
                        Some((config_path, name, inner)) => {
                            in_files.add(name, inner, &problem.message, config_path)
                        }
                        None => report.error(&problem.path, problem.message),
                    }
                }
            }
        }
    }
    in_files.finish(config.policies_dir.as_deref())
}

/// `routes[3].policy<admins>.allow.or[0]` → (`routes[3].policy`, `admins`, `allow.or[0]`):
/// the compiler marks where a named policy's document begins with `<NAME>`.
fn split_named(problem: &PolicyProblem) -> Option<(&str, &str, &str)> {
    let path = problem.path.as_str();
    let open = path.find('<')?;
    let close = open + path[open..].find('>')?;
    let inner = &path[close + 1..];
    Some((
        &path[..open],
        &path[open + 1..close],
        inner.strip_prefix('.').unwrap_or(inner),
    ))
}

// === impl NamedFileProblems ===

impl NamedFileProblems {
    fn add(&mut self, name: &str, inner: &str, message: &str, config_path: &str) {
        let key = (name.to_owned(), inner.to_owned(), message.to_owned());
        if self.seen.insert(key) {
            self.found.push((
                name.to_owned(),
                inner.to_owned(),
                message.to_owned(),
                config_path.to_owned(),
            ));
        }
    }

    fn finish(self, dir: Option<&Path>) -> Vec<Problem> {
        let mut indexes: Vec<(String, LineIndex)> = Vec::new();
        let mut problems = Vec::with_capacity(self.found.len());
        for (name, inner, message, config_path) in self.found {
            let file = dir.map_or_else(
                || PathBuf::from(format!("{name}.yaml")),
                |d| d.join(format!("{name}.yaml")),
            );
            let lines = match indexes.iter().position(|(n, _)| *n == name) {
                Some(i) => &indexes[i].1,
                None => {
                    // Only read again on this error path; the library keeps parsed values.
                    let text = std::fs::read_to_string(&file).unwrap_or_default();
                    indexes.push((name.clone(), LineIndex::build(&text)));
                    &indexes[indexes.len() - 1].1
                }
            };
            problems.push(Problem {
                file: file.display().to_string(),
                line: lines.line_of(&inner),
                path: inner,
                message: format!("{message} (policy `{name}`, named at {config_path})"),
            });
        }
        problems
    }
}

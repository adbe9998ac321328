//! A route's effective policy: its shortcuts OR-ed with its `policy` (inline PPL or a named
//! file in `policies_dir`).

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use serde_yaml::Value;

use super::{
    criterion::Criterion,
    matcher::{ListMatcher, StringMatcher},
    parse::{self, Problems, Rules},
    Node, Op, OpKind, Policy, PolicyProblem,
};
use crate::config::{Access, PolicySource};

/// Loads named policies from `policies_dir` once each and compiles routes against them. Use
/// one per configuration load so 10,000 routes naming one policy read its file once.
#[derive(Debug)]
pub struct PolicyLibrary {
    dir: Option<PathBuf>,
    /// name → parsed document, or why it could not be loaded.
    loaded: HashMap<String, Result<Value, String>>,
}

/// Compiles a route's access settings into its effective policy; see
/// [`PolicyLibrary::compile_route`]. Convenience for one route.
pub fn compile_route(
    access: &Access,
    policies_dir: Option<&Path>,
    path_prefix: &str,
) -> Result<Policy, Vec<PolicyProblem>> {
    PolicyLibrary::new(policies_dir).compile_route(access, path_prefix)
}

// === impl PolicyLibrary ===

impl PolicyLibrary {
    /// A library reading `NAME.yaml` files from `dir` (`None`: named policies are errors).
    pub fn new(dir: Option<&Path>) -> PolicyLibrary {
        PolicyLibrary {
            dir: dir.map(Path::to_path_buf),
            loaded: HashMap::new(),
        }
    }

    /// Compiles a route's access settings into its effective policy: one allow rule OR-ing
    /// the shortcuts (`allow_public_unauthenticated_access` → `accept`,
    /// `allow_any_authenticated_user` → `authenticated_user`, `allowed_users` → `user` or
    /// (verified) `email` is the entry, as Pomerium, `allowed_domains` → `domain`,
    /// `allowed_groups` → `groups has`), plus the rules of `policy`. Deny wins; no allow →
    /// deny. `path_prefix` is the route's location (`routes[3]`); every problem is returned.
    pub fn compile_route(
        &mut self,
        access: &Access,
        path_prefix: &str,
    ) -> Result<Policy, Vec<PolicyProblem>> {
        let Access {
            allow_public_unauthenticated_access: public,
            allow_any_authenticated_user: any_user,
            allowed_users,
            allowed_domains,
            allowed_groups,
            policy,
            pass_identity_headers: _,
            compiled: _,
        } = access;
        let mut p = Problems::default();
        let lists =
            !allowed_users.is_empty() || !allowed_domains.is_empty() || !allowed_groups.is_empty();
        if *public && (*any_user || lists) {
            p.push(
                &format!("{path_prefix}.allow_public_unauthenticated_access"),
                "a public route cannot also have allow_any_authenticated_user or allowed_* lists",
            );
        }
        if *any_user && lists {
            p.push(
                &format!("{path_prefix}.allow_any_authenticated_user"),
                "a route open to any authenticated user cannot also have allowed_* lists",
            );
        }

        let mut shortcuts = Vec::new();
        if *public {
            shortcuts.push(Criterion::Accept);
        }
        if *any_user {
            shortcuts.push(Criterion::AuthenticatedUser);
        }
        let mut each = |key: &str, list: &[String], f: &mut dyn FnMut(&str)| {
            for (i, entry) in list.iter().enumerate() {
                if entry.trim().is_empty() {
                    p.push(&format!("{path_prefix}.{key}[{i}]"), "empty string");
                } else {
                    f(entry);
                }
            }
        };
        each("allowed_users", allowed_users, &mut |u| {
            shortcuts.push(Criterion::User(StringMatcher::is(u, false)));
            shortcuts.push(Criterion::Email(StringMatcher::is(u, false)));
        });
        each("allowed_domains", allowed_domains, &mut |d| {
            shortcuts.push(Criterion::Domain(StringMatcher::is(d, true)));
        });
        each("allowed_groups", allowed_groups, &mut |g| {
            shortcuts.push(Criterion::Groups(ListMatcher::has(g)))
        });

        let mut rules = Rules::default();
        if !shortcuts.is_empty() {
            let children: Vec<Node> = shortcuts.into_iter().map(Node::Criterion).collect();
            rules.allow.push(Op {
                kind: OpKind::Or,
                children: children.into(),
            });
        }
        if let Some(source) = policy {
            self.parse_source(source, &format!("{path_prefix}.policy"), &mut p, &mut rules);
        }
        if p.list.is_empty() {
            Ok(Policy::from_rules(rules))
        } else {
            Err(p.list)
        }
    }

    /// Compiles just a policy source (inline or named); problem locations start at `path`.
    pub fn compile_source(
        &mut self,
        source: &PolicySource,
        path: &str,
    ) -> Result<Policy, Vec<PolicyProblem>> {
        let mut p = Problems::default();
        let mut rules = Rules::default();
        self.parse_source(source, path, &mut p, &mut rules);
        if p.list.is_empty() {
            Ok(Policy::from_rules(rules))
        } else {
            Err(p.list)
        }
    }

    fn parse_source(
        &mut self,
        source: &PolicySource,
        path: &str,
        p: &mut Problems,
        rules: &mut Rules,
    ) {
        match source {
            PolicySource::Inline(Value::Null) => p.push(path, "empty policy"),
            PolicySource::Inline(doc) => parse::parse_document(doc, path, p, rules),
            PolicySource::Named(name) => match self.load(name) {
                Ok(doc) => parse::parse_document(doc, &format!("{path}<{name}>"), p, rules),
                Err(e) => p.push(path, e.clone()),
            },
        }
    }

    fn load(&mut self, name: &str) -> &Result<Value, String> {
        let dir = self.dir.clone();
        self.loaded
            .entry(name.to_owned())
            .or_insert_with(|| load_named(dir.as_deref(), name))
    }
}

fn load_named(dir: Option<&Path>, name: &str) -> Result<Value, String> {
    let valid = !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !valid {
        return Err(format!(
            "`{name}` is not a policy name (letters, digits, `-`, `_`, `.`; the file is \
             policies_dir/NAME.yaml)"
        ));
    }
    let Some(dir) = dir else {
        return Err(format!(
            "policy `{name}` is named but no policies_dir is configured"
        ));
    };
    let file = dir.join(format!("{name}.yaml"));
    let text = std::fs::read_to_string(&file).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!(
            "no policy named `{name}` ({} does not exist)",
            file.display()
        ),
        _ => format!("cannot read {}: {e}", file.display()),
    })?;
    match serde_yaml::from_str::<Value>(&text) {
        Ok(Value::Null) => Err(format!("{} is empty", file.display())),
        Ok(v) => Ok(v),
        Err(e) => Err(format!("{}: invalid YAML: {e}", file.display())),
    }
}

//! PPL documents (`serde_yaml::Value`) → rules of operators and criteria, collecting every
//! problem with its location instead of stopping at the first.

use serde_yaml::Value;

use super::{criterion::Criterion, Node, Op, OpKind, PolicyProblem};

/// Operators may nest (a gatehouse extension); this bounds the nesting so hostile input
/// cannot exhaust the stack.
const MAX_DEPTH: usize = 16;

/// Problems found so far, each with its location.
#[derive(Debug, Default)]
pub(crate) struct Problems {
    pub(crate) list: Vec<PolicyProblem>,
}

/// The allow and deny operators of a policy, in document order.
#[derive(Debug, Default)]
pub(crate) struct Rules {
    pub(crate) allow: Vec<Op>,
    pub(crate) deny: Vec<Op>,
}

// === impl Problems ===

impl Problems {
    pub(crate) fn push(&mut self, path: &str, message: impl Into<String>) {
        self.list.push(PolicyProblem {
            path: path.to_owned(),
            message: message.into(),
        });
    }
}

/// A short name of a value's type for messages: `a list`, `an object`, …
pub(crate) fn describe(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "an object",
        Value::Tagged(_) => "a tagged value",
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// Parses a policy document — one rule object or a list of them — into `out`.
pub(crate) fn parse_document(v: &Value, path: &str, p: &mut Problems, out: &mut Rules) {
    match v {
        Value::Mapping(_) => parse_rule_object(v, path, p, out),
        Value::Sequence(items) => {
            for (i, item) in items.iter().enumerate() {
                parse_rule_object(item, &format!("{path}[{i}]"), p, out);
            }
        }
        other => p.push(
            path,
            format!(
                "expected a policy (an object with allow/deny, or a list of them), got {}",
                describe(other)
            ),
        ),
    }
}

fn parse_rule_object(v: &Value, path: &str, p: &mut Problems, out: &mut Rules) {
    let Value::Mapping(map) = v else {
        p.push(
            path,
            format!(
                "expected a rule object with `allow` and/or `deny`, got {}",
                describe(v)
            ),
        );
        return;
    };
    for (k, body) in map {
        let sub = join(path, k.as_str().unwrap_or("?"));
        let target = match k.as_str() {
            Some("allow") => &mut out.allow,
            Some("deny") => &mut out.deny,
            _ => {
                let shown = k.as_str().unwrap_or(describe(k));
                p.push(
                    &sub,
                    format!("unknown action `{shown}` (expected allow or deny)"),
                );
                continue;
            }
        };
        let Value::Mapping(ops) = body else {
            p.push(
                &sub,
                format!(
                    "expected an object of operators (and, or, not, nor), got {}",
                    describe(body)
                ),
            );
            continue;
        };
        for (ok, ov) in ops {
            let op_path = join(&sub, ok.as_str().unwrap_or("?"));
            match ok.as_str().and_then(OpKind::from_name) {
                Some(kind) => {
                    if let Some(op) = parse_op(kind, ov, &op_path, p, 0) {
                        target.push(op);
                    }
                }
                None => {
                    let shown = ok.as_str().unwrap_or(describe(ok));
                    p.push(
                        &op_path,
                        format!("unknown operator `{shown}` (expected and, or, not or nor)"),
                    );
                }
            }
        }
    }
}

fn parse_op(kind: OpKind, v: &Value, path: &str, p: &mut Problems, depth: usize) -> Option<Op> {
    let Value::Sequence(items) = v else {
        p.push(
            path,
            format!("expected a list of criteria, got {}", describe(v)),
        );
        return None;
    };
    if depth >= MAX_DEPTH {
        p.push(path, format!("operators nested deeper than {MAX_DEPTH}"));
        return None;
    }
    let mut children = Vec::with_capacity(items.len());
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let item_path = format!("{path}[{i}]");
        match parse_node(item, &item_path, p, depth) {
            Some(n) => children.push(n),
            None => ok = false,
        }
    }
    ok.then(|| Op {
        kind,
        children: children.into(),
    })
}

fn parse_node(v: &Value, path: &str, p: &mut Problems, depth: usize) -> Option<Node> {
    let Value::Mapping(map) = v else {
        p.push(
            path,
            format!(
                "expected a criterion object like `email: {{is: …}}`, got {}",
                describe(v)
            ),
        );
        return None;
    };
    let mut entries = map.iter();
    let (Some((k, val)), None) = (entries.next(), entries.next()) else {
        p.push(
            path,
            format!(
                "a criterion object has exactly one key, this one has {} (list each criterion as \
                 its own item)",
                map.len()
            ),
        );
        return None;
    };
    let Some(key) = k.as_str() else {
        p.push(
            path,
            format!("criterion names are strings, got {}", describe(k)),
        );
        return None;
    };
    let sub = join(path, key);
    match OpKind::from_name(key) {
        Some(kind) => parse_op(kind, val, &sub, p, depth + 1).map(Node::Op),
        None => Criterion::parse(key, val, &sub, p).map(Node::Criterion),
    }
}

//! PPL's string matcher (`is`, `not`, `starts_with`, `ends_with`, `contains`, `in`, `not_in`)
//! and list matcher (`has`, `is`, `exclude`): parsing and allocation-free matching.

use std::cmp::Ordering;

use serde_yaml::Value;

use super::{
    facts::ClaimValue,
    parse::{describe, Problems},
};

/// A compiled string matcher: every operator of the object must hold (as in Pomerium).
#[derive(Debug, Clone)]
pub(crate) struct StringMatcher {
    ops: Box<[StringOp]>,
    /// Compare ASCII-case-insensitively (literals are stored lower-cased).
    fold_case: bool,
}

#[derive(Debug, Clone)]
enum StringOp {
    Is(Box<str>),
    Not(Box<str>),
    StartsWith(Box<str>),
    EndsWith(Box<str>),
    Contains(Box<str>),
    /// Sorted (by folded bytes when folding), for binary search.
    In(Box<[Box<str>]>),
    NotIn(Box<[Box<str>]>),
}

/// A compiled list matcher over a list of values (groups, claim values): every operator holds.
#[derive(Debug, Clone)]
pub(crate) struct ListMatcher {
    ops: Box<[ListOp]>,
}

#[derive(Debug, Clone)]
enum ListOp {
    /// Some element equals the value.
    Has(Scalar),
    /// The list is exactly one element, equal to the value.
    Is(Scalar),
    /// No element equals the value.
    Exclude(Scalar),
}

/// A literal of a list matcher.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scalar {
    Str(Box<str>),
    Bool(bool),
    Num(f64),
}

/// Values a list matcher can compare against a [`Scalar`].
pub(crate) trait ScalarEq {
    fn eq_scalar(&self, s: &Scalar) -> bool;
}

// === impl StringMatcher ===

impl StringMatcher {
    /// Parses a string matcher (a bare string means `is`). Reports problems under `path`;
    /// `None` if anything was wrong.
    pub(crate) fn parse(v: &Value, path: &str, fold_case: bool, p: &mut Problems) -> Option<Self> {
        let fold = |s: &str| -> Box<str> {
            if fold_case {
                s.to_ascii_lowercase().into()
            } else {
                s.into()
            }
        };
        let map = match v {
            Value::String(_) => {
                let lit = nonempty_str(v, path, p)?;
                return Some(StringMatcher {
                    ops: Box::new([StringOp::Is(fold(lit))]),
                    fold_case,
                });
            }
            Value::Mapping(m) => m,
            other => {
                p.push(
                    path,
                    format!(
                        "expected a string or a string matcher object, got {}",
                        describe(other)
                    ),
                );
                return None;
            }
        };
        let ops = parse_operators(map, path, "string", p, |key, val, sub, p| match key {
            "is" | "not" | "starts_with" | "ends_with" | "contains" => nonempty_str(val, sub, p)
                .map(|s| match key {
                    "is" => StringOp::Is(fold(s)),
                    "not" => StringOp::Not(fold(s)),
                    "starts_with" => StringOp::StartsWith(fold(s)),
                    "ends_with" => StringOp::EndsWith(fold(s)),
                    _ => StringOp::Contains(fold(s)),
                }),
            "in" | "not_in" => parse_str_list(val, sub, p).map(|list| {
                let mut list: Vec<Box<str>> = list.into_iter().map(fold).collect();
                list.sort_unstable();
                list.dedup();
                if key == "in" {
                    StringOp::In(list.into())
                } else {
                    StringOp::NotIn(list.into())
                }
            }),
            other => {
                p.push(
                    sub,
                    format!(
                        "unknown string matcher `{other}` (expected is, not, starts_with, \
                         ends_with, contains, in or not_in)"
                    ),
                );
                None
            }
        })?;
        Some(StringMatcher {
            ops: ops.into(),
            fold_case,
        })
    }

    /// A matcher for exactly `s` (used by route shortcuts).
    pub(crate) fn is(s: &str, fold_case: bool) -> Self {
        let lit: Box<str> = if fold_case {
            s.to_ascii_lowercase().into()
        } else {
            s.into()
        };
        StringMatcher {
            ops: Box::new([StringOp::Is(lit)]),
            fold_case,
        }
    }

    /// Whether `s` satisfies every operator.
    pub(crate) fn matches(&self, s: &str) -> bool {
        self.ops.iter().all(|op| op.matches(s, self.fold_case))
    }
}

impl StringOp {
    fn matches(&self, s: &str, fold: bool) -> bool {
        let (s, b) = (s.as_bytes(), fold);
        match self {
            StringOp::Is(lit) => eq(s, lit.as_bytes(), b),
            StringOp::Not(lit) => !eq(s, lit.as_bytes(), b),
            StringOp::StartsWith(lit) => {
                s.len() >= lit.len() && eq(&s[..lit.len()], lit.as_bytes(), b)
            }
            StringOp::EndsWith(lit) => {
                s.len() >= lit.len() && eq(&s[s.len() - lit.len()..], lit.as_bytes(), b)
            }
            StringOp::Contains(lit) => s.windows(lit.len()).any(|w| eq(w, lit.as_bytes(), b)),
            StringOp::In(list) => contains_sorted(list, s, b),
            StringOp::NotIn(list) => !contains_sorted(list, s, b),
        }
    }
}

fn eq(a: &[u8], lit: &[u8], fold: bool) -> bool {
    if fold {
        a.eq_ignore_ascii_case(lit)
    } else {
        a == lit
    }
}

fn contains_sorted(list: &[Box<str>], s: &[u8], fold: bool) -> bool {
    list.binary_search_by(|lit| {
        if fold {
            let a = lit.bytes();
            let b = s.iter().map(u8::to_ascii_lowercase);
            a.cmp(b)
        } else {
            lit.as_bytes().cmp(s)
        }
    })
    .is_ok()
}

fn nonempty_str<'v>(v: &'v Value, path: &str, p: &mut Problems) -> Option<&'v str> {
    match v {
        Value::String(s) if s.is_empty() => {
            p.push(path, "empty string");
            None
        }
        Value::String(s) => Some(s),
        other => {
            p.push(path, format!("expected a string, got {}", describe(other)));
            None
        }
    }
}

fn parse_str_list<'v>(v: &'v Value, path: &str, p: &mut Problems) -> Option<Vec<&'v str>> {
    let Value::Sequence(items) = v else {
        p.push(
            path,
            format!("expected a list of strings, got {}", describe(v)),
        );
        return None;
    };
    if items.is_empty() {
        p.push(path, "empty list");
        return None;
    }
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        match nonempty_str(item, &format!("{path}[{i}]"), p) {
            Some(s) => out.push(s),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

// === impl ListMatcher ===

impl ListMatcher {
    /// Parses a list matcher (a bare scalar means `has`). With `strings_only`, literals must be
    /// strings (groups); otherwise booleans and numbers are allowed too (claims).
    pub(crate) fn parse(
        v: &Value,
        path: &str,
        strings_only: bool,
        p: &mut Problems,
    ) -> Option<Self> {
        let map = match v {
            Value::Mapping(m) => m,
            scalar => {
                let s = Scalar::parse(scalar, path, strings_only, p)?;
                return Some(ListMatcher {
                    ops: Box::new([ListOp::Has(s)]),
                });
            }
        };
        let ops = parse_operators(map, path, "list", p, |key, val, sub, p| match key {
            "has" => Scalar::parse(val, sub, strings_only, p).map(ListOp::Has),
            "is" => Scalar::parse(val, sub, strings_only, p).map(ListOp::Is),
            "exclude" => Scalar::parse(val, sub, strings_only, p).map(ListOp::Exclude),
            other => {
                p.push(
                    sub,
                    format!("unknown list matcher `{other}` (expected has, is or exclude)"),
                );
                None
            }
        })?;
        Some(ListMatcher { ops: ops.into() })
    }

    /// A matcher for lists that contain `s` (used by route shortcuts).
    pub(crate) fn has(s: &str) -> Self {
        ListMatcher {
            ops: Box::new([ListOp::Has(Scalar::Str(s.into()))]),
        }
    }

    /// Whether `items` satisfies every operator.
    pub(crate) fn matches<T: ScalarEq>(&self, items: &[T]) -> bool {
        self.ops.iter().all(|op| match op {
            ListOp::Has(s) => items.iter().any(|i| i.eq_scalar(s)),
            ListOp::Is(s) => items.len() == 1 && items[0].eq_scalar(s),
            ListOp::Exclude(s) => !items.iter().any(|i| i.eq_scalar(s)),
        })
    }
}

// === impl Scalar ===

impl Scalar {
    fn parse(v: &Value, path: &str, strings_only: bool, p: &mut Problems) -> Option<Scalar> {
        match v {
            Value::String(s) if s.is_empty() => {
                p.push(path, "empty string");
                None
            }
            Value::String(s) => Some(Scalar::Str(s.as_str().into())),
            Value::Bool(b) if !strings_only => Some(Scalar::Bool(*b)),
            Value::Number(n) if !strings_only => match n.as_f64() {
                Some(f) => Some(Scalar::Num(f)),
                None => {
                    p.push(path, "number out of range");
                    None
                }
            },
            Value::Sequence(_) => {
                p.push(
                    path,
                    "expected a single value, got a list (to accept any of several values, put \
                     one criterion per value under `or`)",
                );
                None
            }
            other => {
                let want = if strings_only {
                    "a string"
                } else {
                    "a string, number or boolean"
                };
                p.push(path, format!("expected {want}, got {}", describe(other)));
                None
            }
        }
    }
}

impl ScalarEq for String {
    fn eq_scalar(&self, s: &Scalar) -> bool {
        matches!(s, Scalar::Str(lit) if **lit == **self)
    }
}

impl ScalarEq for ClaimValue {
    fn eq_scalar(&self, s: &Scalar) -> bool {
        match (self, s) {
            (ClaimValue::String(a), Scalar::Str(b)) => a.as_str() == &**b,
            (ClaimValue::Bool(a), Scalar::Bool(b)) => a == b,
            (ClaimValue::Number(a), Scalar::Num(b)) => a.partial_cmp(b) == Some(Ordering::Equal),
            _ => false,
        }
    }
}

/// Parses every `operator: value` entry of a matcher object with `op` (which reports its own
/// problems under the entry's path). `None` if the object is empty or any entry is wrong;
/// every entry is still examined so all problems are reported.
fn parse_operators<T>(
    map: &serde_yaml::Mapping,
    path: &str,
    kind: &str,
    p: &mut Problems,
    mut op: impl FnMut(&str, &Value, &str, &mut Problems) -> Option<T>,
) -> Option<Vec<T>> {
    if map.is_empty() {
        p.push(
            path,
            format!("empty {kind} matcher (it would match everything)"),
        );
        return None;
    }
    let mut ops = Vec::with_capacity(map.len());
    let mut ok = true;
    for (k, val) in map {
        let Some(key) = k.as_str() else {
            p.push(
                path,
                format!("matcher keys must be strings, got {}", describe(k)),
            );
            ok = false;
            continue;
        };
        match op(key, val, &format!("{path}.{key}"), p) {
            Some(o) => ops.push(o),
            None => ok = false,
        }
    }
    ok.then_some(ops)
}

//! The policy language: a Pomerium-PPL-compatible parser, a compiled form, and a pure
//! evaluation `(policy, subject, request facts, now) → Decision`.
//!
//! Semantics follow Pomerium's generated Rego exactly, including how reasons propagate:
//! every criterion yields `(holds, reason)`; `and`/`or` keep the reasons of the children that
//! decided the result (all true ones when it holds, all false ones when it does not); `not` and
//! `nor` invert each child first. An action's operators are OR-ed. The decision then is, in
//! order: a deny carrying `client-certificate-required`/`invalid-client-certificate` → deny;
//! any `user-unauthenticated` (allow or deny side) → [`Decision::NeedsLogin`]; deny holds →
//! deny; allow holds → allow; else deny with the allow side's reasons.
//!
//! This module knows nothing of HTTP libraries, Pingora, tokio or Redis.

use std::{fmt, time::SystemTime};

use chrono::{DateTime, Utc};

mod compile;
mod criterion;
mod facts;
mod matcher;
mod parse;
mod reason;
pub mod table_test;
mod time;

pub use compile::{compile_route, PolicyLibrary};
pub use facts::{ClaimValue, ClientCertFacts, ClientCertificate, FactSet, RequestFacts, Subject};
pub use reason::{Reason, Reasons};

use criterion::{Criterion, Input, Outcome};

/// A compiled policy: the allow and deny rules of one route. Immutable and cheap to
/// evaluate; built by [`compile_route`] or [`Policy::parse`].
#[derive(Debug, Clone)]
pub struct Policy {
    allow: Box<[Op]>,
    deny: Box<[Op]>,
    reads: FactSet,
}

/// The outcome of evaluating a policy for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Access granted. Only a [`Permit`] allows identity headers to be added upstream.
    Allow(Permit),
    /// Access refused (403), with the reasons of the side that decided.
    Deny(Reasons),
    /// Nobody is signed in and the policy needs a user: start a login (302/401).
    NeedsLogin,
}

/// Proof that a policy allowed a request. Only this module creates one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permit {
    reasons: Reasons,
}

/// One thing wrong with a policy, with where it is (`routes[3].policy.allow.and[1]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyProblem {
    /// The location, as a key path into the configuration or policy file.
    pub path: String,
    /// What is wrong, for a person.
    pub message: String,
}

/// An operator and its children.
#[derive(Debug, Clone)]
pub(crate) struct Op {
    kind: OpKind,
    children: Box<[Node]>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpKind {
    /// All hold.
    And,
    /// Any holds.
    Or,
    /// None holds.
    Not,
    /// Not all hold.
    Nor,
}

/// An operator's child: a criterion, or (a gatehouse extension) a nested operator.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    Op(Op),
    Criterion(Criterion),
}

/// Evaluates `policy` for one request; see the module docs for the rules. Pure: the same
/// inputs give the same decision. Does not allocate. `now` is only read by time criteria.
pub fn evaluate(
    policy: &Policy,
    subject: Option<&Subject>,
    facts: &RequestFacts<'_>,
    now: SystemTime,
) -> Decision {
    let now = if policy.reads.contains(FactSet::TIME) {
        DateTime::<Utc>::from(now)
    } else {
        DateTime::<Utc>::UNIX_EPOCH
    };
    let input = Input {
        subject,
        facts,
        now,
    };
    let allow = eval_action(&policy.allow, &input);
    let deny = eval_action(&policy.deny, &input);

    // Pomerium's order: a missing or bad client certificate is refused outright (never a
    // login redirect); then a missing user; then deny beats allow.
    if deny.reasons.contains(Reason::ClientCertificateRequired)
        || deny.reasons.contains(Reason::InvalidClientCertificate)
    {
        return Decision::Deny(deny.reasons);
    }
    if allow
        .reasons
        .union(deny.reasons)
        .contains(Reason::UserUnauthenticated)
    {
        return Decision::NeedsLogin;
    }
    if deny.holds {
        return Decision::Deny(deny.reasons);
    }
    if allow.holds {
        return Decision::Allow(Permit {
            reasons: allow.reasons,
        });
    }
    Decision::Deny(allow.reasons)
}

fn eval_action(ops: &[Op], input: &Input<'_>) -> Outcome {
    merge(OpKind::Or, ops.iter().map(|op| op.eval(input)))
}

/// Pomerium's `merge_with_and`/`merge_with_or` (with inversion for `not`/`nor`). An empty
/// operator holds nothing.
fn merge(kind: OpKind, outcomes: impl Iterator<Item = Outcome>) -> Outcome {
    let (mut t, mut f) = (Reasons::EMPTY, Reasons::EMPTY);
    let (mut any_true, mut any_false) = (false, false);
    for o in outcomes {
        if o.holds {
            any_true = true;
            t = t.union(o.reasons);
        } else {
            any_false = true;
            f = f.union(o.reasons);
        }
    }
    if !any_true && !any_false {
        return Outcome {
            holds: false,
            reasons: Reasons::EMPTY,
        };
    }
    let (holds, reasons) = match kind {
        OpKind::And if !any_false => (true, t),
        OpKind::And => (false, f),
        OpKind::Or if any_true => (true, t),
        OpKind::Or => (false, f),
        OpKind::Not if !any_true => (true, f),
        OpKind::Not => (false, t),
        OpKind::Nor if any_false => (true, f),
        OpKind::Nor => (false, t),
    };
    Outcome { holds, reasons }
}

// === impl Policy ===

impl Policy {
    /// Compiles a PPL document (one rule object or a list of them) found at `path` (used as
    /// the prefix of problem locations). Every problem is reported, not just the first.
    pub fn parse(doc: &serde_yaml::Value, path: &str) -> Result<Policy, Vec<PolicyProblem>> {
        let mut problems = parse::Problems::default();
        let mut rules = parse::Rules::default();
        parse::parse_document(doc, path, &mut problems, &mut rules);
        if problems.list.is_empty() {
            Ok(Policy::from_rules(rules))
        } else {
            Err(problems.list)
        }
    }

    /// A policy with no rules: denies everything (no allow → deny).
    pub fn deny_all() -> Policy {
        Policy::from_rules(parse::Rules::default())
    }

    pub(crate) fn from_rules(rules: parse::Rules) -> Policy {
        let reads = rules
            .allow
            .iter()
            .chain(&rules.deny)
            .fold(FactSet::NONE, |acc, op| acc.union(op.reads()));
        Policy {
            allow: rules.allow.into(),
            deny: rules.deny.into(),
            reads,
        }
    }

    /// The request facts this policy reads; a decision cache keys on exactly these (and uses
    /// [`Policy::next_time_boundary`] for [`FactSet::TIME`]).
    pub fn facts_read(&self) -> FactSet {
        self.reads
    }

    /// The earliest instant after `now` at which a time criterion of this policy may change
    /// its result (a date bound, local midnight, a `time_of_day` bound, or a UTC-offset change
    /// of a criterion's time zone). `None` when the policy reads no time. A decision made at
    /// `now` stays valid until then.
    pub fn next_time_boundary(&self, now: SystemTime) -> Option<SystemTime> {
        if !self.reads.contains(FactSet::TIME) {
            return None;
        }
        let now = DateTime::<Utc>::from(now);
        let mut best: Option<DateTime<Utc>> = None;
        for op in self.allow.iter().chain(self.deny.iter()) {
            op.visit(&mut |c| {
                if let Some(t) = c.next_boundary(now) {
                    best = Some(best.map_or(t, |b| b.min(t)));
                }
            });
        }
        best.map(SystemTime::from)
    }

    /// Adds Pomerium's default mTLS rule, `deny: {or: [invalid_client_certificate]}`: call it
    /// for every route when `downstream_mtls` has a CA and its enforcement is not `policy`.
    pub fn add_default_client_certificate_rule(&mut self) {
        let op = Op {
            kind: OpKind::Or,
            children: Box::new([Node::Criterion(Criterion::InvalidClientCertificate)]),
        };
        let mut deny = std::mem::take(&mut self.deny).into_vec();
        deny.push(op);
        self.deny = deny.into();
        self.reads = self.reads.union(FactSet::CLIENT_CERT);
    }

    /// Same as the free function [`evaluate`].
    pub fn evaluate(
        &self,
        subject: Option<&Subject>,
        facts: &RequestFacts<'_>,
        now: SystemTime,
    ) -> Decision {
        evaluate(self, subject, facts, now)
    }
}

impl Default for Policy {
    /// [`Policy::deny_all`].
    fn default() -> Policy {
        Policy::deny_all()
    }
}

// === impl Op ===

impl Op {
    fn eval(&self, input: &Input<'_>) -> Outcome {
        merge(
            self.kind,
            self.children.iter().map(|child| match child {
                Node::Op(op) => op.eval(input),
                Node::Criterion(c) => c.eval(input),
            }),
        )
    }

    fn reads(&self) -> FactSet {
        let mut reads = FactSet::NONE;
        self.visit(&mut |c| reads = reads.union(c.reads()));
        reads
    }

    fn visit(&self, f: &mut dyn FnMut(&Criterion)) {
        for child in self.children.iter() {
            match child {
                Node::Op(op) => op.visit(f),
                Node::Criterion(c) => f(c),
            }
        }
    }
}

// === impl OpKind ===

impl OpKind {
    /// The operator named `s`, if any.
    pub(crate) fn from_name(s: &str) -> Option<OpKind> {
        match s {
            "and" => Some(OpKind::And),
            "or" => Some(OpKind::Or),
            "not" => Some(OpKind::Not),
            "nor" => Some(OpKind::Nor),
            _ => None,
        }
    }
}

// === impl Decision ===

impl Decision {
    /// `allow`, `deny` or `login`: the outcome's name in logs, metrics and table tests.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Decision::Allow(_) => "allow",
            Decision::Deny(_) => "deny",
            Decision::NeedsLogin => "login",
        }
    }

    /// The reasons behind the decision (`user-unauthenticated` for [`Decision::NeedsLogin`]).
    pub fn reasons(&self) -> Reasons {
        match self {
            Decision::Allow(p) => p.reasons,
            Decision::Deny(r) => *r,
            Decision::NeedsLogin => Reasons::one(Reason::UserUnauthenticated),
        }
    }

    /// The permit, when allowed.
    pub fn permit(&self) -> Option<&Permit> {
        match self {
            Decision::Allow(p) => Some(p),
            _ => None,
        }
    }
}

// === impl Permit ===

impl Permit {
    /// Why access was granted (e.g. `groups-ok`).
    pub fn reasons(&self) -> Reasons {
        self.reasons
    }
}

// === impl PolicyProblem ===

impl fmt::Display for PolicyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

#[cfg(test)]
mod tests;

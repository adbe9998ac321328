//! Operator laws and "deny always wins", as properties over random policies.

use proptest::prelude::*;

use super::*;

/// A random criterion tree: leaves are `accept`, `reject`, `groups: gN` and
/// `http_method: GET`; inner nodes are operators.
#[derive(Debug, Clone)]
enum Tree {
    Leaf(u8),
    Op(&'static str, Vec<Tree>),
}

const OPS: [&str; 4] = ["and", "or", "not", "nor"];

fn tree() -> impl Strategy<Value = Tree> {
    let leaf = (0u8..7).prop_map(Tree::Leaf);
    leaf.prop_recursive(3, 16, 4, |inner| {
        (
            prop::sample::select(&OPS[..]),
            prop::collection::vec(inner, 0..4),
        )
            .prop_map(|(op, c)| Tree::Op(op, c))
    })
}

/// Top-level operators of one action (each an operator over children).
fn action() -> impl Strategy<Value = Vec<(&'static str, Vec<Tree>)>> {
    prop::collection::vec(
        (
            prop::sample::select(&OPS[..]),
            prop::collection::vec(tree(), 1..4),
        ),
        0..3,
    )
}

impl Tree {
    fn yaml(&self) -> String {
        match self {
            Tree::Leaf(0) => "{accept: true}".into(),
            Tree::Leaf(1) => "{reject: true}".into(),
            Tree::Leaf(6) => "{http_method: GET}".into(),
            Tree::Leaf(n) => format!("{{groups: g{}}}", n - 2),
            Tree::Op(op, c) => format!(
                "{{{op}: [{}]}}",
                c.iter().map(Tree::yaml).collect::<Vec<_>>().join(", ")
            ),
        }
    }

    /// Plain boolean meaning, for a signed-in subject with groups `mask` and method `get`.
    fn holds(&self, mask: u8, get: bool) -> bool {
        match self {
            Tree::Leaf(0) => true,
            Tree::Leaf(1) => false,
            Tree::Leaf(6) => get,
            Tree::Leaf(n) => mask & (1 << (n - 2)) != 0,
            Tree::Op(_, c) if c.is_empty() => false,
            Tree::Op("and", c) => c.iter().all(|t| t.holds(mask, get)),
            Tree::Op("or", c) => c.iter().any(|t| t.holds(mask, get)),
            Tree::Op("not", c) => !c.iter().any(|t| t.holds(mask, get)),
            Tree::Op(_, c) => !c.iter().all(|t| t.holds(mask, get)),
        }
    }
}

fn action_yaml(name: &str, ops: &[(&'static str, Vec<Tree>)]) -> String {
    let body: Vec<String> = ops
        .iter()
        .map(|(op, c)| {
            format!(
                "{{{name}: {{{op}: [{}]}}}}",
                c.iter().map(Tree::yaml).collect::<Vec<_>>().join(", ")
            )
        })
        .collect();
    body.join(", ")
}

fn action_holds(ops: &[(&'static str, Vec<Tree>)], mask: u8, get: bool) -> bool {
    ops.iter()
        .any(|(op, c)| Tree::Op(op, c.clone()).holds(mask, get))
}

fn compile(allow: &[(&'static str, Vec<Tree>)], deny: &[(&'static str, Vec<Tree>)]) -> Policy {
    let parts: Vec<String> = [action_yaml("allow", allow), action_yaml("deny", deny)]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect();
    policy(&format!("[{}]", parts.join(", ")))
}

fn subject(mask: u8) -> Subject {
    Subject {
        groups: (0..4)
            .filter(|i| mask & (1 << i) != 0)
            .map(|i| format!("g{i}"))
            .collect(),
        ..user()
    }
}

fn facts(get: bool) -> RequestFacts<'static> {
    RequestFacts::new(if get { "GET" } else { "POST" }, "/", None)
}

fn decide(p: &Policy, s: Option<&Subject>, get: bool) -> Decision {
    evaluate(p, s, &facts(get), SystemTime::UNIX_EPOCH)
}

/// The decision of `allow: {or: [<t>]}`: it reflects both whether `t` held and its reasons.
fn meaning(t: &Tree, s: Option<&Subject>, get: bool) -> Decision {
    decide(&policy(&format!("allow: {{or: [{}]}}", t.yaml())), s, get)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn decisions_match_boolean_semantics(allow in action(), deny in action(), mask in 0u8..16, get: bool) {
        let p = compile(&allow, &deny);
        let d = decide(&p, Some(&subject(mask)), get);
        let want_allow = action_holds(&allow, mask, get) && !action_holds(&deny, mask, get);
        prop_assert_eq!(matches!(d, Decision::Allow(_)), want_allow, "{:?}", d);
        prop_assert!(d != Decision::NeedsLogin);
    }

    #[test]
    fn deny_always_wins(allow in action(), deny in action(), mask in 0u8..16, get: bool, anon: bool) {
        let s = subject(mask);
        let s = (!anon).then_some(&s);
        let p = compile(&allow, &deny);
        if !anon && action_holds(&deny, mask, get) {
            prop_assert!(matches!(decide(&p, s, get), Decision::Deny(_)));
        }
        // Adding deny rules never turns a refusal into an allow, signed in or not.
        let without = compile(&allow, &[]);
        if matches!(decide(&p, s, get), Decision::Allow(_)) {
            prop_assert!(matches!(decide(&without, s, get), Decision::Allow(_)));
        }
        // With a deny rule that always holds, nothing is ever allowed.
        let mut all_deny = deny.clone();
        all_deny.push(("or", vec![Tree::Leaf(0)]));
        prop_assert!(!matches!(decide(&compile(&allow, &all_deny), s, get), Decision::Allow(_)));
    }

    #[test]
    fn operator_laws(a in tree(), b in tree(), mask in 0u8..16, get: bool, anon: bool) {
        let s = subject(mask);
        let s = (!anon).then_some(&s);
        let m = |t: Tree| meaning(&t, s, get);
        let op = |o: &'static str, c: Vec<Tree>| Tree::Op(o, c);
        let (a2, b2) = (a.clone(), b.clone());
        // `not` = and of negations; `nor` = or of negations (De Morgan, reasons included).
        prop_assert_eq!(m(op("not", vec![a2.clone(), b2.clone()])),
            m(op("and", vec![op("not", vec![a2.clone()]), op("not", vec![b2.clone()])])));
        prop_assert_eq!(m(op("nor", vec![a2.clone(), b2.clone()])),
            m(op("or", vec![op("not", vec![a2.clone()]), op("not", vec![b2.clone()])])));
        // Commutativity.
        for o in OPS {
            prop_assert_eq!(m(op(o, vec![a2.clone(), b2.clone()])), m(op(o, vec![b2.clone(), a2.clone()])));
        }
        // Single-child and/or are the child; not = nor on one child; double negation.
        prop_assert_eq!(m(op("and", vec![a2.clone()])), m(a2.clone()));
        prop_assert_eq!(m(op("or", vec![a2.clone()])), m(a2.clone()));
        prop_assert_eq!(m(op("not", vec![a2.clone()])), m(op("nor", vec![a2.clone()])));
        prop_assert_eq!(m(op("not", vec![op("not", vec![a2.clone()])])), m(a2.clone()));
        // Idempotence.
        prop_assert_eq!(m(op("and", vec![a2.clone(), a2.clone()])), m(a2.clone()));
        prop_assert_eq!(m(op("or", vec![a2.clone(), a2.clone()])), m(a2));
    }

    #[test]
    fn parser_never_panics(yaml in "[-a-z_{}\\[\\]:, /0-9.'@]{0,80}") {
        if let Ok(v) = serde_yaml::from_str::<serde_yaml::Value>(&yaml) {
            let _ = Policy::parse(&v, "fuzz");
        }
    }
}

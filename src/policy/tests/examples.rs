//! The shipped example policies compile, and their table tests pass; the runner reports
//! failures as `policy test` prints them.

use super::*;
use crate::policy::table_test::{run_files, Expectation};

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn shipped_policies_compile() {
    let dir = repo_root().join("policies");
    let files = yaml_files(&dir);
    assert!(files.len() >= 4, "{files:?}");
    for f in files {
        let name = f.file_stem().unwrap().to_str().unwrap().to_owned();
        let access = crate::config::Access {
            policy: Some(crate::config::PolicySource::Named(name)),
            ..Default::default()
        };
        compile_route(&access, Some(&dir), "routes[0]")
            .unwrap_or_else(|ps| panic!("{f:?}: {ps:#?}"));
    }
}

#[test]
fn shipped_table_tests_pass() {
    let root = repo_root().join("policies");
    let files = yaml_files(&root.join("tests"));
    assert!(files.len() >= 4);
    let report = run_files(&files, Some(&root));
    assert!(report.is_success(), "{report}");
    assert!(report.passed() >= 25, "{}", report.summary());
    // Without --policies-dir, a file in policies/tests finds policies/ by itself.
    let report = run_files(&files, None);
    assert!(report.is_success(), "{report}");
}

#[test]
fn failures_are_reported_with_name_expected_actual_and_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.yaml");
    std::fs::write(
        &file,
        "policy: {allow: {or: [{groups: admins}]}}\n\
         cases:\n\
         - {name: ok, identity: {user: u, groups: [admins]}, expect: allow}\n\
         - {name: wrong, identity: {user: u, groups: [ops]}, expect: allow}\n\
         - {name: wrong reasons, identity: {user: u, groups: [admins]}, expect: allow, reasons: [accept]}\n\
         - {name: anon, expect: login}\n",
    )
    .unwrap();
    let broken = dir.path().join("broken.yaml");
    std::fs::write(&broken, "policy: {allow: {or: [{grups: x}]}}\ncases: []\n").unwrap();
    let typo = dir.path().join("typo.yaml");
    std::fs::write(
        &typo,
        "policy: {allow: {or: [{accept: true}]}}\ncases: [{name: x, expect: allow, extra: 1}]\n",
    )
    .unwrap();

    let report = run_files(&[file.clone(), broken, typo], None);
    assert_eq!(report.summary(), "2 passed, 4 failed");
    assert!(!report.is_success());
    let wrong = report.cases.iter().find(|c| c.name == "wrong").unwrap();
    assert_eq!(
        (wrong.expected, wrong.actual),
        (Expectation::Allow, Expectation::Deny)
    );
    let text = report.to_string();
    assert!(
        text.contains(&format!(
            "FAIL {}: wrong\n    expected allow, got deny [groups-unauthorized]",
            file.display()
        )),
        "{text}"
    );
    assert!(
        text.contains("expected allow [accept], got allow [groups-ok]"),
        "{text}"
    );
    assert!(
        text.contains("policy.allow.or[0].grups: unknown criterion"),
        "{text}"
    );
    assert!(text.contains("unknown field `extra`"), "{text}");
    assert!(text.ends_with("2 passed, 4 failed\n"), "{text}");
}

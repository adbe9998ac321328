//! `gatehouse policy test`: table tests of policies, as a library function. The CLI prints
//! [`TestReport`] and exits 1 unless [`TestReport::is_success`].
//!
//! File format (YAML; unknown keys are errors):
//!
//! ```yaml
//! policy: engineering          # a name in the policies dir, or inline PPL (mapping or list)
//! cases:
//!   - name: admins may delete
//!     identity:                # omit for an unauthenticated request
//!       user: "https://idp.example.com|alice"
//!       email: alice@corp.example
//!       email_verified: true   # default false
//!       groups: [admins]
//!       claims: { department: eng }
//!     request: { method: DELETE, path: /admin/x, source_ip: 10.1.2.3,
//!                time: "2026-11-30T10:00:00Z", headers: { origin: "https://a.example" },
//!                client_certificate: { fingerprint: "…", san_email: ["x@corp.example"] } }
//!     expect: allow            # allow | deny | login
//!     reasons: [groups-ok]     # optional: the decision's exact reasons
//! ```
//!
//! Request defaults: `GET /`, no source IP, no headers, no certificate, the current time.
//! A `client_certificate` is presented and valid unless it says `valid: false`.

use std::{
    collections::BTreeMap,
    fmt::{self, Write as _},
    net::IpAddr,
    path::{Path, PathBuf},
    time::SystemTime,
};

use serde::Deserialize;

use super::{ClientCertificate, Decision, PolicyLibrary, Reason, Reasons, RequestFacts, Subject};
use crate::config::PolicySource;

/// The expected or actual outcome of a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expectation {
    /// [`Decision::Allow`].
    Allow,
    /// [`Decision::Deny`].
    Deny,
    /// [`Decision::NeedsLogin`].
    Login,
}

/// The result of one case.
#[derive(Debug, Clone)]
pub struct CaseResult {
    /// The test file.
    pub file: PathBuf,
    /// The case's `name`.
    pub name: String,
    /// What the case expected.
    pub expected: Expectation,
    /// The expected reasons, when the case lists them.
    pub expected_reasons: Option<Reasons>,
    /// What the policy decided.
    pub actual: Expectation,
    /// The decision's reasons.
    pub reasons: Reasons,
}

/// A test file that could not be run (unreadable, bad format, or a policy that does not
/// compile); counts as one failure.
#[derive(Debug, Clone)]
pub struct FileError {
    /// The test file.
    pub file: PathBuf,
    /// Every problem found.
    pub problems: Vec<String>,
}

/// Everything `policy test` found.
#[derive(Debug, Clone, Default)]
pub struct TestReport {
    /// Every case run, in file order.
    pub cases: Vec<CaseResult>,
    /// Files that could not be run.
    pub errors: Vec<FileError>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    policy: serde_yaml::Value,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    identity: Option<Identity>,
    #[serde(default)]
    request: Request,
    expect: Expectation,
    reasons: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Identity {
    user: String,
    email: Option<String>,
    #[serde(default)]
    email_verified: bool,
    name: Option<String>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    claims: serde_json::Map<String, serde_json::Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Request {
    method: Option<String>,
    path: Option<String>,
    source_ip: Option<IpAddr>,
    time: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    client_certificate: Option<ClientCertificate>,
}

/// Runs every case of every file. `policies_dir` resolves `policy: NAME`; when `None`, each
/// file uses the parent of its own directory (so `policies/tests/x.yaml` finds
/// `policies/NAME.yaml`).
pub fn run_files(files: &[PathBuf], policies_dir: Option<&Path>) -> TestReport {
    let mut report = TestReport::default();
    for file in files {
        if let Err(problems) = run_file(file, policies_dir, &mut report) {
            report.errors.push(FileError {
                file: file.clone(),
                problems,
            });
        }
    }
    report
}

fn run_file(
    file: &Path,
    policies_dir: Option<&Path>,
    report: &mut TestReport,
) -> Result<(), Vec<String>> {
    let text = std::fs::read_to_string(file).map_err(|e| vec![format!("cannot read: {e}")])?;
    let tf: TestFile =
        serde_yaml::from_str(&text).map_err(|e| vec![format!("invalid test file: {e}")])?;
    let dir = policies_dir
        .map(Path::to_path_buf)
        .or_else(|| file.parent().and_then(Path::parent).map(Path::to_path_buf));
    let source = match tf.policy {
        serde_yaml::Value::String(name) => PolicySource::Named(name),
        inline => PolicySource::Inline(inline),
    };
    let policy = PolicyLibrary::new(dir.as_deref())
        .compile_source(&source, "policy")
        .map_err(|ps| ps.iter().map(ToString::to_string).collect::<Vec<_>>())?;

    // Check every case before running any, so one file reports all its mistakes.
    let mut problems = Vec::new();
    let mut prepared = Vec::with_capacity(tf.cases.len());
    for (i, case) in tf.cases.iter().enumerate() {
        let at = format!("cases[{i}] ({})", case.name);
        let now = match &case.request.time {
            None => Some(SystemTime::now()),
            Some(t) => chrono::DateTime::parse_from_rfc3339(t)
                .ok()
                .map(SystemTime::from),
        };
        let expected_reasons = match &case.reasons {
            None => Some(None),
            Some(names) => names
                .iter()
                .map(|n| Reason::from_name(n))
                .collect::<Option<Reasons>>()
                .map(Some),
        };
        match (now, expected_reasons) {
            (Some(now), Some(er)) => prepared.push((case, now, er)),
            (None, _) => problems.push(format!("{at}: request.time is not an RFC 3339 timestamp")),
            (_, None) => problems.push(format!("{at}: reasons has an unknown reason name")),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }

    for (case, now, expected_reasons) in prepared {
        let subject = case.identity.as_ref().map(|id| Subject {
            user_id: id.user.clone(),
            email: id.email.clone(),
            email_verified: id.email_verified,
            name: id.name.clone(),
            groups: id.groups.clone(),
            claims: Subject::claims_from_json(&id.claims),
        });
        let r = &case.request;
        let header = |name: &str| {
            r.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        let facts = RequestFacts {
            method: r.method.as_deref().unwrap_or("GET"),
            path: r.path.as_deref().unwrap_or("/"),
            source_ip: r.source_ip,
            client_certificate: r.client_certificate.as_ref().map(ClientCertificate::facts),
            origin: header("origin"),
            access_control_request_method: header("access-control-request-method"),
        };
        let decision = policy.evaluate(subject.as_ref(), &facts, now);
        report.cases.push(CaseResult {
            file: file.to_path_buf(),
            name: case.name.clone(),
            expected: case.expect,
            expected_reasons,
            actual: Expectation::of(&decision),
            reasons: decision.reasons(),
        });
    }
    Ok(())
}

// === impl Expectation ===

impl Expectation {
    /// The outcome of a decision.
    pub fn of(d: &Decision) -> Expectation {
        match d {
            Decision::Allow(_) => Expectation::Allow,
            Decision::Deny(_) => Expectation::Deny,
            Decision::NeedsLogin => Expectation::Login,
        }
    }

    /// `allow`, `deny` or `login`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Expectation::Allow => "allow",
            Expectation::Deny => "deny",
            Expectation::Login => "login",
        }
    }
}

// === impl CaseResult ===

impl CaseResult {
    /// Whether the outcome (and the reasons, when listed) matched.
    pub fn passed(&self) -> bool {
        self.expected == self.actual && self.expected_reasons.is_none_or(|r| r == self.reasons)
    }
}

// === impl TestReport ===

impl TestReport {
    /// Cases that passed.
    pub fn passed(&self) -> usize {
        self.cases.iter().filter(|c| c.passed()).count()
    }

    /// Cases that failed, plus files that could not be run.
    pub fn failed(&self) -> usize {
        self.cases.len() - self.passed() + self.errors.len()
    }

    /// True when nothing failed.
    pub fn is_success(&self) -> bool {
        self.failed() == 0
    }

    /// Exactly `N passed, M failed`.
    pub fn summary(&self) -> String {
        format!("{} passed, {} failed", self.passed(), self.failed())
    }

    /// One block per failing case (file, name, expected, actual, reasons) and per file that
    /// could not be run; empty when all passed.
    pub fn render_failures(&self) -> String {
        let mut out = String::new();
        for e in &self.errors {
            let _ = writeln!(out, "FAIL {}: could not run", e.file.display());
            for p in &e.problems {
                let _ = writeln!(out, "    {p}");
            }
        }
        for c in self.cases.iter().filter(|c| !c.passed()) {
            let _ = writeln!(out, "FAIL {}: {}", c.file.display(), c.name);
            let _ = write!(out, "    expected {}", c.expected.as_str());
            if let Some(r) = c.expected_reasons {
                let _ = write!(out, " [{r}]");
            }
            let _ = writeln!(out, ", got {} [{}]", c.actual.as_str(), c.reasons);
        }
        out
    }
}

/// The failures, then the summary line.
impl fmt::Display for TestReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render_failures())?;
        writeln!(f, "{}", self.summary())
    }
}

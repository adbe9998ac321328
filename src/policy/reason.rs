//! Why a criterion held or failed: a closed set of reasons, and a set of them as a bitset.
//!
//! The strings are Pomerium's (`pkg/policy/criteria/reasons.go`) so logs, metrics and the 403
//! page read the same; the time criteria, which Pomerium's open core lacks, add their own.

use std::fmt;

/// One reason a criterion passed or failed. Closed: metric labels and log fields use
/// [`Reason::as_str`], so the set of values is bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Reason {
    /// `accept` held.
    Accept,
    /// `reject` (always fails).
    Reject,
    /// `authenticated_user` or `user` held.
    UserOk,
    /// A criterion needed a signed-in user and there was none: the user must log in.
    UserUnauthenticated,
    /// A signed-in user failed `authenticated_user` or `user`.
    UserUnauthorized,
    /// `email` held.
    EmailOk,
    /// `email` failed (including: no verified, well-formed email).
    EmailUnauthorized,
    /// `domain` held.
    DomainOk,
    /// `domain` failed (including: no verified, well-formed email).
    DomainUnauthorized,
    /// `groups` held.
    GroupsOk,
    /// `groups` failed.
    GroupsUnauthorized,
    /// `claim/<name>` held.
    ClaimOk,
    /// `claim/<name>` failed.
    ClaimUnauthorized,
    /// `http_method` held.
    HttpMethodOk,
    /// `http_method` failed.
    HttpMethodUnauthorized,
    /// `http_path` held.
    HttpPathOk,
    /// `http_path` failed.
    HttpPathUnauthorized,
    /// `source_ip` held.
    SourceIpOk,
    /// `source_ip` failed.
    SourceIpUnauthorized,
    /// `cors_preflight` held: an `OPTIONS` request with `Origin` and
    /// `Access-Control-Request-Method`.
    CorsRequest,
    /// `cors_preflight` failed.
    NonCorsRequest,
    /// `client_certificate` held.
    ClientCertificateOk,
    /// `client_certificate` failed (no certificate, or no match).
    ClientCertificateUnauthorized,
    /// `invalid_client_certificate` held because no certificate was presented.
    ClientCertificateRequired,
    /// `invalid_client_certificate` held because the certificate did not verify.
    InvalidClientCertificate,
    /// `invalid_client_certificate` failed: the certificate is valid.
    ValidClientCertificate,
    /// `date` held.
    DateOk,
    /// `date` failed.
    DateUnauthorized,
    /// `day_of_week` held.
    DayOfWeekOk,
    /// `day_of_week` failed.
    DayOfWeekUnauthorized,
    /// `time_of_day` held.
    TimeOfDayOk,
    /// `time_of_day` failed.
    TimeOfDayUnauthorized,
}

/// A set of [`Reason`]s, as a bitset: `Copy`, no allocation, iterates in declaration order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Reasons(u64);

// === impl Reason ===

impl Reason {
    /// Every reason, in declaration order.
    pub const ALL: [Reason; 32] = [
        Reason::Accept,
        Reason::Reject,
        Reason::UserOk,
        Reason::UserUnauthenticated,
        Reason::UserUnauthorized,
        Reason::EmailOk,
        Reason::EmailUnauthorized,
        Reason::DomainOk,
        Reason::DomainUnauthorized,
        Reason::GroupsOk,
        Reason::GroupsUnauthorized,
        Reason::ClaimOk,
        Reason::ClaimUnauthorized,
        Reason::HttpMethodOk,
        Reason::HttpMethodUnauthorized,
        Reason::HttpPathOk,
        Reason::HttpPathUnauthorized,
        Reason::SourceIpOk,
        Reason::SourceIpUnauthorized,
        Reason::CorsRequest,
        Reason::NonCorsRequest,
        Reason::ClientCertificateOk,
        Reason::ClientCertificateUnauthorized,
        Reason::ClientCertificateRequired,
        Reason::InvalidClientCertificate,
        Reason::ValidClientCertificate,
        Reason::DateOk,
        Reason::DateUnauthorized,
        Reason::DayOfWeekOk,
        Reason::DayOfWeekUnauthorized,
        Reason::TimeOfDayOk,
        Reason::TimeOfDayUnauthorized,
    ];

    /// The stable kebab-case name (Pomerium's where Pomerium has one), for logs, metric labels
    /// and error pages.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::Accept => "accept",
            Reason::Reject => "reject",
            Reason::UserOk => "user-ok",
            Reason::UserUnauthenticated => "user-unauthenticated",
            Reason::UserUnauthorized => "user-unauthorized",
            Reason::EmailOk => "email-ok",
            Reason::EmailUnauthorized => "email-unauthorized",
            Reason::DomainOk => "domain-ok",
            Reason::DomainUnauthorized => "domain-unauthorized",
            Reason::GroupsOk => "groups-ok",
            Reason::GroupsUnauthorized => "groups-unauthorized",
            Reason::ClaimOk => "claim-ok",
            Reason::ClaimUnauthorized => "claim-unauthorized",
            Reason::HttpMethodOk => "http-method-ok",
            Reason::HttpMethodUnauthorized => "http-method-unauthorized",
            Reason::HttpPathOk => "http-path-ok",
            Reason::HttpPathUnauthorized => "http-path-unauthorized",
            Reason::SourceIpOk => "source-ip-ok",
            Reason::SourceIpUnauthorized => "source-ip-unauthorized",
            Reason::CorsRequest => "cors-request",
            Reason::NonCorsRequest => "non-cors-request",
            Reason::ClientCertificateOk => "client-certificate-ok",
            Reason::ClientCertificateUnauthorized => "client-certificate-unauthorized",
            Reason::ClientCertificateRequired => "client-certificate-required",
            Reason::InvalidClientCertificate => "invalid-client-certificate",
            Reason::ValidClientCertificate => "valid-client-certificate",
            Reason::DateOk => "date-ok",
            Reason::DateUnauthorized => "date-unauthorized",
            Reason::DayOfWeekOk => "day-of-week-ok",
            Reason::DayOfWeekUnauthorized => "day-of-week-unauthorized",
            Reason::TimeOfDayOk => "time-of-day-ok",
            Reason::TimeOfDayUnauthorized => "time-of-day-unauthorized",
        }
    }

    /// The reason named `s` (the inverse of [`Reason::as_str`]); `None` for unknown names.
    pub fn from_name(s: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == s)
    }

    const fn bit(self) -> u64 {
        1 << (self as u8)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl Reasons ===

impl Reasons {
    /// The empty set.
    pub const EMPTY: Reasons = Reasons(0);

    /// The set holding just `r`.
    pub const fn one(r: Reason) -> Reasons {
        Reasons(r.bit())
    }

    /// Whether `r` is in the set.
    pub const fn contains(self, r: Reason) -> bool {
        self.0 & r.bit() != 0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The union of both sets.
    pub const fn union(self, other: Reasons) -> Reasons {
        Reasons(self.0 | other.0)
    }

    /// The members, in [`Reason::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Reason> {
        Reason::ALL.into_iter().filter(move |r| self.contains(*r))
    }
}

impl FromIterator<Reason> for Reasons {
    fn from_iter<I: IntoIterator<Item = Reason>>(iter: I) -> Self {
        iter.into_iter()
            .fold(Reasons::EMPTY, |acc, r| acc.union(Reasons::one(r)))
    }
}

impl fmt::Debug for Reasons {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.iter().map(Reason::as_str))
            .finish()
    }
}

/// Comma-separated names, e.g. `email-unauthorized, groups-unauthorized`.
impl fmt::Display for Reasons {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(r.as_str())?;
        }
        Ok(())
    }
}

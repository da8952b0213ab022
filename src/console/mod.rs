//! The operator web console's rules, sans-IO: who an operator is (`OperatorName`, `Role`,
//! `Scope`: `admin` sees everything, `opd` one OPD's extensions, calls and reports), how a
//! password is kept ([`password`]: PBKDF2-HMAC-SHA256, salted, slow), the sessions of logged-in
//! operators with their CSRF tokens and expiry ([`session`]), and the lock-out after repeated
//! wrong passwords ([`lockout`]). The HTTP side is `runtime::console`; the rows are
//! `store::operators`.
//!
//! Must not: do I/O, read the clock (times are passed in), or hold locks.

pub mod lockout;
pub mod password;
pub mod session;

use std::fmt;
use std::str::FromStr;

use crate::types::OpdCode;

/// Why a console value could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsoleError {
    #[error(
        "console: '{0}' is not an operator name (1 to 32 lowercase letters, digits, '.', '_' \
         or '-', starting with a letter or digit)"
    )]
    BadName(String),
    #[error("console: '{0}' is not a role (admin or opd)")]
    BadRole(String),
    #[error("console: an opd operator needs its OPD (--opd CODE)")]
    OpdMissing,
    #[error("console: an admin operator has no OPD (leave out --opd)")]
    OpdNotAllowed,
    #[error("console: the stored password hash is not one this tambun reads")]
    BadHash,
}

/// An operator's login name: 1–32 of `a-z 0-9 . _ -`, not starting with a punctuation mark.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OperatorName(String);

impl OperatorName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for OperatorName {
    type Err = ConsoleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = (1..=32).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
            && s.as_bytes()[0].is_ascii_alphanumeric();
        if ok {
            Ok(OperatorName(s.to_owned()))
        } else {
            Err(ConsoleError::BadName(s.chars().take(40).collect()))
        }
    }
}

impl fmt::Display for OperatorName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What an operator may do: everything (`admin`), or one OPD's data (`opd`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    All,
    Opd(OpdCode),
}

impl Scope {
    /// The scope of a stored role (`admin` or `opd`) and OPD code.
    pub fn from_role(role: &str, opd: Option<OpdCode>) -> Result<Scope, ConsoleError> {
        match (role, opd) {
            ("admin", None) => Ok(Scope::All),
            ("admin", Some(_)) => Err(ConsoleError::OpdNotAllowed),
            ("opd", Some(code)) => Ok(Scope::Opd(code)),
            ("opd", None) => Err(ConsoleError::OpdMissing),
            (other, _) => Err(ConsoleError::BadRole(other.chars().take(20).collect())),
        }
    }

    /// `admin` or `opd`, as stored.
    pub fn role(&self) -> &'static str {
        match self {
            Scope::All => "admin",
            Scope::Opd(_) => "opd",
        }
    }

    /// The OPD an `opd` operator is limited to.
    pub fn opd(&self) -> Option<&OpdCode> {
        match self {
            Scope::All => None,
            Scope::Opd(code) => Some(code),
        }
    }

    pub fn is_admin(&self) -> bool {
        matches!(self, Scope::All)
    }

    /// May this operator see or change something of OPD `opd` (an extension, a
    /// registration)? Something of no OPD is for admins only.
    pub fn allows(&self, opd: Option<&OpdCode>) -> bool {
        match self {
            Scope::All => true,
            Scope::Opd(mine) => opd == Some(mine),
        }
    }

    /// May this operator see a call between `caller_opd` and `callee_opd` (a call record or a
    /// call in progress)? An OPD sees the calls it placed or received, as `tambun cdr --opd`.
    pub fn allows_call(&self, caller_opd: Option<&OpdCode>, callee_opd: Option<&OpdCode>) -> bool {
        self.allows(caller_opd) || self.allows(callee_opd)
    }

    /// The OPD a query must be limited to: the operator's own for `opd` (whatever was asked
    /// for), the asked one for `admin`. `Err` when an `opd` operator asks for another OPD.
    pub fn limit(&self, asked: Option<OpdCode>) -> Result<Option<OpdCode>, Forbidden> {
        match (self, asked) {
            (Scope::All, asked) => Ok(asked),
            (Scope::Opd(mine), None) => Ok(Some(mine.clone())),
            (Scope::Opd(mine), Some(asked)) if &asked == mine => Ok(Some(asked)),
            (Scope::Opd(_), Some(_)) => Err(Forbidden),
        }
    }
}

/// An operator asked for what its scope does not cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("console: this operator may not see or change that")]
pub struct Forbidden;

/// Compares two secrets in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opd(s: &str) -> OpdCode {
        s.parse().unwrap()
    }

    #[test]
    fn operator_names() {
        assert!("admin".parse::<OperatorName>().is_ok());
        assert!("op.dinkes-2".parse::<OperatorName>().is_ok());
        assert!("".parse::<OperatorName>().is_err());
        assert!("Admin".parse::<OperatorName>().is_err());
        assert!("-x".parse::<OperatorName>().is_err());
        assert!("a b".parse::<OperatorName>().is_err());
        assert!("a".repeat(33).parse::<OperatorName>().is_err());
    }

    #[test]
    fn roles_need_the_right_opd() {
        assert_eq!(Scope::from_role("admin", None), Ok(Scope::All));
        assert_eq!(
            Scope::from_role("opd", Some(opd("dinkes"))),
            Ok(Scope::Opd(opd("dinkes")))
        );
        assert_eq!(Scope::from_role("opd", None), Err(ConsoleError::OpdMissing));
        assert_eq!(
            Scope::from_role("admin", Some(opd("dinkes"))),
            Err(ConsoleError::OpdNotAllowed)
        );
        assert!(Scope::from_role("root", None).is_err());
    }

    #[test]
    fn role_filter() {
        let dinkes = Scope::Opd(opd("dinkes"));
        assert!(dinkes.allows(Some(&opd("dinkes"))));
        assert!(!dinkes.allows(Some(&opd("setda"))));
        assert!(!dinkes.allows(None));
        assert!(Scope::All.allows(None));
        assert!(dinkes.allows_call(Some(&opd("setda")), Some(&opd("dinkes"))));
        assert!(!dinkes.allows_call(Some(&opd("setda")), None));
        assert_eq!(dinkes.limit(None), Ok(Some(opd("dinkes"))));
        assert_eq!(dinkes.limit(Some(opd("dinkes"))), Ok(Some(opd("dinkes"))));
        assert_eq!(dinkes.limit(Some(opd("setda"))), Err(Forbidden));
        assert_eq!(Scope::All.limit(Some(opd("setda"))), Ok(Some(opd("setda"))));
        assert_eq!(Scope::All.limit(None), Ok(None));
    }

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }
}

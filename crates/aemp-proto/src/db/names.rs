//! Validated family names and subkeys.
//!
//! * User families match `[A-Za-z][A-Za-z0-9_:]*`.
//! * Internal families are `'` followed by at least one character of `[A-Za-z0-9_:]`; only
//!   the system creates them (`'l` = listeners, `'g` = global nodes).
//! * Subkeys are non-empty strings.
//!
//! These checks apply to what *this* node writes. Families and keys that arrive from peers
//! are taken as they are (the reference never checks them, and a global node must merge
//! whatever a Perl slave sends), see [`super::global`].

use crate::value::Str;
use std::fmt;

/// The internal family mapping node IDs to their listen addresses.
pub const LISTENERS: &str = "'l";
/// The internal family listing the global nodes (values are `null`).
pub const GLOBALS: &str = "'g";

/// Why a family name or subkey was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The family name does not match `[A-Za-z][A-Za-z0-9_:]*`.
    #[error("invalid database family {0:?}: must match [A-Za-z][A-Za-z0-9_:]*")]
    BadFamily(String),
    /// The internal family name does not match `'[A-Za-z0-9_:]+`.
    #[error("invalid internal database family {0:?}: must match '[A-Za-z0-9_:]+")]
    BadInternalFamily(String),
    /// A subkey was empty.
    #[error("database subkeys must be non-empty strings")]
    EmptySubkey,
}

fn is_tail_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// True when `name` is a valid user family name.
pub fn is_user_family(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic()) && chars.all(is_tail_char)
}

/// True when `name` is a valid internal family name (`'` and at least one more character).
pub fn is_internal_family(name: &str) -> bool {
    match name.strip_prefix('\'') {
        Some(rest) => !rest.is_empty() && rest.chars().all(is_tail_char),
        None => false,
    }
}

/// A family name that passed validation.
///
/// Invariant: the name is either a valid user family or a valid internal family; the two
/// constructors decide which kind is allowed, so user input can never name `'l` or `'g`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Family(Str);

impl Family {
    /// Validates a family name given by a user: `[A-Za-z][A-Za-z0-9_:]*`.
    pub fn user(name: &str) -> Result<Family, NameError> {
        if is_user_family(name) {
            Ok(Family(Str::from(name)))
        } else {
            Err(NameError::BadFamily(name.to_string()))
        }
    }

    /// Validates an internal family name (`'` followed by `[A-Za-z0-9_:]+`), for the system
    /// itself.
    pub fn internal(name: &str) -> Result<Family, NameError> {
        if is_internal_family(name) {
            Ok(Family(Str::from(name)))
        } else {
            Err(NameError::BadInternalFamily(name.to_string()))
        }
    }

    /// The `'l` family (node ID → listen addresses).
    pub fn listeners() -> Family {
        Family(Str::from(LISTENERS))
    }

    /// The `'g` family (global node ID → null).
    pub fn globals() -> Family {
        Family(Str::from(GLOBALS))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as a [`Str`].
    pub fn to_str(&self) -> Str {
        self.0.clone()
    }

    /// True for internal (`'`-prefixed) families.
    pub fn is_internal(&self) -> bool {
        self.0.starts_with('\'')
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Family({:?})", self.0.as_str())
    }
}

impl AsRef<str> for Family {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Checks that `key` is usable as a subkey (non-empty).
pub fn validate_subkey(key: &str) -> Result<(), NameError> {
    if key.is_empty() {
        Err(NameError::EmptySubkey)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_families() {
        for ok in ["a", "Z", "chat_servers", "a1:b_2", "x::y"] {
            assert!(Family::user(ok).is_ok(), "{ok} should be valid");
        }
        for bad in ["", "1a", "_a", ":a", "a-b", "a b", "'l", "ä", "a.b"] {
            assert!(Family::user(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn internal_families() {
        assert!(Family::internal("'l").is_ok());
        assert!(Family::internal("'g").is_ok());
        assert!(Family::internal("'x_1:2").is_ok());
        for bad in ["'", "l", "''l", "'a b", ""] {
            assert!(Family::internal(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(Family::listeners().is_internal());
        assert_eq!(Family::globals().as_str(), "'g");
        assert!(!Family::user("a").unwrap().is_internal());
    }

    #[test]
    fn subkeys() {
        assert_eq!(validate_subkey(""), Err(NameError::EmptySubkey));
        assert!(validate_subkey("x").is_ok());
        assert!(validate_subkey("node#port").is_ok());
    }
}

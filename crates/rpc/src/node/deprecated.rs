//! Older result shapes a client can ask back, as with Bitcoin Core's `-deprecatedrpc`.
//!
//! The node RPC answers in the shapes of the Bitcoin Core release it follows (see
//! `getnetworkinfo`'s `version`). When Core changed a field, it kept the old shape available
//! for a while behind `-deprecatedrpc=NAME`; peerpool takes the same names
//! (`--deprecatedrpc NAME`) for the fields it serves, so a client written against an older
//! Core keeps working.
//!
//! | name | what it gives back |
//! |---|---|
//! | `warnings` | `getnetworkinfo`'s `warnings` as one string, as before Core 28 (an array since) |
//! | `startingheight` | accepted and changes nothing: `getpeerinfo` always has `startingheight`, which clients modelled on the older Core read |

use std::fmt;
use std::str::FromStr;

/// One deprecated shape; see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Deprecation {
    /// `getnetworkinfo.warnings` as a string.
    Warnings,
    /// `getpeerinfo.startingheight` (always present in peerpool).
    StartingHeight,
}

impl Deprecation {
    /// Every name taken.
    pub const ALL: [Deprecation; 2] = [Deprecation::Warnings, Deprecation::StartingHeight];

    /// Bitcoin Core's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Deprecation::Warnings => "warnings",
            Deprecation::StartingHeight => "startingheight",
        }
    }
}

impl fmt::Display for Deprecation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not one of [`Deprecation::ALL`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown --deprecatedrpc name {0:?}: known are warnings, startingheight")]
pub struct UnknownDeprecation(pub String);

impl FromStr for Deprecation {
    type Err = UnknownDeprecation;

    fn from_str(s: &str) -> Result<Deprecation, UnknownDeprecation> {
        Deprecation::ALL
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| UnknownDeprecation(s.to_owned()))
    }
}

/// The deprecated shapes a server gives back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Deprecated(Vec<Deprecation>);

impl Deprecated {
    /// The shapes named.
    pub fn new(enabled: impl IntoIterator<Item = Deprecation>) -> Deprecated {
        let mut v: Vec<Deprecation> = enabled.into_iter().collect();
        v.sort();
        v.dedup();
        Deprecated(v)
    }

    /// Whether `d` was asked for.
    pub fn enabled(&self, d: Deprecation) -> bool {
        self.0.contains(&d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_names_parse_and_others_are_refused() {
        assert_eq!("warnings".parse(), Ok(Deprecation::Warnings));
        assert_eq!("startingheight".parse(), Ok(Deprecation::StartingHeight));
        assert!("bip125".parse::<Deprecation>().is_err());
        let d = Deprecated::new([Deprecation::Warnings, Deprecation::Warnings]);
        assert!(d.enabled(Deprecation::Warnings));
        assert!(!d.enabled(Deprecation::StartingHeight));
    }
}

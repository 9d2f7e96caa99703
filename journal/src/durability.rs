//! [`Durability`]: when appended frames count as durable. One spelling everywhere (CLI flag,
//! config file, logs): `every-batch` and `none`.
//!
//! **Invariants**: `Display` and `FromStr` round-trip exactly; no other spellings are accepted.

use std::fmt;
use std::str::FromStr;

/// When the journal makes appended frames durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Durability {
    /// Group commit: each `commit()` flushes the batch to stable storage (one msync) before it
    /// reports the batch durable.
    EveryBatch,
    /// Page cache only: `commit()` makes no syscall. Frames survive a process crash but not a
    /// power loss; durability must come from replication (`set_durable_watermark`).
    None,
}

impl Durability {
    /// The name used on the command line and in config files.
    pub const fn as_str(self) -> &'static str {
        match self {
            Durability::EveryBatch => "every-batch",
            Durability::None => "none",
        }
    }
}

impl fmt::Display for Durability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A durability name other than `every-batch` or `none`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown durability {given:?}: expected \"every-batch\" or \"none\"")]
pub struct ParseDurabilityError {
    pub given: String,
}

impl FromStr for Durability {
    type Err = ParseDurabilityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "every-batch" => Ok(Durability::EveryBatch),
            "none" => Ok(Durability::None),
            other => Err(ParseDurabilityError {
                given: other.to_owned(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durability_names_round_trip_exactly() {
        for d in [Durability::EveryBatch, Durability::None] {
            assert_eq!(d.to_string().parse::<Durability>(), Ok(d));
        }
        assert_eq!(Durability::EveryBatch.to_string(), "every-batch");
        assert_eq!(Durability::None.to_string(), "none");
        for bad in ["", "EveryBatch", "every_batch", "None", " none", "sync"] {
            assert!(bad.parse::<Durability>().is_err(), "{bad:?} must not parse");
        }
    }
}

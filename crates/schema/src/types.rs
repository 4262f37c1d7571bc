use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::SchemaError;

/// The schema languages this crate understands. Protobuf is named by the registry API but not
/// supported here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "UPPERCASE")]
pub enum SchemaType {
    /// The registry API treats an absent `schemaType` as Avro.
    #[default]
    Avro,
    Json,
}

impl SchemaType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Avro => "AVRO",
            Self::Json => "JSON",
        }
    }
}

impl fmt::Display for SchemaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SchemaType {
    type Err = SchemaError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_uppercase().as_str() {
            "AVRO" => Ok(Self::Avro),
            "JSON" => Ok(Self::Json),
            other => Err(SchemaError::UnsupportedSchemaType(other.to_owned())),
        }
    }
}

/// A schema as text plus its language: what the registry stores and returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaDefinition {
    pub schema_type: SchemaType,
    pub schema: String,
}

impl SchemaDefinition {
    pub fn avro(schema: impl Into<String>) -> Self {
        Self {
            schema_type: SchemaType::Avro,
            schema: schema.into(),
        }
    }

    pub fn json(schema: impl Into<String>) -> Self {
        Self {
            schema_type: SchemaType::Json,
            schema: schema.into(),
        }
    }
}

/// The seven compatibility levels of the registry API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CompatibilityLevel {
    None,
    #[default]
    Backward,
    BackwardTransitive,
    Forward,
    ForwardTransitive,
    Full,
    FullTransitive,
}

impl CompatibilityLevel {
    pub const ALL: [Self; 7] = [
        Self::None,
        Self::Backward,
        Self::BackwardTransitive,
        Self::Forward,
        Self::ForwardTransitive,
        Self::Full,
        Self::FullTransitive,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "NONE",
            Self::Backward => "BACKWARD",
            Self::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Self::Forward => "FORWARD",
            Self::ForwardTransitive => "FORWARD_TRANSITIVE",
            Self::Full => "FULL",
            Self::FullTransitive => "FULL_TRANSITIVE",
        }
    }

    /// Transitive levels compare with every earlier version, the others with the latest only.
    pub fn is_transitive(self) -> bool {
        matches!(
            self,
            Self::BackwardTransitive | Self::ForwardTransitive | Self::FullTransitive
        )
    }

    /// The new schema must read data written with the old one.
    pub fn checks_backward(self) -> bool {
        matches!(
            self,
            Self::Backward | Self::BackwardTransitive | Self::Full | Self::FullTransitive
        )
    }

    /// The old schema must read data written with the new one.
    pub fn checks_forward(self) -> bool {
        matches!(
            self,
            Self::Forward | Self::ForwardTransitive | Self::Full | Self::FullTransitive
        )
    }
}

impl fmt::Display for CompatibilityLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CompatibilityLevel {
    type Err = SchemaError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|level| level.as_str().eq_ignore_ascii_case(text.trim()))
            .ok_or_else(|| SchemaError::InvalidLevel(text.to_owned()))
    }
}

impl Serialize for CompatibilityLevel {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for CompatibilityLevel {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_round_trip_and_bad_level_is_refused() {
        for level in CompatibilityLevel::ALL {
            assert_eq!(
                level.as_str().parse::<CompatibilityLevel>().ok(),
                Some(level)
            );
        }
        assert!(matches!(
            "BACKWARDS".parse::<CompatibilityLevel>(),
            Err(SchemaError::InvalidLevel(_))
        ));
    }

    #[test]
    fn full_levels_check_both_directions() {
        assert!(
            CompatibilityLevel::Full.checks_backward() && CompatibilityLevel::Full.checks_forward()
        );
        assert!(
            !CompatibilityLevel::None.checks_backward()
                && !CompatibilityLevel::None.checks_forward()
        );
        assert!(CompatibilityLevel::ForwardTransitive.is_transitive());
        assert!(!CompatibilityLevel::Forward.is_transitive());
    }
}

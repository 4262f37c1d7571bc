//! Service configuration shared by every ingest service: one YAML file plus `SUMMIT_`
//! environment overrides, refused as a whole when any key is unknown or any value is unusable,
//! with the key named in the error; and the sections every service has ([`sections`]).
//!
//! Overrides: `SUMMIT_<SECTION>__<KEY>[__<KEY>...]` sets `section.key...`; a numeric segment
//! indexes a list (`SUMMIT_ROUTES__0__RULES=/etc/rules.yaml`). The value is read as a YAML
//! scalar, so `SUMMIT_LIMITS__MAX_IN_FLIGHT_RECORDS=500` is a number. Variables without `__`
//! (such as `SUMMIT_KAFKA_BOOTSTRAP`, used by the test tooling) are not overrides.

pub mod sections;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_yaml_ng::Value as YamlValue;

pub use sections::{
    AdminConfig, DlqConfig, DqCountsConfig, RegistryConfig, ServiceConfig, TicketsConfig,
};

pub const ENV_PREFIX: &str = "SUMMIT_";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid YAML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("environment variable {variable}: {problem}")]
    Environment { variable: String, problem: String },
    /// `key` is the dotted path (`routes[0].topic_pattern`), or `(root)`.
    #[error("config key `{key}`: {problem}")]
    Invalid { key: String, problem: String },
}

impl ConfigError {
    pub fn invalid(key: impl Into<String>, problem: impl std::fmt::Display) -> Self {
        Self::Invalid {
            key: key.into(),
            problem: problem.to_string(),
        }
    }
}

impl From<crate::RouteError> for ConfigError {
    fn from(error: crate::RouteError) -> Self {
        Self::Invalid {
            key: error.key,
            problem: error.problem,
        }
    }
}

/// The text of the config file at `path` and the directory relative paths resolve against.
pub fn read_file(path: &Path) -> Result<(String, PathBuf), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let base_dir = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    Ok((text, base_dir))
}

/// Parses `text` (named `path` in errors), applies the `SUMMIT_` overrides found in `env`
/// (sorted, so the result does not depend on the environment's order) and deserializes it,
/// naming the key of the first unknown or unusable value.
pub fn from_yaml<T: DeserializeOwned>(
    text: &str,
    path: &Path,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<T, ConfigError> {
    let mut document: YamlValue =
        serde_yaml_ng::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
    if document.is_null() {
        document = YamlValue::Mapping(Default::default());
    }
    let mut overrides: Vec<(String, String)> = env
        .into_iter()
        .filter(|(name, _)| name.starts_with(ENV_PREFIX) && name.contains("__"))
        .collect();
    overrides.sort();
    for (variable, value) in overrides {
        apply_override(&mut document, &variable, &value)?;
    }
    serde_path_to_error::deserialize(document).map_err(|e| {
        let key = e.path().to_string();
        ConfigError::Invalid {
            key: if key == "." { "(root)".to_owned() } else { key },
            problem: e.into_inner().to_string(),
        }
    })
}

fn apply_override(
    document: &mut YamlValue,
    variable: &str,
    value: &str,
) -> Result<(), ConfigError> {
    let env_error = |problem: &str| ConfigError::Environment {
        variable: variable.to_owned(),
        problem: problem.to_owned(),
    };
    let path = &variable[ENV_PREFIX.len()..];
    let segments: Vec<String> = path.split("__").map(str::to_ascii_lowercase).collect();
    if segments.iter().any(String::is_empty) {
        return Err(env_error("empty key segment"));
    }
    let parsed: YamlValue =
        serde_yaml_ng::from_str(value).unwrap_or_else(|_| YamlValue::String(value.to_owned()));
    let mut node = document;
    for segment in &segments {
        node = match node {
            YamlValue::Sequence(items) => {
                let index: usize = segment
                    .parse()
                    .map_err(|_| env_error("a list needs a numeric index segment"))?;
                items
                    .get_mut(index)
                    .ok_or_else(|| env_error("list index out of range"))?
            }
            other => {
                if other.is_null() {
                    *other = YamlValue::Mapping(Default::default());
                }
                let YamlValue::Mapping(map) = other else {
                    return Err(env_error("the key above this one is not a section"));
                };
                map.entry(YamlValue::String(segment.clone()))
                    .or_insert(YamlValue::Null)
            }
        };
    }
    *node = parsed;
    Ok(())
}

/// Value checks that name the key they refuse.
pub fn nonempty(key: &str, value: &str) -> Result<(), ConfigError> {
    if value.trim().is_empty() {
        Err(ConfigError::invalid(key, "must not be empty"))
    } else {
        Ok(())
    }
}

pub fn positive(key: &str, value: u64) -> Result<(), ConfigError> {
    if value == 0 {
        Err(ConfigError::invalid(key, "must be greater than 0"))
    } else {
        Ok(())
    }
}

pub fn positive_duration(key: &str, value: Duration) -> Result<(), ConfigError> {
    if value.is_zero() {
        Err(ConfigError::invalid(key, "must be greater than 0"))
    } else {
        Ok(())
    }
}

pub fn positive_rate(key: &str, value: f64) -> Result<(), ConfigError> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(ConfigError::invalid(key, "must be a number greater than 0"))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn load(
        text: &str,
        env: &[(&str, &str)],
    ) -> Result<BTreeMap<String, serde_yaml_ng::Value>, ConfigError> {
        from_yaml(
            text,
            Path::new("test.yaml"),
            env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        )
    }

    #[test]
    fn overrides_set_nested_keys_and_list_items_and_name_bad_variables() {
        let loaded = load(
            "a: { b: 1 }\nroutes: [ { rules: x } ]\n",
            &[
                ("SUMMIT_A__B", "2"),
                ("SUMMIT_ROUTES__0__RULES", "y"),
                ("SUMMIT_PLAIN", "z"),
            ],
        )
        .expect("loads");
        assert_eq!(loaded["a"]["b"], serde_yaml_ng::Value::from(2));
        assert_eq!(
            loaded["routes"][0]["rules"],
            serde_yaml_ng::Value::from("y")
        );
        assert!(!loaded.contains_key("plain"));
        let error = load("routes: [ {} ]\n", &[("SUMMIT_ROUTES__X", "1")]).expect_err("bad index");
        assert_eq!(
            error.to_string(),
            "environment variable SUMMIT_ROUTES__X: a list needs a numeric index segment"
        );
    }

    #[test]
    fn rates_must_be_positive_numbers() {
        assert!(positive_rate("dlq.max_records_per_second", 1.5).is_ok());
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let error = positive_rate("dlq.max_records_per_second", bad).expect_err("refused");
            assert!(error.to_string().contains("`dlq.max_records_per_second`"));
        }
    }
}

//! Validation of events against the OpenLineage 2-0-2 JSON schemas and the facet schemas, all
//! embedded (no network): for tests here and for consumers such as the provenance ledger that
//! want to refuse malformed events.

use serde_json::Value;

const OPENLINEAGE: &str = include_str!("../spec/OpenLineage.json");
/// (facet file, the facet keys it defines, where they sit).
const FACET_FILES: &[(&str, &[&str], FacetPlace)] = &[
    (
        include_str!("../spec/ParentRunFacet.json"),
        &["parent"],
        FacetPlace::Run,
    ),
    (
        include_str!("../spec/ErrorMessageRunFacet.json"),
        &["errorMessage"],
        FacetPlace::Run,
    ),
    (
        include_str!("../spec/ProcessingEngineRunFacet.json"),
        &["processing_engine"],
        FacetPlace::Run,
    ),
    (
        include_str!("../spec/SchemaDatasetFacet.json"),
        &["schema"],
        FacetPlace::Dataset,
    ),
    (
        include_str!("../spec/DataQualityAssertionsDatasetFacet.json"),
        &["dataQualityAssertions"],
        FacetPlace::Dataset,
    ),
    (
        include_str!("../spec/DataQualityMetricsInputDatasetFacet.json"),
        &["dataQualityMetrics"],
        FacetPlace::Input,
    ),
    (
        include_str!("../spec/SummitFacets.json"),
        &["summit_offsetRanges", "summit_epoch"],
        FacetPlace::Any,
    ),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FacetPlace {
    Run,
    Dataset,
    Input,
    /// The schema names its keys; each key is only meaningful in one place.
    Any,
}

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("embedded schema {0} is not valid JSON: {1}")]
    Parse(&'static str, #[source] serde_json::Error),
    #[error("cannot register or compile the OpenLineage schemas: {0}")]
    Compile(String),
}

/// Compiled validators for the RunEvent and every facet Summit writes.
#[derive(Debug)]
pub struct SpecValidator {
    event: jsonschema::Validator,
    facets: Vec<(jsonschema::Validator, &'static [&'static str], FacetPlace)>,
}

impl SpecValidator {
    pub fn new() -> Result<Self, SpecError> {
        let parse = |name: &'static str, text: &str| {
            serde_json::from_str::<Value>(text).map_err(|e| SpecError::Parse(name, e))
        };
        let openlineage = parse("OpenLineage.json", OPENLINEAGE)?;
        let facet_schemas = FACET_FILES
            .iter()
            .map(|(text, keys, place)| Ok((parse("facet schema", text)?, *keys, *place)))
            .collect::<Result<Vec<_>, SpecError>>()?;
        let compile = |e: &dyn std::fmt::Display| SpecError::Compile(e.to_string());

        let mut resources = vec![(id_of(&openlineage), openlineage.clone())];
        resources.extend(
            facet_schemas
                .iter()
                .map(|(schema, _, _)| (id_of(schema), schema.clone())),
        );
        let registry = jsonschema::Registry::new()
            .extend(resources)
            .and_then(|builder| builder.prepare())
            .map_err(|e| compile(&e))?;
        let build = |schema: &Value| {
            jsonschema::options()
                .should_validate_formats(true)
                .with_registry(&registry)
                .build(schema)
                .map_err(|e| compile(&e))
        };
        let event = build(&openlineage)?;
        let facets = facet_schemas
            .iter()
            .map(|(schema, keys, place)| Ok((build(schema)?, *keys, *place)))
            .collect::<Result<Vec<_>, SpecError>>()?;
        Ok(Self { event, facets })
    }

    /// Checks `event` against OpenLineage.json, then every facet against its own schema (the
    /// main schema only checks `_producer`/`_schemaURL` of facets). A facet this validator has
    /// no schema for is an error too, so nothing passes unchecked.
    pub fn validate(&self, event: &Value) -> Result<(), Vec<String>> {
        let mut errors: Vec<String> = self
            .event
            .iter_errors(event)
            .map(|e| format!("event: {e} at {}", e.instance_path()))
            .collect();
        let mut containers = vec![(
            "run.facets".to_owned(),
            &event["run"]["facets"],
            FacetPlace::Run,
        )];
        for side in ["inputs", "outputs"] {
            if let Some(datasets) = event[side].as_array() {
                for (index, dataset) in datasets.iter().enumerate() {
                    containers.push((
                        format!("{side}[{index}].facets"),
                        &dataset["facets"],
                        FacetPlace::Dataset,
                    ));
                    containers.push((
                        format!("{side}[{index}].inputFacets"),
                        &dataset["inputFacets"],
                        FacetPlace::Input,
                    ));
                }
            }
        }
        for (path, container, place) in containers {
            let Some(facets) = container.as_object() else {
                continue;
            };
            for key in facets.keys() {
                let known = self.facets.iter().any(|(_, keys, facet_place)| {
                    keys.contains(&key.as_str())
                        && (*facet_place == place || *facet_place == FacetPlace::Any)
                });
                if !known {
                    errors.push(format!("{path}.{key}: no schema for this facet here"));
                }
            }
            for (validator, _, facet_place) in &self.facets {
                if *facet_place == place || *facet_place == FacetPlace::Any {
                    errors.extend(
                        validator
                            .iter_errors(container)
                            .map(|e| format!("{path}: {e} at {}", e.instance_path())),
                    );
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

fn id_of(schema: &Value) -> String {
    schema["$id"].as_str().unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_event_is_refused_with_reasons() {
        let validator = SpecValidator::new().expect("compile");
        let event = serde_json::json!({
            "eventType": "START",
            "eventTime": "not a time",
            "producer": "https://example.com/p",
            "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
            "run": {"runId": "4d9f8c1e-3b0a-4c65-9d0e-1f2a3b4c5d6e",
                    "facets": {"errorMessage": {"_producer": "https://example.com/p",
                                                "_schemaURL": "https://example.com/s",
                                                "message": "x"}}},
            "job": {"namespace": "summit", "name": "a.b"},
            "inputs": [{"namespace": "kafka://h:1", "name": "t",
                        "inputFacets": {"mystery": {"_producer": "https://example.com/p",
                                                    "_schemaURL": "https://example.com/s"}}}]
        });
        let errors = validator.validate(&event).expect_err("three problems");
        let all = errors.join("\n");
        assert!(all.contains("eventTime"), "{all}");
        assert!(all.contains("programmingLanguage"), "{all}");
        assert!(all.contains("mystery"), "{all}");
    }
}

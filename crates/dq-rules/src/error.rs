use std::path::PathBuf;

/// Why a rule set, a Great Expectations suite or a reference set could not be loaded. All of
/// these are fatal at start-up: a service must not run with a rule set it only half understood.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what} is not a valid rule set document: {message}")]
    Syntax { what: String, message: String },
    #[error("rule `{rule_id}`: {problem}")]
    Rule { rule_id: String, problem: String },
    #[error("rule id `{rule_id}` is used more than once")]
    DuplicateId { rule_id: String },
    #[error("reference set `{set}` (used by rules {rule_ids:?}): {problem}")]
    Reference {
        set: String,
        rule_ids: Vec<String>,
        problem: String,
    },
    #[error("Great Expectations suite: {problem}")]
    Suite { problem: String },
    #[error(
        "Great Expectations suite has expectation types that cannot be translated: {}",
        expectation_types.join(", ")
    )]
    UntranslatableExpectations { expectation_types: Vec<String> },
}

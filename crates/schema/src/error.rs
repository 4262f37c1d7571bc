/// What a service should do with a failure (DESIGN §10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// The registry is unreachable or failed: back off and retry.
    Retriable,
    /// This record cannot be decoded: send it to the DLQ and go on.
    RecordLevel,
    /// Misconfiguration or an incompatible schema: stop with the message.
    Fatal,
}

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("schema registry at {url} is unreachable: {source}")]
    RegistryUnreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error(
        "schema registry answered HTTP {status} (error_code {error_code}) to {request}: {message}"
    )]
    Registry {
        request: String,
        status: u16,
        error_code: i64,
        message: String,
    },
    #[error("schema registry sent an unreadable answer to {request}: {reason}")]
    InvalidResponse { request: String, reason: String },
    #[error("invalid schema registry URL `{url}`: {reason}")]
    InvalidRegistryUrl { url: String, reason: String },
    #[error("schema id {id} is unknown to the registry")]
    UnknownSchemaId { id: u32 },
    #[error("schema guid {guid} is unknown to the registry")]
    UnknownSchemaGuid { guid: String },
    #[error("subject `{subject}` is unknown to the registry")]
    UnknownSubject { subject: String },
    #[error("subject `{subject}` has no version {version}")]
    UnknownVersion { subject: String, version: String },
    #[error("schema is incompatible with subject `{subject}`: {message}")]
    Incompatible { subject: String, message: String },
    #[error("value is not registry-framed: {reason}")]
    BadFraming { reason: String },
    #[error("value does not match schema id {id}: {reason}")]
    BodyMismatch { id: u32, reason: String },
    #[error("value could not be encoded with schema id {id}: {reason}")]
    Encode { id: u32, reason: String },
    #[error("invalid {schema_type} schema: {reason}")]
    InvalidSchema {
        schema_type: crate::SchemaType,
        reason: String,
    },
    #[error("schema type `{0}` is not supported (AVRO and JSON are)")]
    UnsupportedSchemaType(String),
    #[error(
        "invalid compatibility level `{0}`; expected one of NONE, BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE"
    )]
    InvalidLevel(String),
    #[error(
        "subject `{subject}`: the registry's latest version {registry_version} (id {registry_id}) is not {level} compatible with the schema this service was built against ({local}): {details}"
    )]
    RegistryIncompatible {
        subject: String,
        registry_version: u32,
        registry_id: u32,
        level: crate::CompatibilityLevel,
        local: String,
        details: String,
    },
}

impl SchemaError {
    pub fn disposition(&self) -> Disposition {
        match self {
            Self::RegistryUnreachable { .. } => Disposition::Retriable,
            // 5xx are the registry's own trouble (store, timeout, forwarding): worth a retry.
            Self::Registry { status, .. } if *status >= 500 => Disposition::Retriable,
            Self::UnknownSchemaId { .. }
            | Self::UnknownSchemaGuid { .. }
            | Self::BadFraming { .. }
            | Self::BodyMismatch { .. } => Disposition::RecordLevel,
            Self::Registry { .. }
            | Self::InvalidResponse { .. }
            | Self::InvalidRegistryUrl { .. }
            | Self::UnknownSubject { .. }
            | Self::UnknownVersion { .. }
            | Self::Incompatible { .. }
            | Self::Encode { .. }
            | Self::InvalidSchema { .. }
            | Self::UnsupportedSchemaType(_)
            | Self::InvalidLevel(_)
            | Self::RegistryIncompatible { .. } => Disposition::Fatal,
        }
    }

    pub fn is_retriable(&self) -> bool {
        self.disposition() == Disposition::Retriable
    }

    /// True when the record (not the service) is at fault and belongs in the DLQ.
    pub fn is_record_level(&self) -> bool {
        self.disposition() == Disposition::RecordLevel
    }

    pub fn is_fatal(&self) -> bool {
        self.disposition() == Disposition::Fatal
    }
}

-- Schemas are global: one row per distinct schema (type + normalized text), so the same schema
-- under several subjects shares its id. Rows are never deleted, which keeps ids stable.
CREATE TABLE schemas (
    id          SERIAL PRIMARY KEY,
    schema_type TEXT NOT NULL,
    fingerprint TEXT NOT NULL UNIQUE,
    guid        TEXT NOT NULL UNIQUE,
    schema      TEXT NOT NULL
);

CREATE TABLE subject_versions (
    subject   TEXT    NOT NULL,
    version   INTEGER NOT NULL,
    schema_id INTEGER NOT NULL REFERENCES schemas (id),
    deleted   BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (subject, version)
);

CREATE INDEX subject_versions_by_schema ON subject_versions (schema_id);

-- The global level is stored under the empty subject name, which no URL path can address.
CREATE TABLE compatibility_config (
    subject TEXT PRIMARY KEY,
    level   TEXT NOT NULL
);

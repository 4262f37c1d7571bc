//! `summitctl schema check`: the `schema:check` gate. Every subject folder under `--dir` holds
//! `subject.yaml` and `v1.*`, `v2.*`, ...; each version must be compatible with the earlier ones
//! under the subject's level, and with `--registry` the newest file must also be compatible with
//! what that registry holds.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde::Deserialize;
use summit_schema::compat::{self, ParsedSchema, VersionConflict};
use summit_schema::{
    CompatibilityLevel, RegistryClient, SchemaDefinition, SchemaError, SchemaType,
};

#[derive(Debug, Args)]
pub(crate) struct SchemaCommand {
    #[command(subcommand)]
    action: SchemaAction,
}

#[derive(Debug, Subcommand)]
enum SchemaAction {
    /// Check every subject's versions in order (and, with --registry, against a registry).
    Check {
        /// Folder with one sub-folder per subject.
        #[arg(long, default_value = "schemas")]
        dir: PathBuf,
        /// Also check each subject's newest file against this registry.
        #[arg(long, env = "SUMMIT_REGISTRY_URL")]
        registry: Option<String>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubjectConfig {
    #[serde(rename = "type")]
    schema_type: SchemaType,
    compatibility: CompatibilityLevel,
}

#[derive(Debug)]
struct LocalSubject {
    name: String,
    level: CompatibilityLevel,
    /// (version number, definition, parsed), oldest first.
    versions: Vec<(u32, SchemaDefinition, ParsedSchema)>,
}

pub(crate) fn run(command: SchemaCommand) -> anyhow::Result<()> {
    match command.action {
        SchemaAction::Check { dir, registry } => check(&dir, registry.as_deref()),
    }
}

fn load_subject(folder: &Path) -> anyhow::Result<LocalSubject> {
    let name = folder
        .file_name()
        .and_then(|n| n.to_str())
        .context("subject folder name is not UTF-8")?
        .to_owned();
    let config_path = folder.join("subject.yaml");
    let config: SubjectConfig = serde_yaml_ng::from_str(
        &fs::read_to_string(&config_path)
            .with_context(|| format!("reading {}", config_path.display()))?,
    )
    .with_context(|| {
        format!(
            "{}: expected `type: AVRO|JSON` and `compatibility: <LEVEL>`",
            config_path.display()
        )
    })?;
    let extension = match config.schema_type {
        SchemaType::Avro => "avsc",
        SchemaType::Json => "json",
    };
    let mut numbered = Vec::new();
    for entry in fs::read_dir(folder).with_context(|| format!("listing {}", folder.display()))? {
        let path = entry?.path();
        let Some(file_name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if let Some(number) = file_name
            .strip_prefix('v')
            .and_then(|rest| rest.strip_suffix(&format!(".{extension}")))
            .and_then(|digits| digits.parse::<u32>().ok())
        {
            numbered.push((number, path));
        }
    }
    numbered.sort();
    if numbered.is_empty() {
        bail!(
            "subject `{name}`: no v<N>.{extension} files in {}",
            folder.display()
        );
    }
    let mut versions = Vec::new();
    for (number, path) in numbered {
        let definition = SchemaDefinition {
            schema_type: config.schema_type,
            schema: fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?,
        };
        let parsed = ParsedSchema::parse(&definition)
            .with_context(|| format!("subject `{name}` v{number} ({})", path.display()))?;
        versions.push((number, definition, parsed));
    }
    Ok(LocalSubject {
        name,
        level: config.compatibility,
        versions,
    })
}

fn load_subjects(dir: &Path) -> anyhow::Result<Vec<LocalSubject>> {
    let mut folders: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("listing schemas folder {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.is_dir())
        .collect();
    folders.sort();
    folders.iter().map(|folder| load_subject(folder)).collect()
}

/// One line per problem: subject, versions, direction, field path and reason.
fn report(
    subject: &str,
    new: &str,
    olds: &[String],
    conflicts: &[VersionConflict],
    level: CompatibilityLevel,
) -> Vec<String> {
    conflicts
        .iter()
        .flat_map(|conflict| {
            let old = olds.get(conflict.against).cloned().unwrap_or_default();
            conflict.problems.iter().map(move |problem| {
                format!(
                    "subject `{subject}` {new} vs {old} ({level}; {}): {problem}",
                    conflict.direction
                )
            })
        })
        .collect()
}

fn check_offline(subject: &LocalSubject) -> Vec<String> {
    let parsed: Vec<ParsedSchema> = subject.versions.iter().map(|(_, _, p)| p.clone()).collect();
    let labels: Vec<String> = subject
        .versions
        .iter()
        .map(|(n, _, _)| format!("v{n}"))
        .collect();
    (1..parsed.len())
        .flat_map(|index| {
            let conflicts = compat::check(subject.level, &parsed[index], &parsed[..index]);
            report(
                &subject.name,
                &labels[index],
                &labels[..index],
                &conflicts,
                subject.level,
            )
        })
        .collect()
}

async fn check_against_registry(
    client: &RegistryClient,
    subject: &LocalSubject,
) -> anyhow::Result<Vec<String>> {
    let Some((number, _, newest)) = subject.versions.last() else {
        return Ok(Vec::new());
    };
    let versions = match client.versions(&subject.name).await {
        Ok(versions) => versions,
        // Not registered yet: nothing to be incompatible with.
        Err(SchemaError::UnknownSubject { .. }) => return Ok(Vec::new()),
        Err(error) => return Err(error).with_context(|| format!("registry {}", client.base_url())),
    };
    let wanted: Vec<u32> = if subject.level.is_transitive() {
        versions
    } else {
        versions.last().copied().into_iter().collect()
    };
    let mut registered = Vec::new();
    let mut labels = Vec::new();
    for version in wanted {
        let held = client.subject_version(&subject.name, version).await?;
        registered.push(
            ParsedSchema::parse(&held.definition)
                .with_context(|| format!("registry's `{}` version {version}", subject.name))?,
        );
        labels.push(format!("registry version {version} (id {})", held.id));
    }
    // The registry's versions are all "previous": compare with each as the level demands.
    let level = if subject.level.is_transitive() {
        subject.level
    } else {
        transitive_of(subject.level)
    };
    let conflicts = compat::check(level, newest, &registered);
    Ok(report(
        &subject.name,
        &format!("local v{number}"),
        &labels,
        &conflicts,
        subject.level,
    ))
}

/// `wanted` already holds only the versions to compare with, so compare with all of them.
fn transitive_of(level: CompatibilityLevel) -> CompatibilityLevel {
    match level {
        CompatibilityLevel::Backward => CompatibilityLevel::BackwardTransitive,
        CompatibilityLevel::Forward => CompatibilityLevel::ForwardTransitive,
        CompatibilityLevel::Full => CompatibilityLevel::FullTransitive,
        other => other,
    }
}

fn check(dir: &Path, registry: Option<&str>) -> anyhow::Result<()> {
    let subjects = load_subjects(dir)?;
    let mut problems: Vec<String> = subjects.iter().flat_map(check_offline).collect();
    if let Some(url) = registry {
        let client = RegistryClient::new(url)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        for subject in &subjects {
            problems.extend(runtime.block_on(check_against_registry(&client, subject))?);
        }
    }
    for problem in &problems {
        eprintln!("{problem}");
    }
    if !problems.is_empty() {
        bail!(
            "schema check failed: {} incompatibilit{} in {}",
            problems.len(),
            if problems.len() == 1 { "y" } else { "ies" },
            dir.display()
        );
    }
    let versions: usize = subjects.iter().map(|s| s.versions.len()).sum();
    println!(
        "schema check passed: {} subject(s), {versions} version(s){}",
        subjects.len(),
        registry
            .map(|url| format!(", newest checked against {url}"))
            .unwrap_or_default()
    );
    Ok(())
}

//! DynamoDB tables per test on dynalite.

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TableStatus,
};

use crate::{Endpoints, Result, SupportError, aws::sdk_config, unique_name};

pub async fn client(endpoints: &Endpoints) -> Client {
    Client::new(&sdk_config(endpoints, &endpoints.dynamodb).await)
}

/// Creates an on-demand table `<prefix>-<unique>` with a single string hash key named
/// `hash_key`, waits until it is ACTIVE, and returns its name.
pub async fn create_table(client: &Client, prefix: &str, hash_key: &str) -> Result<String> {
    let name = unique_name(prefix);
    let err = |message: String| SupportError::Create {
        server: "dynamodb",
        what: "table",
        name: name.clone(),
        message,
    };
    let attribute = AttributeDefinition::builder()
        .attribute_name(hash_key)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .map_err(|e| err(e.to_string()))?;
    let key = KeySchemaElement::builder()
        .attribute_name(hash_key)
        .key_type(KeyType::Hash)
        .build()
        .map_err(|e| err(e.to_string()))?;
    client
        .create_table()
        .table_name(&name)
        .attribute_definitions(attribute)
        .key_schema(key)
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .map_err(|e| err(aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string()))?;

    let limit = Duration::from_secs(20);
    let started = Instant::now();
    loop {
        let status = client
            .describe_table()
            .table_name(&name)
            .send()
            .await
            .ok()
            .and_then(|out| out.table)
            .and_then(|t| t.table_status);
        if status == Some(TableStatus::Active) {
            return Ok(name);
        }
        if started.elapsed() > limit {
            return Err(SupportError::NotReady {
                server: "dynamodb",
                what: "table",
                name,
                waited: limit,
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

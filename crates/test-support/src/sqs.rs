//! SQS queues per test on moto.

use aws_sdk_sqs::Client;

use crate::{Endpoints, Result, SupportError, aws::sdk_config, unique_name};

pub async fn client(endpoints: &Endpoints) -> Client {
    Client::new(&sdk_config(endpoints, &endpoints.sqs).await)
}

/// Creates a standard queue `<prefix>-<unique>` and returns its URL.
pub async fn create_queue(client: &Client, prefix: &str) -> Result<String> {
    let name = unique_name(prefix);
    let out = client
        .create_queue()
        .queue_name(&name)
        .send()
        .await
        .map_err(|e| SupportError::Create {
            server: "sqs",
            what: "queue",
            name: name.clone(),
            message: aws_sdk_sqs::error::DisplayErrorContext(e).to_string(),
        })?;
    out.queue_url.ok_or(SupportError::Create {
        server: "sqs",
        what: "queue",
        name,
        message: "CreateQueue answered without a QueueUrl".to_owned(),
    })
}

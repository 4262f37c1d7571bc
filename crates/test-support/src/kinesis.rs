//! Kinesis streams per test on kinesis-local (or kinesalite).

use std::time::{Duration, Instant};

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::types::StreamStatus;

use crate::{Endpoints, Result, SupportError, aws::sdk_config, unique_name};

/// A client for kinesis-local, the emulator with enhanced fan-out and resharding.
pub async fn client(endpoints: &Endpoints) -> Client {
    Client::new(&sdk_config(endpoints, &endpoints.kinesis).await)
}

/// A client for kinesalite, the emulator for bulk polling throughput.
pub async fn kinesalite_client(endpoints: &Endpoints) -> Client {
    Client::new(&sdk_config(endpoints, &endpoints.kinesalite).await)
}

/// Creates a stream `<prefix>-<unique>` with `shards` shards, waits until it is ACTIVE, and
/// returns its name.
pub async fn create_stream(client: &Client, prefix: &str, shards: i32) -> Result<String> {
    let name = unique_name(prefix);
    client
        .create_stream()
        .stream_name(&name)
        .shard_count(shards)
        .send()
        .await
        .map_err(|e| SupportError::Create {
            server: "kinesis",
            what: "stream",
            name: name.clone(),
            message: aws_sdk_kinesis::error::DisplayErrorContext(e).to_string(),
        })?;
    wait_active(client, &name, Duration::from_secs(20)).await?;
    Ok(name)
}

/// Polls DescribeStreamSummary until the stream is ACTIVE (after create or a reshard).
pub async fn wait_active(client: &Client, name: &str, limit: Duration) -> Result<()> {
    let started = Instant::now();
    loop {
        let summary = client
            .describe_stream_summary()
            .stream_name(name)
            .send()
            .await
            .ok()
            .and_then(|out| out.stream_description_summary);
        if summary.is_some_and(|s| s.stream_status == StreamStatus::Active) {
            return Ok(());
        }
        if started.elapsed() > limit {
            return Err(SupportError::NotReady {
                server: "kinesis",
                what: "stream",
                name: name.to_owned(),
                waited: limit,
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

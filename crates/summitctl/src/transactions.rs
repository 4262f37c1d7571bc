//! `summitctl kafka transactions list|abort`: find and end transactions that a crashed
//! `kafka-consumer` (`delivery.mode: exactly_once`) left open.
//!
//! librdkafka has no ListTransactions / DescribeTransactions admin API (KIP-664), and tansu 0.6
//! does not implement those requests either, so:
//! - `list` names *candidate* transactional ids: `<prefix>-<client id>` of each member of the
//!   consumer group(s) (kafka-consumer sets `client.id` to its instance id). It does not read
//!   broker-side transaction state, and a crashed instance that has left the group is not among
//!   the members: its id is `<prefix>-<its service.instance_id>`. It also reports whether the
//!   broker advertises ListTransactions (ApiVersions), which a later version could send.
//! - `abort` runs `init_transactions` with the given transactional id: the broker bumps the
//!   producer epoch, which fences the old producer and aborts its open transaction (the
//!   recovery Kafka documents). It works on every broker that implements transactions.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, Producer};

/// The kafka-consumer default for `delivery.transactional_id_prefix`.
const DEFAULT_PREFIX: &str = "summit-kafka-consumer";

/// Kafka API key of ListTransactions (KIP-664).
const LIST_TRANSACTIONS_API_KEY: i16 = 66;

#[derive(Debug, Args)]
pub(crate) struct KafkaCommand {
    #[command(subcommand)]
    action: KafkaAction,
}

#[derive(Debug, Subcommand)]
enum KafkaAction {
    /// Transactions of exactly_once kafka-consumer instances.
    Transactions(TransactionsCommand),
}

#[derive(Debug, Args)]
struct TransactionsCommand {
    #[command(subcommand)]
    action: TransactionsAction,
}

#[derive(Debug, Subcommand)]
enum TransactionsAction {
    /// List CANDIDATE transactional ids (`<prefix>-<member client id>` of the consumer
    /// group's current members), not broker-side open transactions: neither librdkafka nor
    /// tansu offers ListTransactions. A crashed instance that already left the group is not
    /// listed; its id is `<prefix>-<its service.instance_id>`.
    List(ListArgs),
    /// Abort the open transaction of a transactional id and fence its producer, by running
    /// init_transactions with that id. A live instance using the id is fenced too: it exits
    /// (kafka-consumer exit code 3).
    Abort(AbortArgs),
}

#[derive(Debug, Args)]
struct ListArgs {
    #[arg(long)]
    bootstrap_servers: String,
    /// `delivery.transactional_id_prefix` of the fleet.
    #[arg(long, default_value = DEFAULT_PREFIX)]
    prefix: String,
    /// The fleet's consumer group (`kafka.group_id`); all groups when absent.
    #[arg(long)]
    group: Option<String>,
    #[arg(long, default_value = "10s", value_parser = humantime_serde::re::humantime::parse_duration)]
    timeout: Duration,
}

#[derive(Debug, Args)]
struct AbortArgs {
    #[arg(long)]
    bootstrap_servers: String,
    #[arg(long)]
    transactional_id: String,
    /// How long init_transactions may wait for the broker to finish the abort.
    #[arg(long, default_value = "30s", value_parser = humantime_serde::re::humantime::parse_duration)]
    timeout: Duration,
}

pub(crate) fn run(command: KafkaCommand) -> anyhow::Result<()> {
    let KafkaAction::Transactions(transactions) = command.action;
    match transactions.action {
        TransactionsAction::List(args) => list(&args),
        TransactionsAction::Abort(args) => abort(&args),
    }
}

fn list(args: &ListArgs) -> anyhow::Result<()> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &args.bootstrap_servers)
        .create()
        .context("creating the Kafka client")?;
    let groups = consumer
        .fetch_group_list(args.group.as_deref(), args.timeout)
        .context("describing consumer groups")?;
    let mut candidates: Vec<(String, String, String)> = Vec::new();
    for group in groups.groups() {
        for member in group.members() {
            // tansu reports no client id; librdkafka's member ids are `<client.id>-<uuid>`.
            let client_id = match member.client_id() {
                "" => client_id_of_member(member.id()),
                id => Some(id),
            };
            let Some(client_id) = client_id else {
                println!(
                    "# group {}: member {:?} shows no client id",
                    group.name(),
                    member.id()
                );
                continue;
            };
            candidates.push((
                format!("{}-{client_id}", args.prefix),
                group.name().to_owned(),
                member.client_host().to_owned(),
            ));
        }
    }
    candidates.sort();
    candidates.dedup();
    println!("# candidate transactional ids (from group members; not broker transaction state)");
    println!("transactional_id\tgroup\tmember_host");
    for (id, group, host) in &candidates {
        println!("{id}\t{group}\t{host}");
    }
    match advertised_version(
        &args.bootstrap_servers,
        LIST_TRANSACTIONS_API_KEY,
        args.timeout,
    ) {
        Ok(Some(max)) => println!(
            "# the broker advertises ListTransactions (v0..v{max}); this summitctl does not send it yet"
        ),
        Ok(None) => println!(
            "# the broker does not implement ListTransactions (KIP-664): open transactions cannot be listed"
        ),
        Err(error) => println!("# could not ask the broker for its API versions: {error:#}"),
    }
    Ok(())
}

fn abort(args: &AbortArgs) -> anyhow::Result<()> {
    if args.transactional_id.trim().is_empty() {
        bail!("--transactional-id must not be empty");
    }
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &args.bootstrap_servers)
        .set("transactional.id", &args.transactional_id)
        .set("client.id", "summitctl-transactions-abort")
        .create()
        .context("creating the transactional producer")?;
    producer.init_transactions(args.timeout).with_context(|| {
        format!(
            "init_transactions for `{}` (the broker could not fence the old producer)",
            args.transactional_id
        )
    })?;
    println!(
        "transactional id `{}`: producer epoch bumped; any open transaction is aborted and the \
         previous producer is fenced",
        args.transactional_id
    );
    Ok(())
}

/// `<client.id>` of a librdkafka member id `<client.id>-<uuid>`.
fn client_id_of_member(member_id: &str) -> Option<&str> {
    const UUID_LEN: usize = 36;
    let split = member_id.len().checked_sub(UUID_LEN + 1)?;
    let (client_id, suffix) = member_id.split_at_checked(split)?;
    let uuid = suffix.strip_prefix('-')?;
    let looks_like_uuid = uuid.chars().enumerate().all(|(i, c)| {
        if matches!(i, 8 | 13 | 18 | 23) {
            c == '-'
        } else {
            c.is_ascii_hexdigit()
        }
    });
    (looks_like_uuid && !client_id.is_empty()).then_some(client_id)
}

/// The highest version of `api_key` the first bootstrap server advertises in ApiVersions v0,
/// `None` when it does not list the API.
fn advertised_version(
    bootstrap_servers: &str,
    api_key: i16,
    timeout: Duration,
) -> anyhow::Result<Option<i16>> {
    let first = bootstrap_servers
        .split(',')
        .map(str::trim)
        .find(|s| !s.is_empty())
        .context("no bootstrap server")?;
    let address = first
        .to_socket_addrs()
        .with_context(|| format!("resolving {first}"))?
        .next()
        .with_context(|| format!("{first} resolves to no address"))?;
    let mut stream = TcpStream::connect_timeout(&address, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let client_id = b"summitctl";
    // Request header v1: api_key=18 (ApiVersions), api_version=0, correlation_id, client_id.
    let mut request = Vec::with_capacity(10 + client_id.len());
    request.extend_from_slice(&18i16.to_be_bytes());
    request.extend_from_slice(&0i16.to_be_bytes());
    request.extend_from_slice(&1i32.to_be_bytes());
    request.extend_from_slice(&(client_id.len() as i16).to_be_bytes());
    request.extend_from_slice(client_id);
    stream.write_all(&(request.len() as i32).to_be_bytes())?;
    stream.write_all(&request)?;
    let mut size = [0u8; 4];
    stream.read_exact(&mut size)?;
    let size = usize::try_from(i32::from_be_bytes(size)).context("negative response size")?;
    if size > 1 << 20 {
        bail!("ApiVersions response of {size} bytes is implausible");
    }
    let mut response = vec![0u8; size];
    stream.read_exact(&mut response)?;
    parse_api_versions(&response, api_key)
}

/// ApiVersions v0 response: correlation_id i32, error_code i16, [api_key i16, min i16, max i16].
fn parse_api_versions(response: &[u8], api_key: i16) -> anyhow::Result<Option<i16>> {
    let i16_at = |at: usize| -> anyhow::Result<i16> {
        let bytes = response
            .get(at..at + 2)
            .context("truncated ApiVersions response")?;
        Ok(i16::from_be_bytes([bytes[0], bytes[1]]))
    };
    let error = i16_at(4)?;
    if error != 0 {
        bail!("ApiVersions error code {error}");
    }
    let count_bytes = response
        .get(6..10)
        .context("truncated ApiVersions response")?;
    let count = i32::from_be_bytes([
        count_bytes[0],
        count_bytes[1],
        count_bytes[2],
        count_bytes[3],
    ]);
    for index in 0..usize::try_from(count).unwrap_or(0) {
        let at = 10 + index * 6;
        if i16_at(at)? == api_key {
            return Ok(Some(i16_at(at + 4)?));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_id_is_read_from_a_librdkafka_member_id() {
        assert_eq!(
            client_id_of_member("eos-same-af95606c-8dc4-4f56-afdd-e9b127aed921"),
            Some("eos-same")
        );
        assert_eq!(client_id_of_member("no-uuid-here"), None);
        assert_eq!(
            client_id_of_member("-af95606c-8dc4-4f56-afdd-e9b127aed921"),
            None
        );
    }

    #[test]
    fn api_versions_response_is_searched_for_the_key() {
        let mut response = Vec::new();
        response.extend_from_slice(&1i32.to_be_bytes());
        response.extend_from_slice(&0i16.to_be_bytes());
        response.extend_from_slice(&2i32.to_be_bytes());
        for (key, min, max) in [(18i16, 0i16, 3i16), (66, 0, 1)] {
            response.extend_from_slice(&key.to_be_bytes());
            response.extend_from_slice(&min.to_be_bytes());
            response.extend_from_slice(&max.to_be_bytes());
        }
        assert_eq!(parse_api_versions(&response, 66).expect("parsed"), Some(1));
        assert_eq!(parse_api_versions(&response, 65).expect("parsed"), None);
        assert!(
            parse_api_versions(&response[..12], 66).is_err(),
            "truncated"
        );
    }
}

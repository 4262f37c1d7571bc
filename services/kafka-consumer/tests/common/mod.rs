//! Helpers shared by the integration tests that run the `kafka-consumer` binary: finding its
//! admin port in its log, scraping `/metrics`, and showing the log's tail on failure.

// Each test binary compiles this module on its own and uses a different subset of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use summit_test_support::{Endpoints, kafka, unique_name};

/// The admin address the service logs once its port is bound.
pub(crate) async fn admin_addr(log: &Path) -> std::net::SocketAddr {
    admin_addrs(log, 1).await[0]
}

/// The admin addresses of the first `count` instances that logged one into `log`.
pub(crate) async fn admin_addrs(log: &Path, count: usize) -> Vec<std::net::SocketAddr> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let found: Vec<std::net::SocketAddr> = text
            .lines()
            .filter(|l| l.contains("admin server listening"))
            .filter_map(|line| {
                let rest = line.split("admin_addr").nth(1)?;
                let addr: String = rest
                    .trim_start_matches(['"', ':', '='])
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                    .collect();
                addr.parse().ok()
            })
            .take(count)
            .collect();
        if found.len() == count {
            return found;
        }
        assert!(Instant::now() < deadline, "no admin address logged: {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let response = reqwest::get(format!("http://{addr}{path}"))
        .await
        .expect("admin port answers");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

/// Scrapes `/metrics` until `done` holds (or 15 s), returning the last scrape.
pub(crate) async fn scrape_until(
    addr: std::net::SocketAddr,
    done: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, text) = http_get(addr, "/metrics").await;
        assert_eq!(status, 200);
        if done(&text) || Instant::now() > deadline {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The value of the first sample of `name` carrying every `labels` pair.
pub(crate) fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find(|line| {
            let Some(rest) = line.strip_prefix(name) else {
                return false;
            };
            (rest.starts_with('{') || rest.starts_with(' '))
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

pub(crate) fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines().rev().take(30).collect::<Vec<_>>().join("\n")
}

/// A running service process, killed when the test ends early (a failed assertion).
pub(crate) struct Service(pub(crate) Child);

impl std::ops::Deref for Service {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Service {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// One output record as read back.
#[derive(Debug, Clone)]
pub(crate) struct Output {
    pub(crate) topic: String,
    pub(crate) payload: Vec<u8>,
    pub(crate) headers: HashMap<String, String>,
    pub(crate) timestamp: Option<i64>,
}

impl Output {
    pub(crate) fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }
}

/// Reads every partition of `topics` from the beginning with `isolation`
/// (`read_committed` | `read_uncommitted`) until `done` holds for what was read, or `timeout`.
pub(crate) fn read_topics(
    endpoints: &Endpoints,
    topics: &[String],
    isolation: &str,
    timeout: Duration,
    mut done: impl FnMut(&[Output]) -> bool,
) -> Vec<Output> {
    let consumer: BaseConsumer = kafka::client_config(endpoints)
        .set("group.id", unique_name("reader"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .create()
        .expect("reader");
    let mut list = TopicPartitionList::new();
    for topic in topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .expect("metadata");
        for t in metadata.topics() {
            for p in t.partitions() {
                list.add_partition_offset(topic, p.id(), Offset::Beginning)
                    .expect("offset");
            }
        }
    }
    consumer.assign(&list).expect("assign");
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    let mut last_check = Instant::now();
    while Instant::now() < deadline {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            out.push(output_of(&message));
        } else if last_check.elapsed() > Duration::from_millis(300) {
            last_check = Instant::now();
            if done(&out) {
                break;
            }
        }
    }
    out
}

/// The offset `group` committed for partition 0 of `topic`, if any.
pub(crate) fn committed_offset(endpoints: &Endpoints, group: &str, topic: &str) -> Option<i64> {
    let reader: BaseConsumer = kafka::consumer_config(endpoints, group)
        .create()
        .expect("consumer");
    let mut list = TopicPartitionList::new();
    list.add_partition(topic, 0);
    let committed = reader
        .committed_offsets(list, Duration::from_secs(10))
        .expect("committed offsets");
    match committed.find_partition(topic, 0).map(|e| e.offset()) {
        Some(Offset::Offset(offset)) => Some(offset),
        _ => None,
    }
}

/// Every record of `topics` up to the high watermarks read when the call starts: a snapshot
/// that does not depend on an idle time, so it is exact under constant traffic on shared
/// topics. Records written later may be included; none written before are missed.
pub(crate) fn read_to_end(endpoints: &Endpoints, topics: &[String]) -> Vec<Output> {
    let consumer: BaseConsumer = kafka::client_config(endpoints)
        .set("group.id", unique_name("snapshot"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_uncommitted")
        .create()
        .expect("reader");
    let mut list = TopicPartitionList::new();
    let mut remaining: HashMap<(String, i32), i64> = HashMap::new();
    for topic in topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .expect("metadata");
        for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
            let (low, high) = consumer
                .fetch_watermarks(topic, partition.id(), Duration::from_secs(10))
                .expect("watermarks");
            if high > low {
                remaining.insert((topic.clone(), partition.id()), high);
            }
            list.add_partition_offset(topic, partition.id(), Offset::Beginning)
                .expect("offset");
        }
    }
    consumer.assign(&list).expect("assign");
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut out = Vec::new();
    while !remaining.is_empty() {
        assert!(
            Instant::now() < deadline,
            "snapshot incomplete: {remaining:?}"
        );
        let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) else {
            // A partition can end in a transaction marker, which is never delivered: the
            // position moves past it all the same.
            if let Ok(positions) = consumer.position() {
                for element in positions.elements() {
                    let key = (element.topic().to_owned(), element.partition());
                    if let (Offset::Offset(position), Some(high)) =
                        (element.offset(), remaining.get(&key))
                        && position >= *high
                    {
                        remaining.remove(&key);
                    }
                }
            }
            continue;
        };
        let key = (message.topic().to_owned(), message.partition());
        if remaining
            .get(&key)
            .is_some_and(|high| message.offset() + 1 >= *high)
        {
            remaining.remove(&key);
        }
        out.push(output_of(&message));
    }
    out
}

fn output_of(message: &rdkafka::message::BorrowedMessage<'_>) -> Output {
    let headers = message
        .headers()
        .map(|h| {
            h.iter()
                .map(|h| {
                    (
                        h.key.to_owned(),
                        String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Output {
        topic: message.topic().to_owned(),
        payload: message.payload().unwrap_or_default().to_vec(),
        headers,
        timestamp: message.timestamp().to_millis(),
    }
}

/// The offsets `group` committed for partitions `0..partitions` of `topic` (absent: none).
pub(crate) fn committed_offsets(
    endpoints: &Endpoints,
    group: &str,
    topic: &str,
    partitions: i32,
) -> HashMap<i32, i64> {
    let reader: BaseConsumer = kafka::consumer_config(endpoints, group)
        .create()
        .expect("consumer");
    let mut list = TopicPartitionList::new();
    for partition in 0..partitions {
        list.add_partition(topic, partition);
    }
    let committed = reader
        .committed_offsets(list, Duration::from_secs(10))
        .expect("committed offsets");
    committed
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(offset) => Some((e.partition(), offset)),
            _ => None,
        })
        .collect()
}

/// Lines of the log containing `needle`.
pub(crate) fn log_count(log: &Path, needle: &str) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

/// Waits until `needle` appears in the log more than `before` times.
pub(crate) async fn wait_for_log(
    log: &Path,
    needle: &str,
    before: usize,
    timeout: Duration,
) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if log_count(log, needle) > before {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

//! Kafka topics per test on the local tansu broker.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;

use crate::fault_proxy::FaultProxy;
use crate::{Endpoints, Result, SupportError, unique_name};

/// A client config pointed at the local broker, with the settings every test wants.
pub fn client_config(endpoints: &Endpoints) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &endpoints.kafka_bootstrap)
        // tansu on memory storage is quick; fail fast rather than hang a test for minutes.
        .set("socket.timeout.ms", "10000");
    config
}

/// A consumer config for `group`: manual commits, reading from the earliest offset.
///
/// tansu answers a JoinGroup only after half the session timeout has passed (it waits that long
/// for other members), so librdkafka's 45 s default makes every join take ~23 s. 6 s is the
/// smallest timeout Kafka brokers accept by default and brings a join down to ~3 s.
pub fn consumer_config(endpoints: &Endpoints, group: &str) -> ClientConfig {
    let mut config = client_config(endpoints);
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500");
    config
}

/// Creates a topic named `<prefix>-<unique>` with `partitions` partitions and returns its name.
pub async fn create_topic(endpoints: &Endpoints, prefix: &str, partitions: i32) -> Result<String> {
    let name = unique_name(prefix);
    create_named_topic(endpoints, &name, partitions).await?;
    Ok(name)
}

/// Creates `name` if it does not exist yet (an existing topic is not an error).
pub async fn create_named_topic(endpoints: &Endpoints, name: &str, partitions: i32) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> =
        client_config(endpoints)
            .create()
            .map_err(|e| SupportError::Unreachable {
                server: "kafka",
                endpoint: endpoints.kafka_bootstrap.clone(),
                source: Box::new(e),
            })?;
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results =
        admin
            .create_topics([&topic], &options)
            .await
            .map_err(|e| SupportError::Unreachable {
                server: "kafka",
                endpoint: endpoints.kafka_bootstrap.clone(),
                source: Box::new(e),
            })?;
    for result in results {
        match result {
            Ok(_) => {}
            Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(SupportError::Create {
                    server: "kafka",
                    what: "topic",
                    name: topic,
                    message: code.to_string(),
                });
            }
        }
    }
    Ok(())
}

/// A tansu broker of one test's own, reachable only through a [`FaultProxy`].
///
/// Kafka clients connect to the address a broker advertises, not the bootstrap address, so a
/// proxy in front of the shared broker would be bypassed after the first metadata request. This
/// broker advertises the proxy's address instead, so every byte goes through the proxy and the
/// test can slow, blackhole or cut it. Memory storage: it starts in ~0.3 s and dies with the test.
#[derive(Debug)]
pub struct ProxiedBroker {
    pub proxy: FaultProxy,
    broker: tokio::process::Child,
}

impl ProxiedBroker {
    /// Starts the broker from `SUMMIT_TANSU_BIN` (exported by `scripts/dev`).
    pub async fn start() -> Result<Self> {
        let tansu = std::env::var("SUMMIT_TANSU_BIN").unwrap_or_else(|_| {
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../.dev/cache/tansu/tansu").to_owned()
        });
        let unreachable = |e: std::io::Error| SupportError::Unreachable {
            server: "tansu (private)",
            endpoint: tansu.clone(),
            source: Box::new(e),
        };
        let proxy_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(unreachable)?;
        let proxy_addr = proxy_listener.local_addr().map_err(unreachable)?;
        // Ask the OS for a free port; the broker binds it a moment later.
        let broker_addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(unreachable)?;
        let broker = tokio::process::Command::new(&tansu)
            .arg("broker")
            .arg("--listener-url")
            .arg(format!("tcp://{broker_addr}"))
            .arg("--advertised-listener-url")
            .arg(format!("tcp://{proxy_addr}"))
            .arg("--storage-engine")
            .arg("memory://tansu/")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(unreachable)?;
        let waited = Duration::from_secs(10);
        let started = std::time::Instant::now();
        while tokio::net::TcpStream::connect(broker_addr).await.is_err() {
            if started.elapsed() > waited {
                return Err(SupportError::NotReady {
                    server: "tansu (private)",
                    what: "listener",
                    name: broker_addr.to_string(),
                    waited,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Self {
            proxy: FaultProxy::serve(proxy_listener, broker_addr),
            broker,
        })
    }

    /// The bootstrap address clients use: the proxy's.
    pub fn bootstrap(&self) -> String {
        self.proxy.addr().to_string()
    }

    /// Endpoints like `base` but with Kafka pointing at this broker.
    pub fn endpoints(&self, base: &Endpoints) -> Endpoints {
        Endpoints {
            kafka_bootstrap: self.bootstrap(),
            ..base.clone()
        }
    }

    /// Stops the broker now (it is also killed when dropped).
    pub async fn stop(mut self) {
        let _ = self.broker.kill().await;
    }
}

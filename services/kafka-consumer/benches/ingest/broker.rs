//! A private tansu broker per phase, the bench's own producer, and process CPU time.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use summit_test_support::{Endpoints, kafka};

use crate::data::{Encoder, send_event};

/// A private tansu broker on memory storage, killed on drop.
pub(crate) struct Tansu {
    child: Child,
    bootstrap: String,
}

impl Tansu {
    pub(crate) async fn start() -> Result<Self> {
        let bin = std::env::var("SUMMIT_TANSU_BIN").unwrap_or_else(|_| {
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../.dev/cache/tansu/tansu").to_owned()
        });
        let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let child = Command::new(&bin)
            .arg("broker")
            .arg("--listener-url")
            .arg(format!("tcp://{addr}"))
            .arg("--advertised-listener-url")
            .arg(format!("tcp://{addr}"))
            .arg("--storage-engine")
            .arg("memory://tansu/")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting tansu from {bin}"))?;
        let started = Instant::now();
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            if started.elapsed() > Duration::from_secs(10) {
                bail!("tansu did not listen on {addr} within 10 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Self {
            child,
            bootstrap: addr.to_string(),
        })
    }

    pub(crate) fn endpoints(&self) -> Endpoints {
        Endpoints {
            kafka_bootstrap: self.bootstrap.clone(),
            ..Endpoints::from_env()
        }
    }

    pub(crate) fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// The broker's CPU seconds so far.
    pub(crate) fn cpu_seconds(&self) -> f64 {
        cpu_seconds(self.child.id())
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) async fn create_topics(
    endpoints: &Endpoints,
    names: &[String],
    partitions: i32,
) -> Result<()> {
    for name in names {
        kafka::create_named_topic(endpoints, name, partitions).await?;
    }
    Ok(())
}

/// A fresh broker with `events` records in `source` and the empty `outputs` topics (all with
/// `partitions` partitions); how long loading took.
pub(crate) async fn loaded_broker(
    events: u64,
    partitions: i32,
    encoder: &Encoder,
    source: &str,
    outputs: &[String],
) -> Result<(Tansu, f64)> {
    let broker = Tansu::start().await?;
    let endpoints = broker.endpoints();
    create_topics(&endpoints, &[source.to_owned()], partitions).await?;
    create_topics(&endpoints, outputs, partitions).await?;
    let started = Instant::now();
    let mut sender = Sender::new(producer(&endpoints)?, 100_000);
    for index in 0..events {
        send_event(&mut sender, encoder, source, index, None).await?;
    }
    sender.finish().await?;
    Ok((broker, started.elapsed().as_secs_f64()))
}

/// The loader's and the pacer's producer (the source side, the same for both sides measured).
pub(crate) fn producer(endpoints: &Endpoints) -> Result<FutureProducer> {
    Ok(kafka::client_config(endpoints)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "2")
        .set("queue.buffering.max.messages", "200000")
        .create()?)
}

/// Sends without waiting per record; waits for the oldest acks when more than `window` are
/// unacknowledged or librdkafka's queue is full. Each record carries a tag, handed back in
/// [`Sender::take_acked`] once it and every record sent before it are acknowledged.
pub(crate) struct Sender<T = ()> {
    producer: FutureProducer,
    pending: VecDeque<(DeliveryFuture, T)>,
    window: usize,
    acked: Vec<T>,
}

impl<T> Sender<T> {
    pub(crate) fn new(producer: FutureProducer, window: usize) -> Self {
        Self {
            producer,
            pending: VecDeque::new(),
            window,
            acked: Vec::new(),
        }
    }

    pub(crate) async fn send(
        &mut self,
        mut record: FutureRecord<'_, [u8], [u8]>,
        tag: T,
    ) -> Result<()> {
        loop {
            match self.producer.send_result(record) {
                Ok(delivery) => {
                    self.pending.push_back((delivery, tag));
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    self.ack_oldest().await?;
                }
                Err((error, _)) => return Err(error.into()),
            }
        }
        while self.pending.len() > self.window {
            self.ack_oldest().await?;
        }
        self.ack_ready()
    }

    /// Tags of the records acknowledged since the last call, in send order.
    pub(crate) fn take_acked(&mut self) -> std::vec::Drain<'_, T> {
        self.acked.drain(..)
    }

    async fn ack_oldest(&mut self) -> Result<()> {
        match self.pending.pop_front() {
            Some((delivery, tag)) => {
                settle(delivery.await)?;
                self.acked.push(tag);
                Ok(())
            }
            None => {
                tokio::time::sleep(Duration::from_millis(1)).await;
                Ok(())
            }
        }
    }

    /// Takes the acknowledgements already there at the front, without waiting (the service's
    /// delivery callback settles positions as they come, too).
    fn ack_ready(&mut self) -> Result<()> {
        let mut context = TaskContext::from_waker(Waker::noop());
        while let Some((delivery, _)) = self.pending.front_mut() {
            let Poll::Ready(result) = Pin::new(delivery).poll(&mut context) else {
                break;
            };
            if let Some((_, tag)) = self.pending.pop_front() {
                settle(result)?;
                self.acked.push(tag);
            }
        }
        Ok(())
    }

    pub(crate) async fn finish(&mut self) -> Result<()> {
        while !self.pending.is_empty() {
            self.ack_oldest().await?;
        }
        Ok(())
    }
}

fn settle(delivery: <DeliveryFuture as Future>::Output) -> Result<()> {
    match delivery {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((error, _))) => Err(error.into()),
        Err(_) => bail!("producer dropped a delivery"),
    }
}

pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".to_owned())
}

/// User + system CPU seconds of `pid` so far (`/proc/<pid>/stat`, clock ticks of 1/100 s).
pub(crate) fn cpu_seconds(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| cpu_seconds_of_stat(&stat))
        .unwrap_or(f64::NAN)
}

fn cpu_seconds_of_stat(stat: &str) -> f64 {
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |index: usize| fields.get(index).and_then(|f| f.parse::<f64>().ok());
    match (ticks(11), ticks(12)) {
        (Some(user), Some(system)) => (user + system) / 100.0,
        _ => f64::NAN,
    }
}

//! Ingest latency at a paced rate, for the raw pipe and for the service, each on a fresh broker
//! in the same way: start the side, warm it up, pace `rate` events/s for `secs`, and take per
//! record the time the bench's reader sees the output minus the source record's timestamp.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdkafka::producer::FutureRecord;
use summit_envelope::now_millis;

use crate::broker::{Sender, Tansu, create_topics, load_average, producer};
use crate::data::{Encoder, SentTimes, WARMUP_KEY, send_event};
use crate::pipe::{RawHeaders, RawPipe};
use crate::plot::{self, Series};
use crate::reader::{Count, Seen, join_reader, percentile, spawn_reader};
use crate::service::{Service, ServiceConfig, output_topics, write_config};

const COPY: &str = "bench.raw-copy";
/// Records through each side before pacing: the group has joined (and the service has the
/// schema) once these are through.
const WARMUP: u64 = 200;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Paced {
    pub(crate) rate: u64,
    pub(crate) secs: u64,
    pub(crate) partitions: i32,
}

impl Paced {
    fn total(&self) -> u64 {
        self.rate * self.secs
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    RawPipe,
    Service,
}

impl Side {
    fn label(self) -> &'static str {
        match self {
            Side::RawPipe => "raw pipe",
            Side::Service => "kafka-consumer",
        }
    }
}

/// One side's paced run.
#[derive(Debug)]
struct Measured {
    side: Side,
    sent: u64,
    achieved: f64,
    seen: Seen,
}

/// Both sides, their figures, and the chart of both distributions.
pub(crate) async fn latency(
    paced: Paced,
    encoder: &Encoder,
    service_config: &ServiceConfig<'_>,
) -> Result<()> {
    let mut runs = Vec::new();
    for side in [Side::RawPipe, Side::Service] {
        let mut run = paced_run(side, paced, encoder, service_config).await?;
        run.seen.latency_seen_ms.sort_unstable();
        run.seen.latency_produced_ms.sort_unstable();
        report(&run, paced);
        runs.push(run);
    }
    let complete = runs
        .iter()
        .all(|run| run.seen.accounted == WARMUP + paced.total());
    if !complete {
        println!("WARNING: a latency run did not account for every record (see above)");
    }
    let path = plot_path();
    let series: Vec<Series<'_>> = runs
        .iter()
        .map(|run| Series {
            label: run.side.label(),
            sorted_ms: &run.seen.latency_seen_ms,
            incomplete: (run.seen.accounted < WARMUP + paced.total())
                .then_some((run.seen.accounted, WARMUP + paced.total())),
        })
        .collect();
    let title = format!(
        "Ingest latency at {} events/s for {} s (source timestamp → output read back)",
        paced.rate, paced.secs
    );
    plot::draw(&path, &title, &series)?;
    println!("latency chart: {}", path.display());
    Ok(())
}

/// `BENCH_PLOT`, relative to the workspace root, or the README's chart.
fn plot_path() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    // services/kafka-consumer -> the workspace root.
    let root = manifest.ancestors().nth(2).unwrap_or(manifest);
    let relative = std::env::var("BENCH_PLOT")
        .unwrap_or_else(|_| "services/kafka-consumer/docs/ingest-latency.png".to_owned());
    root.join(relative)
}

/// What runs the side during a paced run.
enum Running {
    Pipe(RawPipe),
    Service(Service),
}

impl Running {
    async fn stop(self) -> Result<()> {
        match self {
            Running::Pipe(pipe) => pipe.finish().await.map(drop),
            Running::Service(service) => service.stop(),
        }
    }

    fn describe(&self) -> String {
        match self {
            Running::Pipe(_) => "raw pipe".to_owned(),
            Running::Service(service) => format!("service log: {}", service.log.display()),
        }
    }
}

/// On a fresh broker: `side` runs while a producer paces `paced.rate` events/s.
async fn paced_run(
    side: Side,
    paced: Paced,
    encoder: &Encoder,
    config: &ServiceConfig<'_>,
) -> Result<Measured> {
    let broker = Tansu::start().await?;
    let endpoints = broker.endpoints();
    let outputs = match side {
        Side::RawPipe => vec![COPY.to_owned()],
        Side::Service => output_topics(config.source, config.dataset),
    };
    create_topics(&endpoints, &[config.source.to_owned()], paced.partitions).await?;
    create_topics(&endpoints, &outputs, 1).await?;
    let expected = WARMUP + paced.total();
    let running = start(side, config, &broker, expected)?;
    let mut sender = Sender::new(producer(&endpoints)?, 100_000);
    let warm = warm_up(&mut sender, &broker, &outputs, encoder, config.source).await;
    if let Err(error) = warm {
        let describe = running.describe();
        let _ = running.stop().await;
        return Err(error.context(describe));
    }
    let sent_times = Arc::new(SentTimes::new(paced.total()));
    let count = match side {
        Side::RawPipe => Count::Copies {
            sent: Some(sent_times.clone()),
        },
        Side::Service => Count::EventIds {
            latency_from_ms: now_millis(),
        },
    };
    let timeout = Duration::from_secs(paced.secs + 120);
    let reader = spawn_reader(
        broker.bootstrap().to_owned(),
        outputs,
        expected,
        count,
        timeout,
    );
    let (sent, achieved) = pace(&mut sender, encoder, config.source, paced, &sent_times).await?;
    let seen = join_reader(reader)?;
    running.stop().await?;
    drop(broker);
    Ok(Measured {
        side,
        sent,
        achieved,
        seen,
    })
}

fn start(side: Side, config: &ServiceConfig<'_>, broker: &Tansu, expected: u64) -> Result<Running> {
    Ok(match side {
        Side::RawPipe => {
            let file = write_config(config, broker.bootstrap(), "raw-pipe")?;
            Running::Pipe(RawPipe::start(&file, COPY, expected, RawHeaders::Source)?)
        }
        Side::Service => Running::Service(Service::start(config, broker.bootstrap())?),
    })
}

/// [`WARMUP`] records through the side, read back on `outputs`.
async fn warm_up(
    sender: &mut Sender,
    broker: &Tansu,
    outputs: &[String],
    encoder: &Encoder,
    source: &str,
) -> Result<()> {
    let reader = spawn_reader(
        broker.bootstrap().to_owned(),
        outputs.to_vec(),
        WARMUP,
        Count::Records,
        Duration::from_secs(60),
    );
    for index in 0..WARMUP {
        let payload = encoder.payload(index * 1000 + 500)?;
        let record = FutureRecord::to(source)
            .key(WARMUP_KEY)
            .payload(payload.as_slice());
        sender.send(record, ()).await?;
    }
    sender.finish().await?;
    let warm = join_reader(reader)?;
    if warm.accounted < WARMUP {
        bail!(
            "warm-up did not come through ({} of {WARMUP})",
            warm.accounted
        );
    }
    Ok(())
}

/// Sends `paced.total()` events at `paced.rate`/s, each with its send time as CreateTime (also
/// kept in `sent_times`); how many were sent, at what rate.
async fn pace(
    sender: &mut Sender,
    encoder: &Encoder,
    source: &str,
    paced: Paced,
    sent_times: &SentTimes,
) -> Result<(u64, f64)> {
    let total = paced.total();
    let started = Instant::now();
    let mut sent = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    while sent < total {
        tick.tick().await;
        let due = ((started.elapsed().as_secs_f64() * paced.rate as f64) as u64).min(total);
        while sent < due {
            let now = now_millis();
            sent_times.set(sent, now);
            send_event(sender, encoder, source, sent, Some(now))
                .await
                .context("pacing")?;
            sent += 1;
        }
    }
    sender.finish().await?;
    Ok((sent, sent as f64 / started.elapsed().as_secs_f64()))
}

fn report(run: &Measured, paced: Paced) {
    let label = run.side.label();
    let (seen, sent, achieved) = (&run.seen, run.sent, run.achieved);
    let (seen_ms, produced_ms) = (&seen.latency_seen_ms, &seen.latency_produced_ms);
    println!(
        "paced, {label}: {sent} events at {achieved:.0}/s (target {}/s) for {} s; {} of {} \
         accounted; load {}",
        paced.rate,
        paced.secs,
        seen.accounted,
        WARMUP + paced.total(),
        load_average()
    );
    println!(
        "ingest latency, {label}, source timestamp -> output seen by the bench reader (good + \
         soft_fail, the service's mesh + quarantine, n={}): p50 {} ms, p99 {} ms, p99.9 {} ms, \
         max {} ms (target p99 < 250 ms, aim < 20 ms)",
        seen_ms.len(),
        percentile(seen_ms, 0.50),
        percentile(seen_ms, 0.99),
        percentile(seen_ms, 0.999),
        seen_ms.last().copied().unwrap_or(-1)
    );
    println!(
        "ingest latency, {label}, source timestamp -> output CreateTime (handed to librdkafka, \
         n={}): p50 {} ms, p99 {} ms, p99.9 {} ms",
        produced_ms.len(),
        percentile(produced_ms, 0.50),
        percentile(produced_ms, 0.99),
        percentile(produced_ms, 0.999)
    );
}

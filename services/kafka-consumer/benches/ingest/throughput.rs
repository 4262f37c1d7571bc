//! Throughput: the raw pipe (twice: source headers, DESIGN headers) and the service, each on
//! its own freshly loaded broker, then the ratios, printed only when every side accounted for
//! every record.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::broker::{Tansu, load_average, loaded_broker};
use crate::data::{Encoder, Kind, kind_of};
use crate::pipe::{RawHeaders, RawPipe};
use crate::reader::{Count, join_reader, rate_created, rate_seen, spawn_reader};
use crate::service::{Service, ServiceConfig, output_topics, write_config};

const COPY: &str = "bench.raw-copy";

/// One side's throughput run.
#[derive(Debug, Clone, Copy)]
struct Run {
    /// Events/s, first to last output CreateTime.
    rate: f64,
    /// CPU seconds of the side's process, and of the broker during the run.
    cpu: f64,
    broker_cpu: f64,
    /// Whether the reader saw every record's output(s) and, for the pipe, its commits covered
    /// every record.
    complete: bool,
}

/// Load, then the raw pipe and the service on the same data.
pub(crate) async fn throughput(
    events: u64,
    partitions: i32,
    encoder: &Encoder,
    service_config: &ServiceConfig<'_>,
) -> Result<()> {
    let (source, dataset) = (service_config.source, service_config.dataset);
    let copy = [COPY.to_owned()];
    // Each side gets a fresh broker loaded with the same records: tansu's memory storage only
    // grows, and a second phase on the first phase's broker ran measurably slower.
    let (broker, load_secs) = loaded_broker(events, partitions, encoder, source, &copy).await?;
    let count = |k: Kind| (0..events).filter(|i| kind_of(*i) == k).count();
    println!(
        "load: {events} events in {load_secs:.2} s ({:.0}/s); good {} soft {} hard {} poison {}",
        events as f64 / load_secs,
        count(Kind::Good),
        count(Kind::Soft),
        count(Kind::Hard),
        count(Kind::Poison)
    );
    // The raw pipe as the target defines it, then again with the provenance headers every mesh
    // record carries (DESIGN §3), then the service.
    let plain = raw_phase(broker, service_config, events, RawHeaders::Source).await?;
    let (broker, _) = loaded_broker(events, partitions, encoder, source, &copy).await?;
    let with_headers = raw_phase(broker, service_config, events, RawHeaders::Design).await?;
    let outputs = output_topics(source, dataset);
    let (broker, _) = loaded_broker(events, partitions, encoder, source, &outputs).await?;
    let service = service_phase(broker, service_config, events).await?;
    report(events, &plain, &with_headers, &service);
    Ok(())
}

/// One raw pipe run on `broker` (dropped at the end).
async fn raw_phase(
    broker: Tansu,
    service_config: &ServiceConfig<'_>,
    events: u64,
    headers: RawHeaders,
) -> Result<Run> {
    let reader = spawn_reader(
        broker.bootstrap().to_owned(),
        vec![COPY.to_owned()],
        events,
        Count::Copies { sent: None },
        Duration::from_secs(300),
    );
    let config = write_config(service_config, broker.bootstrap(), "raw-pipe")?;
    let started = Instant::now();
    let broker_cpu_before = broker.cpu_seconds();
    let pipe = RawPipe::start(&config, COPY, events, headers)?
        .finish()
        .await?;
    let seen = join_reader(reader)?;
    let broker_cpu = broker.cpu_seconds() - broker_cpu_before;
    let rate = rate_created(seen.accounted, &seen);
    let label = match headers {
        RawHeaders::Source => "raw pipe (StreamConsumer -> FutureProducer, no decode/validate)",
        RawHeaders::Design => "raw pipe + the 8 DESIGN §3 headers per copy (no decode/validate)",
    };
    println!(
        "{label}: {} of {events} copied (pipe: {} copied, offsets committed for {}); {rate:.0} \
         events/s (first to last output CreateTime); {:.0} events/s (reader: first to last copy \
         seen); {:.0} events/s (pipe: first receive to last ack); {:.1} s wall incl. group \
         join; load {}",
        seen.accounted,
        pipe.copied,
        pipe.committed,
        rate_seen(seen.accounted, &seen),
        pipe.rate,
        started.elapsed().as_secs_f64(),
        load_average()
    );
    Ok(Run {
        rate,
        cpu: pipe.cpu,
        broker_cpu,
        complete: seen.accounted == events && pipe.committed == events,
    })
}

/// The service on `broker` (dropped at the end) until every event is accounted for.
async fn service_phase(
    broker: Tansu,
    service_config: &ServiceConfig<'_>,
    events: u64,
) -> Result<Run> {
    let (source, dataset) = (service_config.source, service_config.dataset);
    let reader = spawn_reader(
        broker.bootstrap().to_owned(),
        output_topics(source, dataset),
        events,
        Count::EventIds {
            latency_from_ms: i64::MAX,
        },
        Duration::from_secs(600),
    );
    let started = Instant::now();
    let broker_cpu_before = broker.cpu_seconds();
    let service = Service::start(service_config, broker.bootstrap())?;
    let seen = join_reader(reader)?;
    let wall = started.elapsed().as_secs_f64();
    let cpu = service.cpu_seconds();
    let broker_cpu = broker.cpu_seconds() - broker_cpu_before;
    let log = service.log.clone();
    service
        .stop()
        .with_context(|| format!("service log: {}", log.display()))?;
    let rate = rate_created(seen.accounted, &seen);
    println!(
        "service (kafka-consumer binary, Avro + registry, 6 rules): {} of {events} accounted \
         (mesh {}, quarantine {}, hard_fail dq.events {}, dlq {}); {rate:.0} events/s \
         (first to last output CreateTime); {:.0} events/s (reader: first to last output seen); \
         {:.0} events/s over {wall:.1} s wall incl. start-up and group join; load {}",
        seen.accounted,
        seen.mesh,
        seen.quarantine,
        seen.hard,
        seen.dlq,
        rate_seen(seen.accounted, &seen),
        seen.accounted as f64 / wall,
        load_average()
    );
    Ok(Run {
        rate,
        cpu,
        broker_cpu,
        complete: seen.accounted == events,
    })
}

/// The ratios (only between runs that accounted for every record) and CPU per event.
fn report(events: u64, plain: &Run, with_headers: &Run, service: &Run) {
    let ratio = |side: &Run| {
        if service.complete && side.complete {
            format!("{:.2}", service.rate / side.rate)
        } else {
            "none (a run did not account for every record)".to_owned()
        }
    };
    println!(
        "ratio service/raw: {} (target >= 0.70); service/raw with DESIGN headers: {}",
        ratio(plain),
        ratio(with_headers)
    );
    for (name, run) in [
        ("raw pipe", plain),
        ("raw pipe + DESIGN headers", with_headers),
        ("service", service),
    ] {
        if !run.complete {
            println!("WARNING: the {name} run did not account for every one of {events} events");
        }
    }
    let per_event = |seconds: f64| seconds * 1e6 / events as f64;
    println!(
        "cpu per event (process user+sys / {events}): raw pipe {:.1} µs, with headers {:.1} µs, \
         service {:.1} µs (incl. start-up); broker during those phases {:.1} / {:.1} / {:.1} µs",
        per_event(plain.cpu),
        per_event(with_headers.cpu),
        per_event(service.cpu),
        per_event(plain.broker_cpu),
        per_event(with_headers.broker_cpu),
        per_event(service.broker_cpu),
    );
}

//! The bench's records: schema, rule set, the soft / hard / poison mix, and how a reader finds
//! which record a copy is.

use std::sync::atomic::{AtomicI64, Ordering};

use anyhow::{Result, bail};
use apache_avro::Schema;
use apache_avro::types::Value as Avro;
use rdkafka::producer::FutureRecord;
use summit_envelope::now_millis;
use summit_schema::encode_avro;

use crate::broker::Sender;

pub(crate) const SCHEMA: &str = r#"{
  "type": "record", "name": "BenchOrder", "namespace": "summit.bench",
  "fields": [
    {"name": "order_id", "type": "string"},
    {"name": "customer_id", "type": "string"},
    {"name": "amount_cents", "type": "long"},
    {"name": "currency", "type": {"type": "enum", "name": "Currency", "symbols": ["EUR", "USD", "GBP", "CHF"]}},
    {"name": "created_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "channel", "type": ["null", "string"], "default": null},
    {"name": "note", "type": "string"}
  ]
}"#;

/// Six rules of the kinds a real orders rule set has; `amount_cents` drives the mix.
pub(crate) const RULES: &str = r#"
name: bench-orders
rules:
  - { id: order-id, field: order_id, kind: required, severity: hard }
  - { id: amount-nonnegative, field: amount_cents, kind: range, severity: hard, params: { min: 0 } }
  - { id: amount-plausible, field: amount_cents, kind: range, severity: soft, params: { max: 1000000 } }
  - { id: currency, field: currency, kind: in_set, severity: hard, params: { values: [EUR, USD, GBP, CHF] } }
  - { id: customer, field: customer_id, kind: regex, severity: soft, params: { pattern: '^c-[0-9]+$' } }
  - { id: created, field: created_at, kind: range, severity: soft, params: { min: "2020-01-01T00:00:00Z" } }
"#;

/// The key of the warm-up records of a latency phase (the paced ones have `c-<n>` keys).
pub(crate) const WARMUP_KEY: &[u8] = b"warmup";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Good,
    Soft,
    Hard,
    Poison,
}

/// 1 % soft, 0.1 % hard, 0.1 % poison, spread evenly.
pub(crate) fn kind_of(index: u64) -> Kind {
    match (index % 1000, index % 100) {
        (7, _) => Kind::Hard,
        (13, _) => Kind::Poison,
        (_, 42) => Kind::Soft,
        _ => Kind::Good,
    }
}

/// First byte of a poison value (registry framing starts with 0).
const POISON_BYTE: u8 = 0xFF;

/// Where `o-<index:010>` sits in every value: after the 5-byte registry framing and the one-byte
/// Avro length of `order_id` (12 characters) in a decodable one, at the same place in a poison
/// one. The raw pipe copies values as they are, so this is how a reader tells its copies apart.
const INDEX_AT: std::ops::Range<usize> = 6..18;

#[derive(Debug)]
pub(crate) struct Encoder {
    pub(crate) schema: Schema,
    pub(crate) id: u32,
    pub(crate) note: String,
}

impl Encoder {
    pub(crate) fn payload(&self, index: u64) -> Result<Vec<u8>> {
        let kind = kind_of(index);
        if kind == Kind::Poison {
            // Not registry framing (magic byte 0): undecodable, goes to the DLQ.
            let mut poison = vec![POISON_BYTE; 480];
            poison[INDEX_AT].copy_from_slice(format!("o-{index:010}").as_bytes());
            return Ok(poison);
        }
        let amount = match kind {
            Kind::Hard => -100,
            Kind::Soft => 5_000_000,
            _ => 1_000 + (index % 50_000) as i64,
        };
        let value = Avro::Record(vec![
            ("order_id".into(), Avro::String(format!("o-{index:010}"))),
            (
                "customer_id".into(),
                Avro::String(format!("c-{}", index % 9973)),
            ),
            ("amount_cents".into(), Avro::Long(amount)),
            ("currency".into(), Avro::Enum(1, "USD".into())),
            ("created_at".into(), Avro::TimestampMillis(now_millis())),
            (
                "channel".into(),
                Avro::Union(1, Box::new(Avro::String("web".into()))),
            ),
            ("note".into(), Avro::String(self.note.clone())),
        ]);
        Ok(encode_avro(self.id, &self.schema, value)?)
    }

    /// Checks that [`record_index`] finds the index in both kinds of value.
    pub(crate) fn check_index_layout(&self) -> Result<()> {
        for index in [1, 13, 1_234_567] {
            let found = record_index(&self.payload(index)?);
            if found != Some(index) {
                bail!("record_index found {found:?} in the value of record {index}");
            }
        }
        Ok(())
    }
}

/// The bench index of a value written by [`Encoder::payload`] (or a copy of one).
pub(crate) fn record_index(payload: &[u8]) -> Option<u64> {
    let digits = payload.get(INDEX_AT)?.strip_prefix(b"o-")?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Event `index` of the bench data (its payload and its key, one of 9973) to `source`, with
/// `timestamp` as its CreateTime when given (else librdkafka's clock at the send).
pub(crate) async fn send_event(
    sender: &mut Sender,
    encoder: &Encoder,
    source: &str,
    index: u64,
    timestamp: Option<i64>,
) -> Result<()> {
    let payload = encoder.payload(index)?;
    let key = format!("c-{}", index % 9973);
    let mut record = FutureRecord::to(source)
        .key(key.as_bytes())
        .payload(payload.as_slice());
    if let Some(timestamp) = timestamp {
        record = record.timestamp(timestamp);
    }
    sender.send(record, ()).await
}

/// The source timestamp of each paced record, by index: the pacer sets it as the record's
/// CreateTime and stores it here before sending, so a reader of the raw pipe's copies (which
/// carry no headers) knows it exactly, as a reader of the service's outputs does from
/// `summit-event-time`.
#[derive(Debug)]
pub(crate) struct SentTimes(Vec<AtomicI64>);

impl SentTimes {
    pub(crate) fn new(records: u64) -> Self {
        Self((0..records).map(|_| AtomicI64::new(0)).collect())
    }

    pub(crate) fn set(&self, index: u64, millis: i64) {
        if let Some(slot) = self.0.get(index as usize) {
            slot.store(millis, Ordering::Release);
        }
    }

    pub(crate) fn get(&self, index: u64) -> Option<i64> {
        let millis = self.0.get(index as usize)?.load(Ordering::Acquire);
        (millis != 0).then_some(millis)
    }
}

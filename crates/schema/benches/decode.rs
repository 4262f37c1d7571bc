//! Decode + validate throughput of a ~500-byte registry-framed Avro record with the schema
//! already compiled (the steady state of a consumer), and of a JSON document validated against
//! its JSON Schema.

use std::hint::black_box;

use apache_avro::types::Value;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use summit_schema::{CompiledSchema, SchemaDefinition, encode_avro, encode_json, wire};

const SCHEMA: &str = r#"{"type":"record","name":"Order","fields":[
  {"name":"order_id","type":"string"},{"name":"customer_id","type":"string"},
  {"name":"amount_cents","type":"long"},{"name":"quantity","type":"int"},
  {"name":"currency","type":{"type":"enum","name":"Currency","symbols":["EUR","USD","GBP"]}},
  {"name":"created_at","type":"long"},{"name":"note","type":["null","string"],"default":null},
  {"name":"tags","type":{"type":"array","items":"string"}},
  {"name":"address","type":{"type":"record","name":"Address","fields":[
    {"name":"street","type":"string"},{"name":"city","type":"string"},{"name":"zip","type":"string"}]}}]}"#;

fn record() -> Value {
    Value::Record(vec![
        ("order_id".into(), Value::String("ord-0000000000000000000000000000001".into())),
        ("customer_id".into(), Value::String("cus-0000000000000000000000000000042".into())),
        ("amount_cents".into(), Value::Long(129_900)),
        ("quantity".into(), Value::Int(3)),
        ("currency".into(), Value::Enum(0, "EUR".into())),
        ("created_at".into(), Value::Long(1_790_000_000_000)),
        ("note".into(), Value::Union(1, Box::new(Value::String("leave the parcel with the neighbour at number twelve if nobody answers the door, thanks; fragile items inside, handle with care please".into())))),
        ("tags".into(), Value::Array((0..8).map(|i| Value::String(format!("tag-number-{i:02}-long-enough"))).collect())),
        ("address".into(), Value::Record(vec![
            ("street".into(), Value::String("1234 Long Example Boulevard, Building C, Floor 7, Apartment 42".into())),
            ("city".into(), Value::String("Springfield-upon-the-River".into())),
            ("zip".into(), Value::String("12345-6789".into())),
        ])),
    ])
}

fn decode(c: &mut Criterion) {
    let schema = apache_avro::Schema::parse_str(SCHEMA).expect("schema");
    let framed = encode_avro(1, &schema, record()).expect("encode");
    let compiled = CompiledSchema::compile(&SchemaDefinition::avro(SCHEMA)).expect("compile");
    println!("framed Avro record: {} bytes", framed.len());
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(1));
    group.bench_function("avro_500B_cached_schema", |b| {
        b.iter(|| {
            let (id, body) = wire::unframe(black_box(&framed)).expect("frame");
            compiled.decode_body(id, body).expect("decode")
        })
    });

    let json_schema = r#"{"type":"object","properties":{"order_id":{"type":"string"},"amount_cents":{"type":"integer","minimum":0},"tags":{"type":"array","items":{"type":"string"}}},"required":["order_id","amount_cents"]}"#;
    let json_compiled =
        CompiledSchema::compile(&SchemaDefinition::json(json_schema)).expect("compile");
    let document = serde_json::json!({"order_id": "ord-1", "amount_cents": 129900, "tags": ["a", "b", "c"], "note": "x".repeat(380)});
    let json_framed = encode_json(2, &document).expect("encode");
    println!("framed JSON document: {} bytes", json_framed.len());
    group.bench_function("json_500B_validated", |b| {
        b.iter(|| {
            let (id, body) = wire::unframe(black_box(&json_framed)).expect("frame");
            json_compiled.decode_body(id, body).expect("decode")
        })
    });
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);

//! `GET /schemas/ids/{id}` requests per second against the real server on loopback (real
//! Postgres), with N concurrent reqwest clients. Prints one line per concurrency level.
//! Run: `cargo bench -p schema-registry-server --bench ids_load` (SUMMIT_BENCH_SECONDS, default 5).

use std::time::{Duration, Instant};

use schema_registry_server::RunningRegistry;
use summit_schema::{RegistryClient, SchemaDefinition};
use summit_test_support::Endpoints;
use summit_test_support::postgres::TestDatabase;

#[tokio::main]
async fn main() {
    let seconds: u64 = std::env::var("SUMMIT_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let database = TestDatabase::create(&Endpoints::from_env(), "registry_bench")
        .await
        .expect("postgres");
    let pool = schema_registry_server::connect(&database.url, 16)
        .await
        .expect("migrate");
    let registry = RunningRegistry::start("127.0.0.1:0", pool)
        .await
        .expect("start");
    let client = RegistryClient::new(&registry.url).expect("url");
    let id = client
        .register(
            "bench-value",
            &SchemaDefinition::avro(
                r#"{"type":"record","name":"R","fields":[{"name":"a","type":"string"}]}"#,
            ),
        )
        .await
        .expect("register");
    for concurrency in [1usize, 8, 32] {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let url = format!("{}/schemas/ids/{id}", registry.url);
        let workers: Vec<_> = (0..concurrency)
            .map(|_| {
                let url = url.clone();
                tokio::spawn(async move {
                    let http = reqwest::Client::new();
                    let mut done = 0u64;
                    while Instant::now() < deadline {
                        let response = http.get(&url).send().await.expect("request");
                        assert!(response.status().is_success());
                        let _ = response.bytes().await.expect("body");
                        done += 1;
                    }
                    done
                })
            })
            .collect();
        let mut total = 0;
        for worker in workers {
            total += worker.await.expect("worker");
        }
        println!(
            "GET /schemas/ids/{{id}}: {concurrency} concurrent clients, {total} requests in {seconds}s = {:.0} requests/s",
            total as f64 / seconds as f64
        );
    }
    drop(registry);
    let _ = database.drop_database().await;
}

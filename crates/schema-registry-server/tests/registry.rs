//! The registry over real HTTP on loopback with a real Postgres database per test, driven by two
//! independent clients: summit-schema's Rust client and Confluent's Python SchemaRegistryClient.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use schema_registry_server::RunningRegistry;
use serde_json::{Value, json};
use summit_schema::{
    CompatibilityLevel, Decoder, RegistryClient, SchemaDefinition, SchemaError, encode_avro,
    ensure_registry_compatible,
};
use summit_test_support::Endpoints;
use summit_test_support::postgres::TestDatabase;

const ORDER_V1: &str =
    r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"string"}]}"#;
const ORDER_V2: &str = r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"string"},{"name":"qty","type":"int","default":1}]}"#;
const ORDER_BREAKING: &str = r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"string"},{"name":"price","type":"double"}]}"#;

async fn start(prefix: &str) -> (TestDatabase, RunningRegistry) {
    let database = TestDatabase::create(&Endpoints::from_env(), prefix)
        .await
        .expect("postgres at SUMMIT_POSTGRES_URL");
    let pool = schema_registry_server::connect(&database.url, 8)
        .await
        .expect("migrations run");
    let registry = RunningRegistry::start("127.0.0.1:0", pool)
        .await
        .expect("registry starts");
    (database, registry)
}

/// Raw HTTP, to see status codes and error bodies exactly as a client would.
async fn call(method: reqwest::Method, url: String, body: Option<Value>) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .request(method, url)
        .header("Content-Type", "application/vnd.schemaregistry.v1+json");
    if let Some(body) = body {
        request = request.body(body.to_string());
    }
    let response = request.send().await.expect("registry answers");
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

fn error_code(answer: &(u16, Value)) -> (u16, i64) {
    (answer.0, answer.1["error_code"].as_i64().unwrap_or(-1))
}

#[tokio::test]
async fn api_status_codes_ids_and_soft_delete() {
    let (_database, registry) = start("registry_api").await;
    let base = &registry.url;
    use reqwest::Method;

    assert_eq!(
        call(Method::GET, format!("{base}/"), None).await,
        (200, json!({}))
    );
    let v1 = json!({"schema": ORDER_V1});
    let first = call(
        Method::POST,
        format!("{base}/subjects/orders/versions"),
        Some(v1.clone()),
    )
    .await;
    assert_eq!(first.0, 200, "{first:?}");
    let id = first.1["id"].as_i64().expect("id");
    // Identical re-registration (even reformatted) returns the same id; so does another subject.
    let spaced = json!({"schema": serde_json::to_string_pretty(&serde_json::from_str::<Value>(ORDER_V1).expect("json")).expect("json")});
    assert_eq!(
        call(
            Method::POST,
            format!("{base}/subjects/orders/versions"),
            Some(spaced)
        )
        .await
        .1["id"],
        id
    );
    assert_eq!(
        call(
            Method::POST,
            format!("{base}/subjects/copy/versions"),
            Some(v1.clone())
        )
        .await
        .1["id"],
        id
    );
    assert_eq!(
        call(
            Method::GET,
            format!("{base}/subjects/orders/versions"),
            None
        )
        .await
        .1,
        json!([1])
    );
    assert_eq!(
        call(
            Method::GET,
            format!("{base}/schemas/ids/{id}/versions"),
            None
        )
        .await
        .1,
        json!([{"subject": "copy", "version": 1}, {"subject": "orders", "version": 1}])
    );

    let breaking = json!({"schema": ORDER_BREAKING});
    let refused = call(
        Method::POST,
        format!("{base}/subjects/orders/versions"),
        Some(breaking.clone()),
    )
    .await;
    assert_eq!(error_code(&refused), (409, 40901));
    let message = refused.1["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("$.price") && message.contains("version 1"),
        "{message}"
    );
    let verbose = call(
        Method::POST,
        format!("{base}/compatibility/subjects/orders/versions/latest?verbose=true"),
        Some(breaking),
    )
    .await;
    assert_eq!(verbose.1["is_compatible"], false);
    assert!(
        verbose.1["messages"][0]
            .as_str()
            .unwrap_or_default()
            .contains("price"),
        "{verbose:?}"
    );
    let new_subject = call(
        Method::POST,
        format!("{base}/compatibility/subjects/nobody/versions/latest"),
        Some(v1.clone()),
    )
    .await;
    assert_eq!(new_subject.1["is_compatible"], true);

    let v2 = call(
        Method::POST,
        format!("{base}/subjects/orders/versions"),
        Some(json!({"schema": ORDER_V2})),
    )
    .await;
    let v2_id = v2.1["id"].as_i64().expect("v2 id");
    assert_ne!(v2_id, id);
    let latest = call(
        Method::GET,
        format!("{base}/subjects/orders/versions/latest"),
        None,
    )
    .await
    .1;
    assert_eq!(
        (latest["version"].clone(), latest["id"].clone()),
        (json!(2), json!(v2_id))
    );
    let looked_up = call(
        Method::POST,
        format!("{base}/subjects/orders"),
        Some(v1.clone()),
    )
    .await
    .1;
    assert_eq!(
        (looked_up["version"].clone(), looked_up["id"].clone()),
        (json!(1), json!(id))
    );

    // The documented error codes.
    let cases = [
        (
            Method::POST,
            "/subjects/orders/versions",
            Some(json!({"schema": "{\"type\":\"nope\"}"})),
            (422, 42201),
        ),
        (
            Method::POST,
            "/subjects/orders/versions",
            Some(json!({"schema": "{}", "schemaType": "PROTOBUF"})),
            (422, 42201),
        ),
        (
            Method::GET,
            "/subjects/missing/versions",
            None,
            (404, 40401),
        ),
        (
            Method::GET,
            "/subjects/orders/versions/7",
            None,
            (404, 40402),
        ),
        (
            Method::GET,
            "/subjects/orders/versions/zero",
            None,
            (422, 42202),
        ),
        (Method::GET, "/schemas/ids/424242", None, (404, 40403)),
        (
            Method::POST,
            "/subjects/orders",
            Some(json!({"schema": ORDER_BREAKING})),
            (404, 40403),
        ),
        (
            Method::PUT,
            "/config",
            Some(json!({"compatibility": "SIDEWAYS"})),
            (422, 42203),
        ),
        (Method::GET, "/config/orders", None, (404, 40408)),
    ];
    for (method, path, body, expected) in cases {
        let answer = call(method.clone(), format!("{base}{path}"), body).await;
        assert_eq!(error_code(&answer), expected, "{method} {path}: {answer:?}");
    }

    // Config: per subject and global.
    assert_eq!(
        call(Method::GET, format!("{base}/config"), None).await.1,
        json!({"compatibilityLevel": "BACKWARD"})
    );
    assert_eq!(
        call(
            Method::PUT,
            format!("{base}/config/orders"),
            Some(json!({"compatibility": "NONE"}))
        )
        .await
        .1,
        json!({"compatibility": "NONE"})
    );
    assert_eq!(
        call(Method::GET, format!("{base}/config/orders"), None)
            .await
            .1["compatibilityLevel"],
        "NONE"
    );
    // Under NONE the breaking schema registers as version 3.
    let third = call(
        Method::POST,
        format!("{base}/subjects/orders/versions"),
        Some(json!({"schema": ORDER_BREAKING})),
    )
    .await;
    assert_eq!(third.0, 200);
    assert_eq!(
        call(Method::DELETE, format!("{base}/config/orders"), None)
            .await
            .1["compatibilityLevel"],
        "NONE"
    );
    assert_eq!(
        call(
            Method::GET,
            format!("{base}/config/orders?defaultToGlobal=true"),
            None
        )
        .await
        .1["compatibilityLevel"],
        "BACKWARD"
    );

    // Soft delete family.
    assert_eq!(
        error_code(
            &call(
                Method::DELETE,
                format!("{base}/subjects/orders/versions/3?permanent=true"),
                None
            )
            .await
        ),
        (404, 40407)
    );
    assert_eq!(
        call(
            Method::DELETE,
            format!("{base}/subjects/orders/versions/3"),
            None
        )
        .await
        .1,
        json!(3)
    );
    assert_eq!(
        error_code(
            &call(
                Method::DELETE,
                format!("{base}/subjects/orders/versions/3"),
                None
            )
            .await
        ),
        (404, 40406)
    );
    assert_eq!(
        error_code(
            &call(
                Method::GET,
                format!("{base}/subjects/orders/versions/3"),
                None
            )
            .await
        ),
        (404, 40402)
    );
    assert_eq!(
        call(
            Method::GET,
            format!("{base}/subjects/orders/versions/3?deleted=true"),
            None
        )
        .await
        .0,
        200
    );
    assert_eq!(
        error_code(
            &call(
                Method::DELETE,
                format!("{base}/subjects/orders?permanent=true"),
                None
            )
            .await
        ),
        (404, 40405)
    );
    assert_eq!(
        call(Method::DELETE, format!("{base}/subjects/orders"), None)
            .await
            .1,
        json!([1, 2])
    );
    assert_eq!(
        error_code(&call(Method::DELETE, format!("{base}/subjects/orders"), None).await),
        (404, 40404)
    );
    assert_eq!(
        error_code(
            &call(
                Method::GET,
                format!("{base}/subjects/orders/versions"),
                None
            )
            .await
        ),
        (404, 40401)
    );
    assert_eq!(
        call(Method::GET, format!("{base}/subjects"), None).await.1,
        json!(["copy"])
    );
    // Ids stay resolvable after the subject is gone.
    assert_eq!(
        call(Method::GET, format!("{base}/schemas/ids/{v2_id}"), None)
            .await
            .0,
        200
    );
    assert_eq!(
        call(
            Method::DELETE,
            format!("{base}/subjects/orders?permanent=true"),
            None
        )
        .await
        .1,
        json!([1, 2, 3])
    );
    // A new registration after deletion gets the old id back: ids are global and stable.
    assert_eq!(
        call(
            Method::POST,
            format!("{base}/subjects/orders/versions"),
            Some(v1)
        )
        .await
        .1["id"],
        id
    );
}

#[tokio::test]
async fn rust_client_decoder_and_start_up_guard() {
    let (_database, registry) = start("registry_client").await;
    let client = Arc::new(RegistryClient::new(&registry.url).expect("url"));
    let id = client
        .register("orders-value", &SchemaDefinition::avro(ORDER_V1))
        .await
        .expect("register v1");
    assert_eq!(
        client
            .register("orders-value", &SchemaDefinition::avro(ORDER_V1))
            .await
            .expect("again"),
        id
    );
    let incompatible = client
        .register("orders-value", &SchemaDefinition::avro(ORDER_BREAKING))
        .await
        .expect_err("breaking change");
    assert!(
        matches!(incompatible, SchemaError::Incompatible { .. }),
        "{incompatible}"
    );
    assert!(
        client
            .check_compatibility("orders-value", None, &SchemaDefinition::avro(ORDER_V2))
            .await
            .expect("answer")
            .is_compatible
    );

    // Decoding: a framed value whose id the registry knows, then one it does not.
    let decoder = Decoder::new(client.clone());
    let schema = apache_avro::Schema::parse_str(ORDER_V1).expect("schema");
    let value = apache_avro::types::Value::Record(vec![(
        "id".into(),
        apache_avro::types::Value::String("o-1".into()),
    )]);
    let framed = encode_avro(id, &schema, value.clone()).expect("encode");
    let decoded = decoder.decode(&framed, None).await.expect("decode");
    assert_eq!(decoded.payload, summit_schema::DecodedPayload::Avro(value));
    let unknown = decoder
        .decode(&summit_schema::wire::frame(id + 1000, &framed[5..]), None)
        .await
        .expect_err("unknown id");
    assert!(
        matches!(unknown, SchemaError::UnknownSchemaId { .. }) && unknown.is_record_level(),
        "{unknown}"
    );
    // The GUID header form resolves through /schemas/guids/{guid}.
    let guid_text = reqwest::get(format!("{}/schemas/ids/{id}", registry.url))
        .await
        .expect("get")
        .json::<Value>()
        .await
        .expect("json")["guid"]
        .as_str()
        .expect("guid")
        .replace('-', "");
    let mut guid = [0u8; 16];
    hex_decode(&guid_text, &mut guid);
    let by_guid = decoder
        .decode(&framed[5..], Some(&summit_schema::wire::guid_header(guid)))
        .await
        .expect("guid decode");
    assert!(matches!(
        by_guid.payload,
        summit_schema::DecodedPayload::Avro(_)
    ));

    let missing = client.latest("nope").await.expect_err("unknown subject");
    assert!(
        matches!(missing, SchemaError::UnknownSubject { .. }),
        "{missing}"
    );
    let no_version = client
        .subject_version("orders-value", 9)
        .await
        .expect_err("unknown version");
    assert!(
        matches!(no_version, SchemaError::UnknownVersion { .. }),
        "{no_version}"
    );

    // Start-up guard: the built schema (v2) can follow v1; after v3 drops `id`, v2 cannot read it.
    let built = SchemaDefinition::avro(ORDER_V2);
    let (version, latest_id) = ensure_registry_compatible(
        &client,
        "orders-value",
        &built,
        CompatibilityLevel::Backward,
    )
    .await
    .expect("v2 reads v1");
    assert_eq!((version, latest_id), (1, id));
    client
        .set_compatibility_level(Some("orders-value"), CompatibilityLevel::None)
        .await
        .expect("config");
    let dropped_id = r#"{"type":"record","name":"Order","fields":[{"name":"qty","type":"int"}]}"#;
    let v2_id = client
        .register("orders-value", &SchemaDefinition::avro(dropped_id))
        .await
        .expect("register under NONE");
    let refused =
        ensure_registry_compatible(&client, "orders-value", &built, CompatibilityLevel::Full)
            .await
            .expect_err("guard refuses");
    let message = refused.to_string();
    assert!(refused.is_fatal());
    for needle in [
        "orders-value",
        "version 2",
        &format!("id {v2_id}"),
        "Order",
        "$.id",
    ] {
        assert!(
            message.contains(needle),
            "`{needle}` missing from: {message}"
        );
    }
}

fn hex_decode(text: &str, into: &mut [u8; 16]) {
    for (index, byte) in into.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[index * 2..index * 2 + 2], 16).expect("hex guid");
    }
}

#[tokio::test]
async fn confluent_python_client_agrees() {
    let python = std::env::var("SUMMIT_PYTHON").unwrap_or_else(|_| {
        panic!("SUMMIT_PYTHON is not set: point it at a Python with confluent-kafka from scripts/requirements-test.txt (scripts/dev test does)")
    });
    let (_database, registry) = start("registry_python").await;
    let client = RegistryClient::new(&registry.url).expect("url");
    let rust_schema =
        r#"{"type":"record","name":"FromRust","fields":[{"name":"n","type":"long"}]}"#;
    let rust_id = client
        .register("rust-value", &SchemaDefinition::avro(rust_schema))
        .await
        .expect("register");

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/confluent_client.py");
    let url = registry.url.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(&python)
            .arg(&script)
            .arg(&url)
            .arg("py")
            .arg(rust_id.to_string())
            .output()
    })
    .await
    .expect("join")
    .expect("run SUMMIT_PYTHON");
    assert!(
        output.status.success(),
        "confluent_client.py failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: Value = serde_json::from_slice(&output.stdout).expect("summary JSON");

    // What Python registered, Rust reads back by id and by subject/version; and the reverse.
    let v1_id = u32::try_from(summary["v1_id"].as_u64().expect("v1 id")).expect("u32 id");
    let fetched = client.schema_by_id(v1_id).await.expect("python's id");
    assert!(fetched.schema.contains("\"Order\""), "{}", fetched.schema);
    let v2 = client
        .subject_version("py-orders-value", 2)
        .await
        .expect("python's v2");
    assert_eq!(Some(u64::from(v2.id)), summary["v2_id"].as_u64());
    assert_eq!(
        client
            .compatibility_level(Some("py-orders-value"))
            .await
            .expect("level"),
        CompatibilityLevel::Full
    );
    assert_eq!(summary["rust_schema"].as_str(), Some(rust_schema));
}

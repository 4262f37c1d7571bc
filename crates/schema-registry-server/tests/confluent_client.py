"""Drives schema-registry-server with Confluent's own Python SchemaRegistryClient.

Usage: confluent_client.py <registry-url> <subject-prefix> <id-registered-by-rust>
Asserts as it goes; prints a JSON summary the Rust test cross-checks."""

import json
import sys

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

url, prefix, rust_id = sys.argv[1], sys.argv[2], int(sys.argv[3])
client = SchemaRegistryClient({"url": url})

V1 = json.dumps({"type": "record", "name": "Order", "fields": [{"name": "id", "type": "string"}]})
V2 = json.dumps({"type": "record", "name": "Order", "fields": [
    {"name": "id", "type": "string"}, {"name": "qty", "type": "int", "default": 1}]})
BREAKING = json.dumps({"type": "record", "name": "Order", "fields": [
    {"name": "id", "type": "string"}, {"name": "price", "type": "double"}]})
subject = f"{prefix}-orders-value"


def expect_error(code, http_status, call):
    try:
        call()
    except SchemaRegistryError as error:
        assert error.error_code == code, f"expected {code}, got {error.error_code}: {error.error_message}"
        assert error.http_status_code == http_status, f"expected HTTP {http_status}, got {error.http_status_code}"
        return
    raise AssertionError(f"expected error {code}")


v1_id = client.register_schema(subject, Schema(V1, "AVRO"))
# A fresh client, so the answer comes from the server and not from the first client's cache.
again = SchemaRegistryClient({"url": url}).register_schema(subject, Schema(V1, "AVRO"))
assert again == v1_id, (again, v1_id)
v2_id = client.register_schema(subject, Schema(V2, "AVRO"))
assert v2_id != v1_id

fetched = SchemaRegistryClient({"url": url}).get_schema(v1_id)
assert json.loads(fetched.schema_str) == json.loads(V1), fetched.schema_str
assert fetched.schema_type == "AVRO"
latest = client.get_latest_version(subject)
assert (latest.version, latest.schema_id) == (2, v2_id), (latest.version, latest.schema_id)
assert client.get_versions(subject) == [1, 2]
assert client.test_compatibility(subject, Schema(V2, "AVRO")) is True
assert client.test_compatibility(subject, Schema(BREAKING, "AVRO")) is False
expect_error(40901, 409, lambda: client.register_schema(subject, Schema(BREAKING, "AVRO")))

json_subject = f"{prefix}-events-value"
json_id = client.register_schema(json_subject, Schema(json.dumps({"type": "object"}), "JSON"))
assert SchemaRegistryClient({"url": url}).get_schema(json_id).schema_type == "JSON"

rust_schema = SchemaRegistryClient({"url": url}).get_schema(rust_id)

expect_error(42201, 422, lambda: client.register_schema(subject, Schema('{"type": "nope"}', "AVRO")))
expect_error(40401, 404, lambda: client.get_latest_version(f"{prefix}-missing"))
expect_error(40402, 404, lambda: client.get_version(subject, 99))
expect_error(40403, 404, lambda: SchemaRegistryClient({"url": url}).get_schema(987654))
expect_error(42203, 422, lambda: client.set_compatibility(subject, "SIDEWAYS"))

assert client.set_compatibility(subject, "FULL")["compatibility"] == "FULL"
assert client.get_compatibility(subject) == "FULL"
assert client.delete_subject(json_subject) == [1]
expect_error(40401, 404, lambda: client.get_latest_version(json_subject))

print(json.dumps({"v1_id": v1_id, "v2_id": v2_id, "json_id": json_id, "rust_schema": rust_schema.schema_str}))

"""Collects every (reader, writer) pair that the Apache Avro Python package's own compatibility
tests (avro/test/test_compatibility.py) put to its checker, with the checker's decision, and
prints them as JSON: [{"reader": ..., "writer": ..., "compatible": bool, "test": name}, ...].

The Rust test `avro_oracle.rs` compares summit-schema's decisions with these."""

import json
import sys
import unittest

import avro
from avro import compatibility
from avro.test import test_compatibility

real = compatibility.ReaderWriterCompatibilityChecker.get_compatibility
seen = {}
current = {"test": None}


def recording(self, reader, writer, *args, **kwargs):
    result = real(self, reader, writer, *args, **kwargs)
    # Only top-level calls from the tests: the checker recurses through the same method.
    if len(args) == 0 and not kwargs:
        key = (json.dumps(reader.to_json(), sort_keys=True), json.dumps(writer.to_json(), sort_keys=True))
        if key not in seen:
            seen[key] = {
                "reader": reader.to_json(),
                "writer": writer.to_json(),
                "compatible": result.compatibility is compatibility.SchemaCompatibilityType.compatible,
                "test": current["test"],
            }
    return result


compatibility.ReaderWriterCompatibilityChecker.get_compatibility = recording

suite = unittest.defaultTestLoader.loadTestsFromTestCase(test_compatibility.TestCompatibility)
failures = 0
for case in suite:
    current["test"] = case.id().rsplit(".", 1)[-1]
    result = unittest.TestResult()
    case.run(result)
    failures += len(result.failures) + len(result.errors)
if failures:
    sys.exit(f"the avro package's own compatibility tests failed {failures} times; oracle unusable")
json.dump({"avro_version": avro.__version__, "pairs": list(seen.values())}, sys.stdout)

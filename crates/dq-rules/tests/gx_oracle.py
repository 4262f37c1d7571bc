"""Runs a GX 1.x suite over an NDJSON file with Great Expectations itself (ephemeral context,
pandas) and prints, per expectation, what the Rust side reports: success, element_count,
unexpected_count and unexpected_index_list. Usage: gx_oracle.py SUITE.json RECORDS.ndjson"""

import json
import sys

import great_expectations as gx
import pandas as pd


def main() -> None:
    suite_path, records_path = sys.argv[1], sys.argv[2]
    with open(suite_path, encoding="utf-8") as f:
        suite_doc = json.load(f)
    with open(records_path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    frame = pd.DataFrame(rows)

    context = gx.get_context(mode="ephemeral")
    batch = (
        context.data_sources.add_pandas("oracle")
        .add_dataframe_asset("rows")
        .add_batch_definition_whole_dataframe("all")
        .get_batch(batch_parameters={"dataframe": frame})
    )
    results = []
    for position, spec in enumerate(suite_doc["expectations"]):
        cls = getattr(gx.expectations, "".join(p.capitalize() for p in spec["type"].split("_")))
        expectation = cls(**spec["kwargs"])
        result = batch.validate(expectation, result_format="COMPLETE")
        r = result.result
        results.append(
            {
                "position": position,
                "type": spec["type"],
                "column": spec["kwargs"]["column"],
                "success": bool(result.success),
                "element_count": int(r["element_count"]),
                "unexpected_count": int(r["unexpected_count"]),
                "unexpected_index_list": sorted(int(i) for i in r.get("unexpected_index_list") or []),
            }
        )
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()

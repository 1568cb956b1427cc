"""The heart-disease batch pipeline end to end with kfp.local (what ``clinops score`` runs): a small CSV
with one bad row in, the Parquet, summary and report in the output folder, the bad row refused and
counted, and the run recorded."""

import csv
import json

import pyarrow.parquet as pq
import pytest
from support import sample_bundles

from components.heart_disease.schema import serving_schema
from pipelines import batch_scoring

pytestmark = [pytest.mark.pipeline, pytest.mark.slow, pytest.mark.timeout(600)]


def test_the_batch_pipeline_scores_a_csv_with_kfp_local(clinops_home, tmp_path):
    schema = serving_schema()
    bundle = sample_bundles.write_heart_disease(tmp_path / "bundle", schema)
    rows = sample_bundles.heart_rows(schema, 30, seed=4)
    with open(tmp_path / "patients.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(schema.feature_order)
        for i, row in enumerate(rows):
            cells = ["" if v != v else f"{v:g}" for v in row]
            if i == 4:
                cells[schema.feature_order.index("age")] = "250"  # outside [1, 120] years
            writer.writerow(cells)
    record = batch_scoring.run("heart-disease", str(tmp_path / "patients.csv"), str(tmp_path / "out"),
                               bundle_uri=str(bundle), batch_size=8)
    assert record["status"] == "succeeded" and record["rows"] == 30 and record["refused"] == 1
    assert record["refused_by_reason"] == {"out_of_range": 1}  # the spread over actors: tests/integration/batch
    results = pq.read_table(tmp_path / "out" / "results.parquet").to_pylist()
    assert [r["row"] for r in results if r["status"] == "refused"] == [5]
    assert results[4]["error"] == "age: 250 is outside [1, 120] years"
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["scored"] == 29
    assert (tmp_path / "out" / "report.html").is_file() and (tmp_path / "out" / "report.md").is_file()
    last = json.loads((clinops_home / "pipelines" / "heart-disease" / batch_scoring.LAST_RUN).read_text())
    assert last["status"] == "succeeded" and last["scored"] == 29

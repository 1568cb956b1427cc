"""The ``temp_leftovers`` fixture (tests/conftest.py): what the code under test and its child processes
leave in their private temporary folder is named; what others put in the shared one is not."""

import os
import shutil
import subprocess
import sys
import tempfile
from multiprocessing.connection import Listener
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit


def test_names_what_this_process_and_its_children_leave(temp_leftovers):
    handle, _ = tempfile.mkstemp(prefix="kept-")
    os.close(handle)
    with tempfile.TemporaryDirectory(prefix="removed-"):
        pass
    subprocess.run([sys.executable, "-c", "import tempfile; tempfile.mkdtemp(prefix='child-')"], check=True)
    (Path(tempfile.gettempdir()) / "torchinductor_clinops").mkdir()  # torch's compile cache: not counted
    assert [name.split("-")[0] for name in temp_leftovers()] == ["child", "kept"]


def test_what_others_put_in_the_shared_folder_is_not_counted(temp_leftovers):
    shared = os.environ["RAY_TMPDIR"]
    assert tempfile.gettempdir() == os.environ["TMPDIR"] != shared
    neighbour = tempfile.mkdtemp(prefix="clinops-neighbour-", dir=shared)
    try:
        assert temp_leftovers() == []
    finally:
        os.rmdir(neighbour)


def test_a_socket_fits_in_a_pipeline_tasks_scratch_folder(temp_leftovers):
    # pipelines/local.py gives a run's tasks a scratch TMPDIR inside this one; multiprocessing makes its
    # listener sockets in a pymp- folder under that; AF_UNIX paths may not exceed 107 bytes
    scratch = tempfile.mkdtemp(prefix="clinops-pneumonia-run-")
    try:
        pymp = tempfile.mkdtemp(prefix="pymp-", dir=scratch)
        Listener(os.path.join(pymp, "listener-abcdefgh"), family="AF_UNIX").close()
    finally:
        shutil.rmtree(scratch)
    assert temp_leftovers() == []

"""The serving process's start-up heap is kept out of the garbage collector's full collections. (KServe's
internals: test_kserve_patches.py; a bundle that cannot be served: test_bundle_source.py.)"""

import gc

import pytest

from inference.server import freeze_startup_heap

pytestmark = pytest.mark.unit


def test_freeze_startup_heap_moves_live_objects_to_the_permanent_generation():
    before = gc.get_freeze_count()
    kept = [object() for _ in range(1000)]  # noqa: F841 - alive across the call
    try:
        frozen = freeze_startup_heap()
        # what stays alive stays frozen (another thread of the process may free a few frozen objects meanwhile)
        assert frozen >= before + 1000 and gc.get_freeze_count() >= before + 1000
        # later allocations are still collected normally
        garbage = []
        garbage.append(garbage)  # a cycle only the collector can free
        del garbage
        assert gc.collect() >= 1
    finally:
        gc.unfreeze()


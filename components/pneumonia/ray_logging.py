"""Set-up hook for the worker processes of the local Ray that :func:`components.pneumonia.trainer.local_ray`
starts without its dashboard.

Ray Train's placement-group cleaner asks the state API every second whether the training controller is still
alive. The state API is served by the dashboard, which a laptop run does not start (it would take memory and a
share of two cores for nothing), so each question failed and the cleaner logged "Failed to query Ray Train
Controller actor state ... Continuing to monitor." every second of training into the run's output. The local Ray
is shut down with the run, placement groups included, so nothing is left for the cleaner to clean: its warnings
are kept to errors here. A RayJob's cluster has its dashboard and is left as it is.
"""

from __future__ import annotations

import logging

CLEANER_LOGGER = "ray.train.v2._internal.execution.controller.placement_group_cleaner"
HOOK = f"{__name__}.without_dashboard"


def without_dashboard() -> None:
    logging.getLogger(CLEANER_LOGGER).setLevel(logging.ERROR)

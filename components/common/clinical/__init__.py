"""Clinical evaluation of a binary risk model: confidence intervals (:mod:`.bootstrap`), subgroups
(:mod:`.subgroups`), calibration and recalibration (:mod:`.calibration`), operating points and decision
curves (:mod:`.thresholds`), and the paired comparison with the current champion (:mod:`.paired`).

Every function takes labels ``y`` (0/1) and the positive class's probability ``p`` and is pure.
"""

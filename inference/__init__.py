"""clinops serving: only what runs in the serving images (KServe transformer and predictor runtimes).

Bundles are read through the ``bundle`` contract; nothing here imports ``components`` or ``pipelines``.
"""

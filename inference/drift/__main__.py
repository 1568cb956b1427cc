"""``python -m inference.drift --workload heart-disease [--bundle DIR | --bundle_store STORE] [--port 8083]``."""

from __future__ import annotations

import logging
import os
import sys

from bundle import BundleError, locate, open_bundle, storage
from inference.drift import settings as drift_settings

log = logging.getLogger("inference.drift")


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = drift_settings.parse(argv)
    os.umask(0o077)  # everything the sidecar writes is for the service user alone
    try:
        folder = locate(settings.bundle, settings.workload, settings.bundle_store, storage.S3Config.from_environ(os.environ))
        bundle = open_bundle(folder, settings.workload)
    except (BundleError, FileNotFoundError, OSError) as err:
        print(f"drift sidecar: cannot open the {settings.workload} bundle: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    import uvicorn

    from inference.drift import detectors, shed
    from inference.drift.app import build_app
    from inference.drift.service import DriftService

    service = DriftService(settings, bundle, detectors.build(bundle, settings.input_name))
    log.info("drift sidecar for %s (%s, model %s v%s) on %s:%d, log %s", settings.workload, service.detector.kind,
             bundle.manifest.model_name, bundle.manifest.model_version, settings.host, settings.port,
             settings.log_path)
    gate = shed.EventGate(settings.max_in_flight_events, service.metrics.rejected.labels(settings.workload, shed.REASON))
    uvicorn.run(build_app(service), host=settings.host, port=settings.port, log_level="warning", access_log=False,
                http=shed.protocol(gate))


if __name__ == "__main__":
    main()

"""``python -m inference.transformer --workload heart-disease --bundle DIR --predictor_host 127.0.0.1:8082
--predictor_protocol v2 --http_port 8080 --grpc_port 8081``."""

from __future__ import annotations

from bundle import workloads
from inference import server
from inference.transformer.settings import TransformerSettings


def parse_settings(argv: list[str] | None = None):
    parser = server.build_parser(__doc__)
    parser.set_defaults(model_name=None, predictor_protocol="v2")
    server.add_common_flags(parser)
    parser.add_argument("--workload", choices=workloads.NAMES,
                        help=TransformerSettings.model_fields["workload"].description)
    parser.add_argument("--bundle", "--model_dir", dest="bundle",  # --model_dir: the name KServe's runtimes use
                        help=TransformerSettings.model_fields["bundle"].description)
    for name in ("predictor_timeout_s", "retry_backoff_ms", "batch_max_wait_ms", "threshold", "risk_medium", "risk_high"):
        parser.add_argument(f"--{name}", type=float, help=TransformerSettings.model_fields[name].description)
    for name in ("predictor_retries", "predictor_max_in_flight", "batch_max_size", "max_rows_per_request", "max_body_bytes", "max_image_bytes", "max_pixels", "max_request_pixels", "decode_threads",
                 "max_in_flight_rows", "max_in_flight_pixels"):
        parser.add_argument(f"--{name}", type=int, help=TransformerSettings.model_fields[name].description)
    parser.add_argument("--predictor_dispatch", choices=["eager", "full"],
                        help=TransformerSettings.model_fields["predictor_dispatch"].description)
    parser.add_argument("--predictor_input", choices=["uint8", "fp32"],
                        help=TransformerSettings.model_fields["predictor_input"].description)
    parser.add_argument("--drift_url", help=TransformerSettings.model_fields["drift_url"].description)
    parser.add_argument("--drift_log_mode", choices=["all", "request", "response"],
                        help=TransformerSettings.model_fields["drift_log_mode"].description)
    parser.add_argument("--drift_queue_size", type=int, help=TransformerSettings.model_fields["drift_queue_size"].description)
    args = parser.parse_args(argv)
    if not args.predictor_host:
        parser.error("--predictor_host host:port is required")
    if args.predictor_protocol not in ("v2", "grpc-v2"):
        parser.error("--predictor_protocol must be v2 or grpc-v2")
    settings = TransformerSettings(**server.flag_overrides(args, TransformerSettings.model_fields))
    return settings, args


def main(argv: list[str] | None = None) -> None:
    from kserve.predictor_config import PredictorConfig

    from inference.transformer.model import Transformer

    settings, args = parse_settings(argv)
    model = Transformer(settings, args.predictor_host, args.predictor_protocol)
    server.load_or_exit(model)
    config = PredictorConfig(predictor_host=args.predictor_host, predictor_protocol=args.predictor_protocol,
                             predictor_request_timeout_seconds=int(max(1, settings.predictor_timeout_s)),
                             predictor_request_retries=settings.predictor_retries)
    server.serve([model], args, settings.max_body_bytes, predictor_config=config)


if __name__ == "__main__":
    main()

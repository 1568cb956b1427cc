"""``python -m inference.sklearn_predictor --bundle DIR --http_port 8082 --grpc_port 8084``."""

from __future__ import annotations

from inference import server
from inference.sklearn_predictor.settings import SklearnPredictorSettings


def parse_settings(argv: list[str] | None = None) -> tuple[SklearnPredictorSettings, object]:
    parser = server.build_parser(__doc__)
    parser.set_defaults(model_name=None, http_port=8082, grpc_port=8084)
    server.add_common_flags(parser)
    parser.add_argument("--bundle", "--model_dir", dest="bundle",  # --model_dir: the name KServe's runtimes use
                        help=SklearnPredictorSettings.model_fields["bundle"].description)
    parser.add_argument("--workload")
    parser.add_argument("--max_batch_size", type=int)
    parser.add_argument("--max_wait_ms", type=float)
    parser.add_argument("--inline_predict", type=lambda v: v.lower() in ("1", "true", "yes"),
                        help=SklearnPredictorSettings.model_fields["inline_predict"].description)
    parser.add_argument("--max_in_flight_rows", type=int,
                        help=SklearnPredictorSettings.model_fields["max_in_flight_rows"].description)
    parser.add_argument("--max_rows_per_request", type=int)
    parser.add_argument("--max_body_bytes", type=int)
    args = parser.parse_args(argv)
    settings = SklearnPredictorSettings(**server.flag_overrides(args, SklearnPredictorSettings.model_fields))
    return settings, args


def main(argv: list[str] | None = None) -> None:
    from inference.sklearn_predictor.model import SklearnPredictor

    settings, args = parse_settings(argv)
    server.load_and_serve(SklearnPredictor(settings), args, settings.max_body_bytes)


if __name__ == "__main__":
    main()

"""``python -m inference.torch_predictor --bundle DIR --http_port 8092 --grpc_port 8094``."""

from __future__ import annotations

import argparse

from inference import server
from inference.torch_predictor.settings import TorchPredictorSettings


def parse_settings(argv: list[str] | None = None) -> tuple[TorchPredictorSettings, object]:
    parser = server.build_parser(__doc__)
    parser.set_defaults(model_name=None, http_port=8092, grpc_port=8094)
    server.add_common_flags(parser)
    parser.add_argument("--bundle", "--model_dir", dest="bundle",  # --model_dir: the name KServe's runtimes use
                        help=TorchPredictorSettings.model_fields["bundle"].description)
    parser.add_argument("--workload")
    parser.add_argument("--max_batch_size", type=int)
    parser.add_argument("--max_wait_ms", type=float)
    parser.add_argument("--max_in_flight_pixels", type=int,
                        help=TorchPredictorSettings.model_fields["max_in_flight_pixels"].description)
    parser.add_argument("--max_rows_per_request", type=int)
    parser.add_argument("--max_body_bytes", type=int)
    parser.add_argument("--device")
    parser.add_argument("--precision", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--precision_tolerance", type=float)
    parser.add_argument("--num_threads", type=int)
    parser.add_argument("--forward_workers", type=int,
                        help=TorchPredictorSettings.model_fields["forward_workers"].description)
    parser.add_argument("--freeze", action=argparse.BooleanOptionalAction,
                        help=TorchPredictorSettings.model_fields["freeze"].description)
    args = parser.parse_args(argv)
    settings = TorchPredictorSettings(**server.flag_overrides(args, TorchPredictorSettings.model_fields))
    return settings, args


def main(argv: list[str] | None = None) -> None:
    from inference.torch_predictor.model import TorchPredictor

    settings, args = parse_settings(argv)
    server.load_and_serve(TorchPredictor(settings), args, settings.max_body_bytes)


if __name__ == "__main__":
    main()

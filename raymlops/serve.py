"""`python -m raymlops.serve +experiment=NAME [overrides]`: the experiment's registered model (registry.model_name)
behind Ray Serve: @champion, and @challenger beside it when serve.challenger_traffic > 0.

POST /predict with an image body (or MLflow's JSON form) -> label, probabilities and the version that answered.
"""

from __future__ import annotations

from raymlops.config import compose
from raymlops.core.console import setup_logging
from raymlops.core.errors import cli


@cli
def main(argv: list[str]) -> dict[str, float]:
    setup_logging()
    config = compose(argv)  # Hydra compose + validation, before Ray starts
    from raymlops.serving.app import serve_until_stopped  # only now: Ray and Serve take seconds to import

    metrics = serve_until_stopped(config)
    shown = {k: round(v, 1) for k, v in sorted(metrics.items()) if k.startswith(("requests.", "latency_p50"))}
    print(f"Served: {shown or 'no requests'}", flush=True)
    return metrics


if __name__ == "__main__":
    main()

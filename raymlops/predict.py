"""`python -m raymlops.predict model_uri=models:/NAME@alias data.root=FOLDER output=FILE`: batch inference over an
image folder (class subfolders give accuracy) or any raymlops data set (`data=cifar10 ...`), with Ray Data."""

from __future__ import annotations

from typing import Any

from raymlops.config import compose
from raymlops.core.console import setup_logging
from raymlops.core.errors import UserError, cli

SHORT_KEYS = ("model_uri=", "output=", "split=")  # predict.model_uri=..., as the command line writes them


@cli
def main(argv: list[str]) -> dict[str, Any]:
    setup_logging()
    argv = [f"predict.{a}" if a.startswith(SHORT_KEYS) else a for a in argv]
    if not any(a.startswith(("data=", "+experiment=")) for a in argv):
        argv = ["data=imagefolder", *argv]  # data.root=FOLDER means an image folder unless told otherwise
    config = compose(argv)
    if not config.predict.model_uri:
        raise UserError("No model to predict with: pass model_uri=models:/NAME@champion (or runs:/RUN_ID/model).")
    from raymlops import tracking  # only now: a config error costs ~1 s, not the seconds Ray and torch take
    from raymlops.serving import batch_inference, report

    tracking.check_reachable(config.mlflow.tracking_uri)
    classes = batch_inference.model_classes(config.mlflow.tracking_uri, config.predict.model_uri)
    rows, labelled, source = batch_inference.items(config)
    frame, wall_s = batch_inference.run_batch(config, rows)
    batch_inference.write_output(frame, config.predict.output, labelled)
    result = batch_inference.confusion(frame, classes) if labelled else None
    run_id, metrics = report.log_predict_run(config, source, frame, wall_s, result)
    acc = f", accuracy={result['test_acc']:.4f}" if result else ""
    print(
        f"{len(frame)} images from {source} in {wall_s:.1f} s ({metrics['images_per_s']:.0f} images/s){acc}; "
        f"{int(metrics['unreadable'])} unreadable; wrote {config.predict.output}; MLflow run {run_id}",
        flush=True,
    )
    return {**metrics, "run_id": run_id, "output": config.predict.output}


if __name__ == "__main__":
    main()

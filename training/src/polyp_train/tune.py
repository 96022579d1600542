"""Hyper-parameter sweep with Ray Tune; the best trial is registered like a normal run.

Each trial runs a TorchTrainer (Ray Train V2 under Tune) and logs to its own MLflow run,
nested under the sweep's parent run.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace

from polyp_core.job import RunSummary

from .pipeline import RunOptions, _log_split, _params, finish_run, prepare_dataset
from .tracking import connect, git_commit, tracking_uri
from .trainer import TrainConfig, TrainOutcome, ensure_ray, make_trainer, outcome_of

SEARCH_SPACE = {"lr": [3e-4, 1e-3, 3e-3], "batch_size": [4, 8]}


def _trial(params: dict) -> None:
    import ray.tune
    from mlflow.tracking import MlflowClient

    base: TrainConfig = params["base"]
    config = replace(
        base, lr=params["lr"], batch_size=params["batch_size"], name=f"{base.name}-{ray.tune.get_context().get_trial_id()}"
    )
    client = MlflowClient(params["tracking_uri"])
    run = client.create_run(
        params["experiment_id"],
        tags={
            "mlflow.parentRunId": params["parent_run_id"],
            "mlflow.runName": config.name,
            "mlflow.source.git.commit": params["git_commit"],
            "dataset_fingerprint": params["fingerprint"],
        },
    )
    for key, value in _params(config, params["prepared"]).items():
        client.log_param(run.info.run_id, key, value)
    _log_split(client, run.info.run_id, params["prepared"])
    outcome = outcome_of(make_trainer(config, {"tracking_uri": params["tracking_uri"], "run_id": run.info.run_id}).fit())
    client.set_terminated(run.info.run_id, "FINISHED")
    ray.tune.report(
        {
            "val_dice": outcome.best_metrics["val_dice"],
            "run_id": run.info.run_id,
            "checkpoint_path": outcome.best_checkpoint.path,
            "history": json.dumps(outcome.history),
            "best_metrics": json.dumps(outcome.best_metrics),
            "lr": config.lr,
            "batch_size": config.batch_size,
        }
    )


def tune(config: TrainConfig, options: RunOptions, trials: int) -> RunSummary:
    import ray
    import ray.tune
    from ray.train import Checkpoint

    from . import storage

    prepared = prepare_dataset(config)
    fingerprint = prepared.fingerprint
    client, experiment_id = connect(options.experiment)
    # A local Ray gets one extra logical CPU for the trial driver, which only waits on its workers.
    ensure_ray(options.ray_address, num_cpus=max(os.cpu_count() or 1, config.workers) + 1)
    if config.cpus_per_worker is None:
        config = replace(config, cpus_per_worker=max(1, (int(ray.cluster_resources().get("CPU", 1)) - 1) // config.workers))
    parent = client.create_run(experiment_id, tags={"mlflow.runName": f"{config.name}-sweep", "dataset_fingerprint": fingerprint})
    client.log_param(parent.info.run_id, "search_space", json.dumps(SEARCH_SPACE))
    param_space = {
        "lr": ray.tune.choice(SEARCH_SPACE["lr"]),
        "batch_size": ray.tune.choice(SEARCH_SPACE["batch_size"]),
        "base": config,
        "tracking_uri": tracking_uri(),
        "experiment_id": experiment_id,
        "parent_run_id": parent.info.run_id,
        "git_commit": git_commit(),
        "fingerprint": fingerprint,
        "prepared": prepared,
    }
    tuner = ray.tune.Tuner(
        ray.tune.with_resources(_trial, {"CPU": 1}),
        param_space=param_space,
        tune_config=ray.tune.TuneConfig(num_samples=trials, max_concurrent_trials=1, metric="val_dice", mode="max"),
    )
    try:
        results = tuner.fit()
        best = results.get_best_result()
        if best.error:
            raise best.error
        if best.metrics is None:
            raise RuntimeError(f"the sweep's best trial reported no metrics (results in {best.path})")
        metrics = best.metrics
        client.log_metric(parent.info.run_id, "best_val_dice", metrics["val_dice"])
        client.set_tag(parent.info.run_id, "best_run_id", metrics["run_id"])
        filesystem, _ = storage.pyarrow_filesystem(config.storage_path)
        outcome = TrainOutcome(
            metrics=json.loads(metrics["best_metrics"]),
            best_metrics=json.loads(metrics["best_metrics"]),
            best_checkpoint=Checkpoint(metrics["checkpoint_path"], filesystem=filesystem),
            history=json.loads(metrics["history"]),
        )
        summary = finish_run(client, metrics["run_id"], outcome, config, options, prepared)
    except BaseException:
        client.set_terminated(parent.info.run_id, "FAILED")
        raise
    client.set_terminated(parent.info.run_id, "FINISHED")
    return summary

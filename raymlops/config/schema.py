"""The typed config schema: one dataclass per section, each field typed, defaulted and documented once.

Registered in Hydra's ConfigStore as `raymlops_schema` (conf/config.yaml lists it first in its defaults),
so composing an experiment type-checks every key against these classes: a key they lack, or a value of
the wrong type, fails at compose, before Ray starts. The YAML files under conf/ set only what differs
from these defaults. A field's metadata carries its help text (the config reference in
docs/config-reference.md is generated from it: `python -m raymlops.config.reference`) and its range
rules (`rules.check_ranges`). Choices are StrEnums: they compare equal to their names and print as them.

This module imports nothing from raymlops.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class DatasetName(StrEnum):
    cifar10 = "cifar10"
    cifar100 = "cifar100"
    fashion_mnist = "fashion_mnist"
    imagefolder = "imagefolder"
    synthetic = "synthetic"


class ModelName(StrEnum):
    fast_cnn = "fast_cnn"
    mobilenet_v3_small = "mobilenet_v3_small"
    mobilenet_v3_large = "mobilenet_v3_large"
    resnet18 = "resnet18"


class OptimizerName(StrEnum):
    sgd = "sgd"
    adamw = "adamw"


class Device(StrEnum):
    """train.device: where a single-process path computes (a 1-worker trial, `raymlops.train` with one worker,
    evaluate, predict). auto: CUDA when this run may use a GPU, then Apple's MPS, then the CPU."""

    auto = "auto"
    cuda = "cuda"
    mps = "mps"
    cpu = "cpu"


class LrSchedule(StrEnum):
    none = "none"
    cosine = "cosine"
    onecycle = "onecycle"


class SchedulerName(StrEnum):
    fifo = "fifo"
    asha = "asha"
    hyperband = "hyperband"
    pbt = "pbt"
    pb2 = "pb2"


class AshaMode(StrEnum):
    auto = "auto"  # promote 1-worker trials, stop DDP trials
    promote = "promote"
    stop = "stop"


class SearchAlgName(StrEnum):
    random = "random"
    optuna = "optuna"


class OptunaSampler(StrEnum):
    tpe = "tpe"
    nsga2 = "nsga2"


class Mode(StrEnum):
    max = "max"
    min = "min"


class Promote(StrEnum):
    if_better = "if_better"
    always = "always"
    never = "never"


class ProgressStyle(StrEnum):
    auto = "auto"
    live = "live"
    plain = "plain"


class Split(StrEnum):
    train = "train"
    test = "test"


AUTO_TRUE_FALSE = ("auto", True, False)  # scaling.use_gpu, train.amp, predict.use_gpu


def opt(default: Any, help: str, **rules: Any) -> Any:
    """A field with its default, its one line of help, and range rules (positive, non_negative, fraction, port, choices)."""
    if dataclasses.is_dataclass(default) and isinstance(default, type):
        return field(default_factory=default, metadata={"help": help, **rules})
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, **rules})
    return field(default=default, metadata={"help": help, **rules})


@dataclass
class DataConfig:
    """data: which images, where they are, how they are split and augmented (conf/data/NAME.yaml)."""

    name: DatasetName = opt(DatasetName.synthetic, "the data set (swap the group: data=cifar10)")
    root: str | None = opt(None, "where the data set is (or is downloaded to); imagefolder: the folder holding train/ and test/")
    download: bool = opt(False, "download the official archive when root lacks it (cifar10, cifar100, fashion_mnist)")
    val_fraction: float = opt(0.1, "fraction of the training set held out for validation", fraction="[0, 1)")
    augment: bool = opt(False, "random crop (pad 4) + horizontal flip while training")
    num_train: int = opt(4000, "synthetic only: training images (validation is carved from these)", positive=True)
    num_test: int = opt(1000, "synthetic only: test images", positive=True)
    image_size: int = opt(32, "images are resized to image_size x image_size when they differ", positive=True)
    num_classes: int | None = opt(10, "classes (null: read from an image folder's tree)", positive=True)
    cache_dir: str | None = opt(".raymlops/cache", "decoded uint8 tensors of image folders, reused across runs (null: no cache)")
    subset: int | None = opt(None, "use only the first N training images (quick experiments)", positive=True)


@dataclass
class ModelConfig:
    """model: the torchvision network (conf/model/NAME.yaml)."""

    name: ModelName = opt(ModelName.fast_cnn, "the network (swap the group: model=resnet18)")
    width: int | None = opt(None, "fast_cnn: channels of the first block (doubled twice); null elsewhere", positive=True)
    dropout: float = opt(0.0, "dropout before the classifier", fraction="[0, 1)")


@dataclass
class OptimConfig:
    """optim: the optimizer (conf/optim/NAME.yaml)."""

    name: OptimizerName = opt(OptimizerName.sgd, "sgd or adamw (swap the group: optim=adamw)")
    lr: float = opt(0.05, "peak learning rate", positive=True)
    momentum: float = opt(0.9, "SGD momentum (adamw: beta1)", fraction="[0, 1)")
    weight_decay: float = opt(0.0005, "L2 weight decay", non_negative=True)
    nesterov: bool = opt(True, "SGD: Nesterov momentum")


@dataclass
class TrainConfig:
    """train: the epoch loop of a job or trial."""

    epochs: int = opt(10, "max epochs per trial; ASHA/Hyperband max_t", positive=True)
    batch_size: int = opt(256, "global batch size, split evenly across DDP workers", positive=True)
    label_smoothing: float = opt(0.0, "cross-entropy label smoothing", fraction="[0, 1)")
    seed: int = opt(0, "seeds data split, init, augmentation and sampling")
    lr_schedule: LrSchedule = opt(LrSchedule.cosine, "none, cosine or onecycle (per step)")
    warmup_epochs: int = opt(0, "linear warm-up epochs before the schedule", non_negative=True)
    max_failures: int = opt(1, "worker-group restarts from the last checkpoint before a trial fails", non_negative=True)
    log_every_n_steps: int = opt(50, "train_loss_step granularity in MLflow; 0 turns step logging off", non_negative=True)
    channels_last: bool = opt(False, "NHWC memory format (faster on GPU for conv nets)")
    amp: Any = opt("auto", "mixed precision: auto (bf16 on CUDA), true or false", choices=AUTO_TRUE_FALSE)
    eval_batch_size: int = opt(1024, "per-worker batch size for validation and test", positive=True)
    device: Device = opt(
        Device.auto,
        "single-process paths (1 worker, evaluate): auto (CUDA, then Apple MPS, then CPU), cuda, mps or cpu; "
        "DDP workers take Ray Train's device (mps is refused for DDP: use cpu, gloo)",
    )


@dataclass
class ScalingConfig:
    """scaling: the workers of one job or trial, and how trials share the cluster."""

    num_workers: int = opt(1, "DDP workers per training job / trial", positive=True)
    use_gpu: Any = opt("auto", "auto: use GPUs when the cluster has them; true; false", choices=AUTO_TRUE_FALSE)
    cpus_per_worker: float = opt(1.0, "logical CPUs reserved per worker (may be fractional)", positive=True)
    gpus_per_worker: float = opt(1.0, "GPUs per worker when use_gpu (fractional packs trials on one GPU)", positive=True)
    accelerator_resource: str | None = opt(None, "a custom Ray resource each worker requests, e.g. accel (autoscaling demo)")
    autoscale: Any = opt(
        "auto",
        "auto: count the node types in ray.autoscaling_config; true: also trust an autoscaler this process cannot see "
        "(KubeRay); false: only the nodes up now",
        choices=AUTO_TRUE_FALSE,
    )
    in_process_single_worker: bool = opt(True, "1-worker trials run in the Tune actor, no extra worker group")
    warm_workers: bool = opt(
        True,
        "DDP trials of a search run on warm Ray Train worker groups (lanes) that outlive a trial; false: a TorchTrainer "
        "per trial (Ray's documented Tune -> TorchTrainer pattern)",
    )
    lane_idle_s: float = opt(10.0, "a warm lane with no trial waiting for this long ends (frees its CPUs/GPUs)", positive=True)


@dataclass
class CheckpointConfig:
    """checkpoint: what a trial or job keeps on disk."""

    num_to_keep: int = opt(2, "checkpoints kept per trial / job", positive=True)
    dir: str | None = opt(None, "where in-process trials stage checkpoints (null: a temp dir)")


@dataclass
class TuneConfig:
    """tune: the search's budget, goal and resume."""

    num_samples: int = opt(8, "trials to sample", positive=True)
    max_concurrent_trials: int | None = opt(None, "null: derived from cluster resources / per-trial needs", positive=True)
    metric: str = opt("val_acc", "reported metric the scheduler, searcher and registry use")
    mode: Mode = opt(Mode.max, "max or min")
    resume: Any = opt(False, "true: resume the latest interrupted search of this name; or a search folder name to resume")
    reuse_actors: bool = opt(True, "reuse Tune actors between 1-worker trials (no re-import of torch)")
    top_k: int = opt(5, "rows in the final table and top-k artifact", positive=True)
    objectives: dict[str, str] = opt(
        {},
        "multi-objective search, metric -> max|min, e.g. {val_acc: max, latency_ms: min}; tune.metric is the primary "
        "(ASHA stops on it); latency_ms and params_m are measured per trial",
    )
    latency_runs: int = opt(
        30, "latency_ms: median of this many warm batch-1 forward passes (after 5 warm-up ones)", positive=True
    )


@dataclass
class SchedulerConfig:
    """scheduler: the trial scheduler (conf/scheduler/NAME.yaml); every key exists for every scheduler."""

    name: SchedulerName = opt(SchedulerName.asha, "fifo, asha, hyperband, pbt or pb2 (swap the group: scheduler=hyperband)")
    grace_period: int = opt(1, "ASHA: epochs every trial gets before it can be stopped", positive=True)
    reduction_factor: int = opt(3, "ASHA/Hyperband: keep 1/reduction_factor of trials at each rung", positive=True)
    mode: AshaMode = opt(
        AshaMode.auto,
        "ASHA only. promote: a paused trial resumes from its checkpoint if later trials push it into its rung's top; "
        "stop: Ray Tune's ASHAScheduler; auto: promote 1-worker trials, stop DDP trials",
    )
    perturbation_interval: int = opt(1, "PBT/PB2: epochs between exploit/explore decisions", positive=True)
    quantile_fraction: float = opt(0.25, "PBT/PB2: share of the population at the bottom (copies) and at the top (is copied)")
    resample_probability: float = opt(0.25, "PBT: chance to resample a value from search_space instead of scaling it")
    synch: bool = opt(True, "PBT/PB2: the population perturbs at the same epoch (a copied checkpoint is never behind)")


@dataclass
class SearchAlgConfig:
    """search_alg: how trials' hyperparameters are chosen (conf/search_alg/NAME.yaml)."""

    name: SearchAlgName = opt(SearchAlgName.random, "random or optuna (swap the group: search_alg=optuna)")
    n_startup_trials: int = opt(5, "optuna: random trials before TPE takes over", positive=True)
    sampler: OptunaSampler = opt(OptunaSampler.tpe, "optuna: tpe or nsga2 (both take tune.objectives)")
    warm_start: Any = opt(
        None, "optuna only: seed the sampler with earlier searches of this experiment: latest, a parent run id, or a list of them"
    )


@dataclass
class MlflowConfig:
    """mlflow: where runs go and how outages are survived (conf/mlflow/local.yaml or server.yaml)."""

    tracking_uri: str = opt("${oc.env:MLFLOW_TRACKING_URI,sqlite:///.raymlops/mlflow.db}", "where runs go")
    artifact_location: str | None = opt(".raymlops/mlartifacts", "for local stores only; a server decides its own")
    experiment_name: str = opt("raymlops-${name}", "the MLflow experiment")
    spool_dir: str = opt(".raymlops/spool", "points that could not reach the tracker wait here for replay")
    retry_seconds: float = opt(60.0, "give up on the tracker after this long and spool instead", positive=True)
    system_metrics: bool = opt(True, "MLflow's system metrics (CPU, memory, GPU) per trial / job, from rank 0's node")
    system_metrics_interval_s: float = opt(10.0, "seconds between system-metrics samples", positive=True)


@dataclass
class SelectConfig:
    """registry.select: which trial is evaluated and registered (unset parts follow tune.metric / tune.mode)."""

    metric: str | None = opt(None, "the metric to rank trials by (null: tune.metric)")
    mode: Mode | None = opt(None, "max or min (null: the metric's objective mode, else tune.mode)")
    constraints: dict[str, Any] = opt({}, "metric -> {le|lt|ge|gt: bound} every registered trial must meet")


@dataclass
class RegistryConfig:
    """registry: what a search registers and when the champion alias moves."""

    model_name: str = opt("raymlops-default", "MLflow registered model name")
    register: bool = opt(True, "register the best model and set the candidate alias")
    promote: Promote = opt(Promote.if_better, "if_better, always or never: when the champion alias moves")
    min_improvement: float = opt(0.0, "test_acc points (0..1) the candidate must beat the champion by", non_negative=True)
    select: SelectConfig | None = opt(
        None,
        "the trial to register: null = the best tune.metric; or {metric: val_acc, constraints: {latency_ms: {le: 5.0}}} "
        "(le, lt, ge, gt), e.g. on a Pareto front",
    )


@dataclass
class EvaluateConfig:
    """evaluate: the test-split evaluation after a search, and `raymlops.evaluate`'s model."""

    enabled: bool = opt(True, "evaluate the best trial on the test split after a search")
    model_uri: str | None = opt(None, "raymlops.evaluate: models:/NAME@alias or runs:/ID/model")


@dataclass
class RayConfig:
    """ray: which Ray cluster a command joins or starts."""

    address: str | None = opt(None, "null: RAY_ADDRESS or a new local cluster")
    num_cpus: int | None = opt(None, "local cluster only: logical CPUs (null: all cores)", positive=True)
    dashboard_host: str = opt("127.0.0.1", "local cluster only: the Ray Dashboard's bind address")
    include_dashboard: bool = opt(True, "local cluster only: start the Ray Dashboard")
    autoscaling_config: str = opt("~/ray_bootstrap_config.yaml", "the autoscaler's cluster YAML (`ray up` puts it on the head)")


@dataclass
class ConsoleConfig:
    """console: what the terminal shows."""

    verbose: bool = opt(False, "true (or -v / --verbose): everything Ray and Tune print, nothing filtered")
    progress: ProgressStyle = opt(
        ProgressStyle.auto, "auto: a live table on a terminal, one plain line per event otherwise; live; plain"
    )
    wait_notice_s: float = opt(
        60.0,
        "trials that wait this long for a worker group (another job holds the cluster, a node is gone) get a line "
        "saying so, with what is free and what other jobs hold",
        positive=True,
    )


@dataclass
class ServeConfig:
    """serve: `python -m raymlops.serve +experiment=NAME`, Ray Serve over registry.model_name's aliases."""

    host: str = opt("127.0.0.1", "HTTP bind address of Ray Serve's proxy (0.0.0.0 exposes it)")
    port: int = opt(8000, "HTTP port: POST /predict, GET /versions", port=True)
    champion_alias: str = opt("champion", "the alias that takes the traffic")
    challenger_alias: str = opt("challenger", "served beside the champion when challenger_traffic > 0")
    challenger_traffic: float = opt(
        0.0, "fraction of requests sent to the challenger (sticky per X-Request-Key header)", fraction="[0, 1]"
    )
    min_replicas: int = opt(1, "replicas per served alias at least; Serve autoscales between min and max", positive=True)
    max_replicas: int = opt(2, "replicas per served alias at most", positive=True)
    target_ongoing_requests: int = opt(4, "autoscaling target: in-flight requests per replica", positive=True)
    replica_cpus: float = opt(0.5, "logical CPUs reserved per model replica", positive=True)
    poll_interval_s: float = opt(
        10.0, "seconds between registry checks; a moved alias swaps the replica's model in place", positive=True
    )
    log_interval_s: float = opt(10.0, "seconds between per-version stats written to the serve run in MLflow", positive=True)
    drift_window: int = opt(
        500, "last predictions per version compared with its test-set class mix (drift, mean confidence)", positive=True
    )
    duration_s: float | None = opt(None, "stop after this many seconds (null: serve until Ctrl-C)", positive=True)


@dataclass
class PredictConfig:
    """predict: `python -m raymlops.predict model_uri=... data.root=FOLDER output=FILE`, batch inference on Ray Data."""

    model_uri: str | None = opt(None, "models:/NAME@alias, models:/NAME/VERSION or runs:/RUN_ID/model")
    output: str = opt("predictions.csv", ".csv or .parquet: path, label, probability (+ true_label with class subfolders)")
    split: Split = opt(Split.test, "a data set with train/ and test/ (or any raymlops data set): predict this split")
    batch_size: int = opt(256, "images per map_batches call", positive=True)
    num_actors: int | None = opt(
        None, "predictor actors in the pool; null: one per cpus_per_actor of the cluster's CPUs", positive=True
    )
    cpus_per_actor: float = opt(1.0, "logical CPUs per predictor actor (its torch threads)", positive=True)
    use_gpu: Any = opt("auto", "auto: one GPU per actor when the cluster has GPUs; true; false", choices=AUTO_TRUE_FALSE)


@dataclass
class Config:
    """The whole config of one command: every section above, composed by Hydra from conf/."""

    name: str = opt("default", "experiment name: Tune run name and MLflow experiment suffix")
    storage_path: str = opt(
        "${oc.env:RAYMLOPS_STORAGE_PATH,.raymlops/ray_results}",
        "Ray Train/Tune results and checkpoints: a local path, NFS or s3://; every node must reach it on a multi-node cluster",
    )
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    scaling: ScalingConfig = field(default_factory=ScalingConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    search_alg: SearchAlgConfig = field(default_factory=SearchAlgConfig)
    search_space: dict[str, Any] = opt(
        {}, "dotted config key -> {type: uniform|loguniform|quniform|randint|choice, ...}: what each trial samples"
    )
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    console: ConsoleConfig = field(default_factory=ConsoleConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    predict: PredictConfig = field(default_factory=PredictConfig)
    overrides: list[str] = opt([], "the command-line overrides this config was composed with (set by compose)")


SCHEMA_NAME = "raymlops_schema"  # conf/config.yaml's first default


def register_schema() -> None:
    """Put Config in Hydra's ConfigStore under SCHEMA_NAME (idempotent)."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name=SCHEMA_NAME, node=Config)

"""Multi-worker data-parallel training: one process per worker, the cluster described by TF_CONFIG.

Every worker runs the same `tfstack train --strategy multi-worker` command.
`tf.distribute.MultiWorkerMirroredStrategy` keeps one copy of the variables per worker and all-reduces
the gradients. With CPU-only workers its AUTO communication is RING all-reduce over the gRPC
servers named in TF_CONFIG. The data stays in memory on every worker: each worker reads every
N-th element of the same seeded shuffle (auto-shard policy DATA, since there are no files to
split), so `batch_size` is the global batch.

Keras 3 (3.15, TensorFlow backend) says it supports the strategy in `fit`, but two code paths
fail once a cluster has two workers (keras-team/keras#20329, #20585; both in
keras/src/backend/tensorflow/trainer.py):

* `fit` on a model *constructed* under the strategy's scope first runs a symbolic build that
  passes the whole first batch, a nested (features, labels) structure, to `strategy.reduce`,
  which takes a single tensor: "Attempt to convert a value ({'pixels': PerReplica...})".
* `reduce_per_replica` averages every step's logs with `strategy.reduce("MEAN", v, axis=0)`,
  which fails for the scalar loss and metrics.

Hence the shape of `fit` below. The layers, and with them every variable, are created inside the
scope, but the `keras.Model` object that trains them is constructed outside it. Keras then
defers its build to tracing (the path it keeps for models fit outside their scope), and `fit`
runs inside the scope, so it still distributes. The train and test steps return their logs as
shape-[1] tensors, so the axis-0 mean becomes the mean over workers, the same value on every
worker. That matters because EarlyStopping must take the same decision on all of them.

Fault tolerance uses `keras.callbacks.BackupAndRestore`. The chief saves into `<run_dir>/backup`
at every epoch end. The other workers must save too (tf.distribute's rule: every worker runs the
same saving code), but into private temporary directories, which they seed from the chief's
backup before `fit`. So every worker restores the same epoch, and a check at the first epoch
fails loudly, instead of hanging, if they do not agree.
"""

from __future__ import annotations

import dataclasses
import functools
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from tfstack.training._config import TrainConfig
from tfstack.training._datasets import Dataset, Split, tensor_inputs
from tfstack.training._errors import ConfigError, TrainingError

# The chief's BackupAndRestore directory inside the run directory.
BACKUP_DIRNAME = "backup"


@dataclasses.dataclass(frozen=True, kw_only=True)
class WorkerRole:
    """This process's place in the cluster. Outside a cluster it is worker 0 of 1, the chief."""

    index: int
    count: int
    is_chief: bool


@dataclasses.dataclass(frozen=True, kw_only=True)
class Fitted:
    """What a multi-worker `fit` leaves behind on one worker."""

    model: Any  # a plain keras.Model (no distributed variables) holding the trained weights
    history: dict[str, list[float]]
    initial_epoch: int  # epochs restored from the backup before this run's first epoch


def multi_worker_strategy(tf):
    """A MultiWorkerMirroredStrategy for the cluster in TF_CONFIG (one local worker without it).

    Raises:
        ConfigError: TF_CONFIG is not valid JSON or does not describe this task in its cluster.
    """
    try:
        return tf.distribute.MultiWorkerMirroredStrategy()
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise ConfigError(
            "Cannot start a multi-worker strategy: TF_CONFIG must be JSON like "
            '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": i}}. '
            f"Error: {exc}"
        ) from exc


def worker_role(strategy) -> WorkerRole:
    """Index (chief first, then the workers in order), cluster size and chief-ness of this process."""
    resolver = strategy.cluster_resolver
    jobs = resolver.cluster_spec().as_dict() if resolver is not None else {}
    chiefs = len(jobs.get("chief", []))
    count = chiefs + len(jobs.get("worker", []))
    if count == 0:
        return WorkerRole(index=0, count=1, is_chief=True)
    task_id = int(resolver.task_id or 0)
    index = task_id if resolver.task_type == "chief" else chiefs + task_id
    return WorkerRole(index=index, count=count, is_chief=bool(strategy.extended.should_checkpoint))


def fit(
    strategy,
    role: WorkerRole,
    *,
    dataset: Dataset,
    config: TrainConfig,
    run_dir: Path,
    build: Callable[[], Any],
    compile_model: Callable[[Any], None],
    callbacks: list[Any],
    log: Callable[[str], None],
) -> Fitted:
    """Train `build()`'s model on every worker of the cluster and return this worker's result.

    Args:
        build: builds the uncompiled model; called twice, under the strategy's scope for training
            and outside it for the plain copy that is evaluated and published.
        compile_model: compiles a model (optimizer, loss, metrics).
        callbacks: the run's own callbacks (early stopping, progress); the cluster's backup,
            its starting-epoch check and TensorBoard are added here.
        log: writes one progress line (a no-op when quiet).

    Raises:
        ConfigError: the global batch is smaller than the number of workers.
        TrainingError: the workers resumed from different epochs.
    """
    import keras
    import tensorflow as tf

    if config.batch_size < strategy.num_replicas_in_sync:
        raise ConfigError(
            f"batch_size is the global batch, split over {strategy.num_replicas_in_sync} workers; it must be at "
            f"least that. Received: batch_size={config.batch_size}"
        )
    with strategy.scope():
        layers = build()
    # Constructed outside the scope on purpose: see the module docstring. Keras reduces the step
    # logs along axis 0 only when the cluster really has several workers.
    trainer = _trainer_class() if role.count > 1 else keras.Model
    model = trainer(inputs=layers.input, outputs=layers.output, name=layers.name)
    chief_backup = run_dir / BACKUP_DIRNAME
    private = None if role.is_chief else Path(tempfile.mkdtemp(prefix=f"tfstack-worker-{role.index}-"))
    try:
        if private is None:
            backup_dir, tensorboard_dir = chief_backup, run_dir / "logs"
        else:
            backup_dir, tensorboard_dir = private / BACKUP_DIRNAME, private / "logs"
            if chief_backup.is_dir():
                shutil.copytree(chief_backup, backup_dir)
        starting_epoch = _same_starting_epoch_class()(strategy, config.epochs, chief_backup, log)
        with strategy.scope():
            compile_model(model)
            # Built here, in cross-replica context, so the slots are mirrored variables and
            # BackupAndRestore can restore them before the first step.
            model.optimizer.build(model.trainable_variables)
            history = model.fit(
                _tf_dataset(dataset.train, batch_size=config.batch_size, seed=config.seed, shuffle=True),
                validation_data=_tf_dataset(dataset.validation, batch_size=config.batch_size, seed=config.seed),
                epochs=config.epochs,
                shuffle=False,  # the tf.data pipeline shuffles, with the same seed on every worker
                verbose=0,
                callbacks=[
                    # double_checkpoint: a worker killed while writing leaves the previous backup usable.
                    keras.callbacks.BackupAndRestore(str(backup_dir), double_checkpoint=True),
                    starting_epoch,
                    keras.callbacks.TensorBoard(log_dir=str(tensorboard_dir), profile_batch=0),
                    *callbacks,
                ],
            )
    finally:
        if private is not None:
            shutil.rmtree(private, ignore_errors=True)

    # The published model must not hold distributed variables: saving a SavedModel from them would
    # need every worker to take part. A fresh, identical model outside the scope takes the weights.
    plain = build()
    plain.set_weights(layers.get_weights())
    initial = starting_epoch.first_epoch if starting_epoch.first_epoch is not None else config.epochs
    return Fitted(
        model=plain,
        history={k: [float(v) for v in values] for k, values in history.history.items()},
        initial_epoch=initial,
    )


def _tf_dataset(split: Split, *, batch_size: int, seed: int, shuffle: bool = False):
    import tensorflow as tf

    data = tf.data.Dataset.from_tensor_slices((tensor_inputs(split.inputs), np.asarray(split.labels)))
    if shuffle:
        # The same seed on every worker: all see the same order and each keeps every N-th element.
        data = data.shuffle(len(split), seed=seed, reshuffle_each_iteration=True)
    options = tf.data.Options()
    # In-memory arrays have no files to split between workers (AUTO would fall back with a warning).
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    options.deterministic = True
    return data.batch(batch_size).with_options(options)


@functools.cache
def _trainer_class():
    import keras
    import tensorflow as tf

    class MultiWorkerTrainer(keras.Model):
        """A functional model whose step logs survive Keras's multi-worker reduction (axis=0)."""

        def train_step(self, data):
            return {name: tf.reshape(value, [1]) for name, value in super().train_step(data).items()}

        def test_step(self, data):
            return {name: tf.reshape(value, [1]) for name, value in super().test_step(data).items()}

    return MultiWorkerTrainer


@functools.cache
def _same_starting_epoch_class():
    import keras
    import tensorflow as tf

    class SameStartingEpoch(keras.callbacks.Callback):
        """Records the first epoch this run trains and checks that every worker starts there.

        A worker that cannot see the chief's backup (a run directory that is not on shared
        storage) would start at epoch 0 while the others resume, and the cluster would wait
        forever on collectives that never match. Two all-reduces at the first epoch turn that
        into an error on every worker.
        """

        def __init__(self, strategy, epochs: int, chief_backup: Path, log: Callable[[str], None]) -> None:
            super().__init__()
            self._strategy = strategy
            self._epochs = epochs
            self._chief_backup = chief_backup
            self._log = log
            self.first_epoch: int | None = None

        def on_epoch_begin(self, epoch, logs=None):
            if self.first_epoch is not None:
                return
            self.first_epoch = epoch
            mine = tf.constant(float(epoch))
            mean = self._strategy.reduce("MEAN", mine, axis=None)
            spread = float(self._strategy.reduce("SUM", tf.square(mine - mean), axis=None))
            if spread > 0:
                raise TrainingError(
                    f"The workers resumed from different epochs (this one from epoch {epoch}, the mean is "
                    f"{float(mean):g}): every worker must see the chief's backup in {str(self._chief_backup)!r}. "
                    "Put --run-dir on storage that all workers share."
                )
            if epoch > 0:
                self._log(
                    f"Resumed from the backup in {self._chief_backup}: {epoch} of {self._epochs} epochs were "
                    f"done; training epochs {epoch + 1}-{self._epochs}."
                )

    return SameStartingEpoch

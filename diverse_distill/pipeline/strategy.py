"""The `tf.distribute` strategy of a job (`--strategy`), and the runtime set-up before it."""

import tensorflow as tf

STRATEGIES = ("default", "mirrored", "tpu", "multi_worker")


def configure_runtime(num_cpu_devices=0, deterministic=True):
    """Logical CPU devices and deterministic ops; call before TensorFlow places any op.

    Args:
        num_cpu_devices: int. Split the CPU into this many logical devices
            (to run `MirroredStrategy` on one CPU, as the tests do); 0 leaves
            the devices as they are. Defaults to `0`.
        deterministic: bool. `tf.config.experimental.enable_op_determinism()`.
            Defaults to `True`.
    """
    if num_cpu_devices and num_cpu_devices > 1:
        cpus = tf.config.list_physical_devices("CPU")
        try:
            tf.config.set_logical_device_configuration(
                cpus[0], [tf.config.LogicalDeviceConfiguration()] * num_cpu_devices
            )
        except RuntimeError:  # already initialised (e.g. by a test's conftest)
            have = len(tf.config.list_logical_devices("CPU"))
            if have < num_cpu_devices:
                raise ValueError(
                    f"--num_cpu_devices={num_cpu_devices}, but TensorFlow already initialised "
                    f"{have} CPU device(s); set it before anything else runs."
                ) from None
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def make_strategy(name, num_cpu_devices=0):
    """Builds the strategy `name` (one of `STRATEGIES`).

    - `default`: the default (single-device) strategy.
    - `mirrored`: `MirroredStrategy` over the local GPUs, or over the first
      `num_cpu_devices` logical CPUs when there is no GPU.
    - `tpu`: `TPUStrategy` on the TPU found by `TPUClusterResolver` (a Cloud
      TPU VM, or `TPU_NAME`).
    - `multi_worker`: `MultiWorkerMirroredStrategy`; the cluster comes from
      the `TF_CONFIG` environment variable of each worker.

    Args:
        name: str.
        num_cpu_devices: int. Defaults to `0`.

    Returns:
        A `tf.distribute.Strategy`.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        if tf.config.list_logical_devices("GPU"):
            return tf.distribute.MirroredStrategy()
        cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(cpus[: max(1, num_cpu_devices)])
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, RuntimeError, tf.errors.OpError) as error:
            raise ValueError(
                f"--strategy=tpu found no TPU ({' '.join(str(error).split())}); run on a TPU VM "
                "or set TPU_NAME, or use --strategy=default."
            ) from None
        return tf.distribute.TPUStrategy(resolver)
    if name == "multi_worker":
        patch_keras_multi_worker()
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"--strategy must be one of {list(STRATEGIES)}, got {name!r}.")


def _multi_worker(strategy):
    return (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
            and strategy.extended._in_multi_worker_mode())


def patch_keras_multi_worker():
    """Lets Keras 3 `fit` and `evaluate` run under `MultiWorkerMirroredStrategy` at all.

    Two Keras 3 bugs (3.15 here; keras-team/keras#20585 and #20329 are open) make
    every `fit` fail with more than one worker:

    - the model is built from the first batch, `strategy.reduce("MEAN", batch)`,
      which cannot reduce a nested batch (a dict of features, an `(x, y)` tuple):
      "Attempt to convert a value ({...PerReplica...}) with an unsupported type
      (<class 'dict'>) to a Tensor". The build reads only shapes and dtypes, so
      here it takes each value's local per-replica tensor (no collective op);
    - the step's logs (scalar metric results) are averaged with
      `strategy.reduce("MEAN", v, axis=0)`: "Invalid reduction dimension 0 for input
      with 0 dimensions". Here `axis=None`: the mean over all replicas of all
      workers, what `MirroredStrategy` gets from `tf.reduce_mean` over its replicas.

    Any other strategy (and `predict`'s concatenation) keeps Keras' own code.
    Idempotent.
    """
    from keras.src.backend.tensorflow import trainer as tf_trainer

    cls = tf_trainer.TensorFlowTrainer
    if getattr(cls, "_diverse_distill_multi_worker", False):
        return
    keras_build = cls._maybe_symbolic_build
    keras_reduce = tf_trainer.reduce_per_replica

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if iterator is None or not _multi_worker(strategy):
            return keras_build(self, iterator=iterator, data_batch=data_batch)
        for _, _, batches in iterator:
            data_batch = tf.nest.map_structure(
                lambda v: (strategy.experimental_local_results(v)[0]
                           if isinstance(v, tf.distribute.DistributedValues) else v),
                next(batches))
            break
        return keras_build(self, data_batch=data_batch)

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and _multi_worker(strategy):
            return tf.nest.map_structure(
                lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return keras_reduce(values, strategy, reduction)

    cls._maybe_symbolic_build = _maybe_symbolic_build
    tf_trainer.reduce_per_replica = reduce_per_replica
    cls._diverse_distill_multi_worker = True


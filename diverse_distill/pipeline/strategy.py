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
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"--strategy must be one of {list(STRATEGIES)}, got {name!r}.")

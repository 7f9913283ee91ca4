"""Image classification (Fashion-MNIST, CIFAR-10/100): the `Task` of the image `--task`s."""

import os
import shutil
import time

import keras
import tensorflow as tf

from diverse_distill.data.images import (
    CIFAR_ARCHIVES,
    FASHION_MNIST_DIR,
    augmentation,
    load_cifar,
    load_fashion_mnist,
)
from diverse_distill.metrics import classification_metrics
from diverse_distill.models.cnn_classifier import HIDDEN_LAYER, block_name, cnn_classifier
from diverse_distill.pipeline.task import Task
from diverse_distill.pipeline.teacher_factory import (
    fit_with_schedule,
    load_cached_teacher,
    predict_split,
    write_cached_teacher,
)
from diverse_distill.pipeline.train_stream import train_stream
from diverse_distill.students.vit_student import ViTStudent
from diverse_distill.teachers.clip_teacher import CLIP_PIXEL_STATS, CLIPTeacher
from diverse_distill.teachers.keras_teacher import KerasTeacher
from diverse_distill.teachers.presets import check_preset_is_local
from diverse_distill.teachers.vit_teacher import ViTTeacher

TITLES = {"fashion_mnist": "Fashion-MNIST", "cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}
EVAL_BATCH = 512


def make_optimizer(name, learning_rate, steps, weight_decay=0.0, cosine_decay=False):
    """`adamw`, `sgd` (momentum 0.9) or `adagrad`; with `cosine_decay` the rate falls
    from `learning_rate` to 0 over `steps` (the paper's vision schedule)."""
    rate = (keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=steps)
            if cosine_decay else learning_rate)
    if name == "adamw":
        return keras.optimizers.AdamW(rate, weight_decay=weight_decay)
    if name == "sgd":
        return keras.optimizers.SGD(rate, momentum=0.9)
    return keras.optimizers.Adagrad(rate)


class ImageClassificationTask(Task):
    """Classify images with a ViT student and vision teachers; accuracy, higher is better.

    - Data: Fashion-MNIST from `--image_dir` (default: Debian's
      `dataset-fashion-mnist` folder), CIFAR-10/100 from the python archive in
      `--image_dir` or from TFDS when it is empty; a seeded validation part of
      the train set (`--validation_fraction`). `--image_augment` augments the
      train batches; `--image_size` resizes every batch (the paper's 224 for a
      ViT-B/16), and then no prefix cache is built (the teachers run whole).
    - Student: `ViTStudent` (`--patch_size`, `--student_layers`, ...).
    - Teachers (`--teachers`, trained on the task, cached like MovieLens's):
      `vit`, a `ViTTeacher` from scratch (`--vit_teacher_*`) or fine-tuned
      from `--vit_teacher_preset`, split at the class token of block
      `--vit_injection_layer` (default the middle one); `cnn`, a
      `KerasTeacher` around `cnn_classifier(--cnn_filters)`, split after its
      middle conv block (the question is that feature map, flattened), its
      answer the hidden layer; `clip`, a `CLIPTeacher` from `--clip_preset`,
      zero-shot over prompts of the class names (nothing trained; it
      normalises the [0, 1] images with CLIP's pixel statistics, a grey
      channel repeated to three; the images must have CLIP's size:
      `--image_size`).
    - Every model trains with the cross-entropy of its logits and
      `--optimizer` (optionally `--cosine_decay`); test metrics are accuracy
      (primary) and cross-entropy.

    Example:
    ```python
    from diverse_distill.data import write_synthetic_fashion_mnist
    from diverse_distill.pipeline.image_task import ImageClassificationTask
    from diverse_distill.pipeline.job_config import JobConfig

    folder = write_synthetic_fashion_mnist("/tmp/fmnist-task", num_train=40, num_test=10)
    task = ImageClassificationTask(JobConfig(
        task="fashion_mnist", image_dir=folder, teachers=("cnn",), patch_size=7,
        student_layers=2, student_heads=2, student_hidden_dim=8, student_mlp_dim=16))
    data = task.load_data()
    task.build_student(data, seed=0)({"images": data.test["images"][:2]}).shape  # (2, 10)
    ```
    """

    metric_names = ("accuracy", "cross_entropy")
    higher_is_better = {"accuracy": True, "cross_entropy": False}
    label_key = "label"
    example_noun = "images"

    def __init__(self, config, log=print):
        super().__init__(config, log=log)
        self.name = config.task
        self.title = TITLES[config.task]

    # --- Data ---------------------------------------------------------------

    def load_data(self):
        c = self.config
        common = dict(validation_fraction=c.validation_fraction, split_seed=c.split_seed,
                      max_train_examples=c.max_train_examples)
        if c.task == "fashion_mnist":
            data = load_fashion_mnist(c.image_dir or FASHION_MNIST_DIR, **common)
        elif c.image_dir:
            data = load_cifar(c.task, archive=os.path.join(c.image_dir, CIFAR_ARCHIVES[c.task]),
                              **common)
        else:
            data = load_cifar(c.task, use_tfds=True, tfds_data_dir=c.tfds_data_dir or None,
                              **common)
        self._stored_shape = data.image_shape  # what augmentation sees (before any resize)
        return data

    def image_shape(self, data):
        """The shape the models see: as stored, or `--image_size` square."""
        h, w, channels = data.image_shape
        size = self.config.image_size
        return (size, size, channels) if size else (h, w, channels)

    def _resize(self, dataset):
        size = self.config.image_size
        if not size:
            return dataset
        return dataset.map(lambda x, y: ({**x, "images": tf.image.resize(x["images"],
                                                                       (size, size))}, y))

    def map_train(self, dataset, seed):
        if self.config.image_augment:
            layer = augmentation(self.config.image_augment, self._stored_shape, seed=seed)
            dataset = dataset.map(lambda x, y: ({**x, "images": layer(x["images"],
                                                                      training=True)}, y))
        return self._resize(dataset)

    def map_eval(self, dataset):
        return self._resize(dataset)

    # --- Models ---------------------------------------------------------------

    def build_student(self, data, seed):
        keras.utils.set_random_seed(seed)
        c = self.config
        return ViTStudent(self.image_shape(data), patch_size=c.patch_size,
                          num_layers=c.student_layers, num_heads=c.student_heads,
                          hidden_dim=c.student_hidden_dim, mlp_dim=c.student_mlp_dim,
                          num_classes=data.num_classes, dropout_rate=c.student_dropout,
                          name="student")

    def teacher_store(self, data, extra_features):
        return ImageTeacherStore(self, data, extra_features)

    def loss(self):
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def optimizer(self, learning_rate, steps):
        c = self.config
        return make_optimizer(c.optimizer, learning_rate, steps, c.weight_decay, c.cosine_decay)

    def metrics(self, labels, outputs):
        return classification_metrics(labels, outputs)

    def caches_prefix(self, teacher):
        del teacher
        return not self.config.image_size  # resized batches are made per step, not stored

    def teacher_inputs(self, data, extra_features, split):
        return {"images": getattr(data, split)["images"], **extra_features[split]}


class ImageTeacherStore:
    """Trains each image teacher once and caches it under a key of its configuration.

    Args:
        task: the `ImageClassificationTask`.
        data: `ImageData`.
        extra_features: dict split -> dict of arrays (served beside the images).
    """

    def __init__(self, task, data, extra_features):
        self.task = task
        self.config = task.config
        self.data = data
        self.extra_features = extra_features

    def build(self, name):
        """`(teacher, trainable)`: the split teacher and the model training updates."""
        c, data = self.config, self.data
        shape = self.task.image_shape(data)
        injection = None if c.vit_injection_layer < 0 else c.vit_injection_layer
        if name == "clip":
            teacher = CLIPTeacher.from_preset(c.clip_preset, data.class_names,
                                              injection_layer=injection,
                                              suffix_mode=c.vit_suffix_mode, name=name,
                                              **CLIP_PIXEL_STATS)
            expected = tuple(teacher.backbone.vision_encoder.image_shape[:2])
            if expected != tuple(shape[:2]):
                raise ValueError(f"Teacher 'clip' ({c.clip_preset}) reads {expected[0]}x"
                                 f"{expected[1]} images; the task's are {shape[0]}x{shape[1]}: "
                                 f"pass --image_size={expected[0]}.")
            return teacher, None
        if name == "vit":
            if c.vit_teacher_preset:
                import keras_hub

                check_preset_is_local(c.vit_teacher_preset, False,
                                      "vit_large_patch16_224_imagenet")
                backbone = keras_hub.models.ViTBackbone.from_preset(c.vit_teacher_preset,
                                                                   image_shape=shape)
            else:
                import keras_hub

                backbone = keras_hub.models.ViTBackbone(
                    image_shape=shape, patch_size=c.patch_size,
                    num_layers=c.vit_teacher_layers, num_heads=c.vit_teacher_heads,
                    hidden_dim=c.vit_teacher_hidden_dim, mlp_dim=c.vit_teacher_mlp_dim,
                    dropout_rate=c.teacher_dropout)
            teacher = ViTTeacher(backbone, num_classes=data.num_classes,
                                 injection_layer=injection, suffix_mode=c.vit_suffix_mode,
                                 name=name)
            return teacher, teacher
        model = cnn_classifier(shape, data.num_classes, filters=c.cnn_filters,
                               dropout=c.teacher_dropout, name=f"{name}_model")
        middle = block_name((len(c.cnn_filters) - 1) // 2)
        return KerasTeacher(model, injection_layer=middle, answer_layer=HIDDEN_LAYER,
                            name=name), model

    def get(self, name):
        """Returns `(teacher, info)`: the split teacher and its metrics and provenance."""
        c, task = self.config, self.task
        key, spec = c.teacher_key(name)
        folder = os.path.join(c.cache_dir, key)
        keras.utils.set_random_seed(c.teacher_seed)
        teacher, trainable = self.build(name)
        train_ds = task.map_train(train_stream(self.data, c.batch_size, c.teacher_seed,
                                               self.extra_features["train"]), c.teacher_seed)
        val_ds, test_ds = (task.map_eval(self.data.as_dataset(
            split, EVAL_BATCH, extra_features=self.extra_features[split]))
            for split in ("validation", "test"))
        if trainable is None:  # zero-shot (CLIP): scored, nothing to train or cache
            info = {"name": name, "key": key, "spec": spec, "zero_shot": True,
                    "num_params": int(teacher.count_params()), "loaded_from_cache": False}
            for split, dataset in (("validation", val_ds), ("test", test_ds)):
                info[split] = task.metrics(task.labels(self.data, split),
                                           predict_split(teacher, dataset))
            return teacher, info
        info = load_cached_teacher(trainable, val_ds, folder)
        if info is not None:
            return teacher, info
        start = time.time()
        backup_dir = os.path.join(c.output_dir, "backup", f"teacher_{key}")
        lr = c.teacher_learning_rate if c.teacher_learning_rate > 0 else c.learning_rate
        trainable.compile(optimizer=task.optimizer(lr, c.teacher_steps), loss=task.loss())
        history, best = fit_with_schedule(
            trainable, train_ds, val_ds, c.teacher_steps, c.eval_every, trainable, c.verbose,
            checkpoint_every=c.checkpoint_every, backup_dir=backup_dir,
            phase=f"teacher_{name}", log=task.log,
        )
        info = {"name": name, "key": key, "spec": spec,
                "num_params": int(trainable.count_params()),
                "train_seconds": time.time() - start, "best_epoch": best.best_epoch,
                "history": {k: [float(v) for v in vals] for k, vals in history.items()}}
        for split, dataset in (("validation", val_ds), ("test", test_ds)):
            info[split] = task.metrics(task.labels(self.data, split),
                                       predict_split(teacher, dataset))
        write_cached_teacher(trainable, info, folder)
        shutil.rmtree(backup_dir, ignore_errors=True)
        return teacher, info


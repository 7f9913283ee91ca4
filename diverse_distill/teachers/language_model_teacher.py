"""What the KerasHub language-model teachers share: backbone, tokenizer, rating head."""

import keras

from diverse_distill.teachers.presets import check_preset_is_local, preset_has_tokenizer
from diverse_distill.teachers.split_teacher import SplitTeacher


class LanguageModelTeacher(SplitTeacher):
    """Base class of the teachers built on a KerasHub backbone.

    It holds a KerasHub backbone, its tokenizer (optional: only
    `preprocess` needs it) and a `Dense(1)` regression head (`rating_head`,
    in the backbone's dtype policy) that reads the teacher's answer, a
    `hidden_dim`-wide state. The question and the answer are both
    `hidden_dim` wide. Features are read under `f"{name}_token_ids"` and
    `f"{name}_padding_mask"`.

    Subclasses set the class attributes `backbone_class`,
    `tokenizer_class`, `tokenizer_files` (the files that mark a preset
    folder as having a tokenizer) and `preset_example` (a named preset,
    used in error messages), and implement the split (`prefix`, `suffix`,
    `native_question`) and `call`.

    Args:
        backbone: an instance of `backbone_class`.
        tokenizer: an instance of `tokenizer_class` or `None`.
        initial_prediction: float. Initial bias of the regression head,
            e.g. the mean training rating.
        name: str. The model name, also the prefix of the feature keys.
        **kwargs: passed to `keras.Model`.
    """

    backbone_class = None
    tokenizer_class = None
    tokenizer_files = ()
    preset_example = ""

    def __init__(self, backbone, tokenizer=None, initial_prediction=0.0, name=None, **kwargs):
        self.check_backbone(backbone)
        super().__init__(
            injection_dim=backbone.hidden_dim,
            answer_dim=backbone.hidden_dim,
            name=name,
            **kwargs,
        )
        # === Config ===
        self.initial_prediction = float(initial_prediction)
        self.token_ids_key = f"{name}_token_ids"
        self.padding_mask_key = f"{name}_padding_mask"
        # === Layers ===
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.head = keras.layers.Dense(
            1,
            bias_initializer=keras.initializers.Constant(self.initial_prediction),
            dtype=backbone.dtype_policy,
            name="rating_head",
        )
        self.head.build((None, backbone.hidden_dim))

    @classmethod
    def check_backbone(cls, backbone):
        """Raises a `ValueError` unless `backbone` is a `backbone_class`."""
        if not isinstance(backbone, cls.backbone_class):
            raise ValueError(
                f"`backbone` must be a `keras_hub.models.{cls.backbone_class.__name__}`. "
                f"Received: {type(backbone).__name__}"
            )

    # === Constructors ===

    @classmethod
    def from_preset(cls, preset, allow_download=False, load_tokenizer=None, **kwargs):
        """Builds the teacher from a KerasHub preset or a local folder.

        Args:
            preset: str. A local folder: a KerasHub preset (e.g. written by
                `backbone.save_to_preset(folder)`) or a Hugging Face folder
                (`config.json`, `model.safetensors`, tokenizer files), which
                KerasHub converts on load; or, with downloads allowed, a
                preset name such as `"flan_small_multi"` (T5) or
                `"bert_tiny_en_uncased"` (BERT).
            allow_download: bool, default `False`. Let KerasHub download a
                named preset; also enabled by the environment variable
                `DIVERSE_DISTILL_ALLOW_DOWNLOAD=1`. Otherwise a preset that
                is not a local folder raises a `ValueError` at once, never
                a download that hangs offline.
            load_tokenizer: bool or `None`, default `None`. Whether to load
                the tokenizer too; `None` loads it when the preset folder
                has tokenizer files (`tokenizer_files`).
            **kwargs: passed to the teacher's constructor.

        Example:
        ```python
        T5Teacher.tiny().backbone.save_to_preset("/tmp/tiny_t5")
        teacher = T5Teacher.from_preset("/tmp/tiny_t5", initial_prediction=3.5)
        BertTeacher.tiny().backbone.save_to_preset("/tmp/tiny_bert")
        teacher = BertTeacher.from_preset("/tmp/tiny_bert", suffix_mode="exact")
        ```
        """
        check_preset_is_local(preset, allow_download, cls.preset_example)
        backbone = cls.backbone_class.from_preset(preset)
        if load_tokenizer is None:
            load_tokenizer = preset_has_tokenizer(preset, cls.tokenizer_files)
        tokenizer = cls.tokenizer_class.from_preset(preset) if load_tokenizer else None
        return cls(backbone, tokenizer=tokenizer, **kwargs)

    # === The unsplit teacher ===

    def _dropout_active(self, training):
        """Dropout runs only when asked for and the teacher is not frozen."""
        return bool(training) and self.trainable

    # === Serialization ===

    def get_config(self):
        return {
            **super().get_config(),
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "tokenizer": keras.saving.serialize_keras_object(self.tokenizer),
            "initial_prediction": self.initial_prediction,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        if config.get("tokenizer") is not None:
            config["tokenizer"] = keras.saving.deserialize_keras_object(config["tokenizer"])
        return cls(**config)

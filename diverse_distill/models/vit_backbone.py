"""What a ViT teacher and a ViT student both read of a KerasHub class-token transformer:
its sub-layers' names, the class token's row and the image feature."""

from keras import ops

# The names `ViTBackbone` gives its two layers (keras_hub/src/models/vit/vit_backbone.py),
# called one by one by `ViTTeacher` and `ViTStudent`.
EMBEDDING_LAYER = "vit_patching_and_embedding"
ENCODER_LAYER = "vit_encoder"
CLS_INDEX = 0
# The image feature every image teacher and image student reads.
IMAGES_KEY = "images"


def read_images(x, owner, dtype):
    """The image batch in `x`: `x["images"]` when `x` is a dict, else `x` itself.

    Args:
        x: a dict of batched features with an `"images"` entry, or the images.
        owner: str. The model reading them, for the error message.
        dtype: the dtype to cast the images to.

    Returns:
        The images, `(batch, height, width, channels)` (channels-last backbones).

    Example:
    ```python
    read_images({"images": np.zeros((2, 8, 8, 1))}, "vit", "float32").shape  # (2, 8, 8, 1)
    ```
    """
    if isinstance(x, dict):
        if IMAGES_KEY not in x:
            raise ValueError(
                f"{owner!r} reads the image feature {IMAGES_KEY!r}, absent from the "
                f"inputs. Received keys: {sorted(x)}"
            )
        x = x[IMAGES_KEY]
    return ops.cast(x, dtype)

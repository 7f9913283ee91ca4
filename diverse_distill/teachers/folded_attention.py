"""Attention of one query token to a constant memory, without projecting the memory.

With a single query token, keys and values are linear in the memory tokens, so per head
`h` the scores `q_h . (W_k,h x_t)` equal `(W_k,h q_h) . x_t` and the read
`sum_t a_t W_v,h x_t` equals `W_v,h (sum_t a_t x_t)`. Folding the projections into the
query (and into the read) replaces two `(tokens, hidden) x (hidden, hidden)` projections
of the memory by two `(heads, hidden)` products per example, and no gradient is formed
for the memory's rows. `T5Teacher` (cross-attention to the cached encoder output) and
`BertTeacher` ("query_token" suffix over the cached token states) use it with their
attention layers' own kernels, masks and softmax; biases, if any, are theirs to add.

Example:

>>> import numpy as np
>>> from diverse_distill.teachers.folded_attention import folded_read, folded_scores
>>> rng = np.random.default_rng(0)
>>> query = rng.normal(size=(2, 4, 8)).astype("float32")      # (batch, heads, head_dim)
>>> memory = rng.normal(size=(2, 5, 16)).astype("float32")    # (batch, tokens, hidden)
>>> key_kernel = rng.normal(size=(16, 4, 8)).astype("float32")  # (hidden, heads, head_dim)
>>> scores = folded_scores(query, key_kernel, memory)          # (batch, heads, tokens)
>>> keys = np.einsum("bte,ehd->bthd", memory, key_kernel)
>>> bool(np.allclose(scores, np.einsum("bhd,bthd->bht", query, keys), atol=1e-4))
True
>>> tuple(folded_read(np.ones((2, 4, 5), "float32") / 5, memory, key_kernel).shape)
(2, 4, 8)
"""

from keras import ops


def folded_scores(query, key_kernel, memory):
    """Per head, the query's dot product with each memory token's key (no key bias).

    Args:
        query: `(batch, heads, head_dim)`, the projected (and scaled) query.
        key_kernel: `(hidden, heads, head_dim)`, the key projection's kernel.
        memory: `(batch, tokens, hidden)`, the memory tokens before projection.

    Returns:
        `(batch, heads, tokens)`, equal to `query . (memory @ key_kernel)` per head.
    """
    dtype = query.dtype
    query_in_memory = ops.einsum("bhd,ehd->bhe", query, ops.cast(key_kernel, dtype))
    return ops.einsum("bte,bhe->bht", ops.cast(memory, dtype), query_in_memory)


def folded_read(weights, memory, value_kernel):
    """Per head, the weighted sum of the memory tokens' values (no value bias).

    Args:
        weights: `(batch, heads, tokens)`, the attention weights on the memory.
        memory: `(batch, tokens, hidden)`, the memory tokens before projection.
        value_kernel: `(hidden, heads, head_dim)`, the value projection's kernel.

    Returns:
        `(batch, heads, head_dim)`, equal to `sum_t weights_t (memory_t @ value_kernel)`.
    """
    dtype = weights.dtype
    read = ops.einsum("bht,bte->bhe", weights, ops.cast(memory, dtype))
    return ops.einsum("bhe,ehd->bhd", read, ops.cast(value_kernel, dtype))

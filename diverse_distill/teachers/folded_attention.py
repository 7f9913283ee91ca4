"""Attention of one query token to a constant memory, without projecting the memory.

With a single query token, keys and values are linear in the memory tokens, so per head
`h` the scores `q_h . (W_k,h x_t)` equal `(W_k,h q_h) . x_t` and the read
`sum_t a_t W_v,h x_t` equals `W_v,h (sum_t a_t x_t)`. Folding the projections into the
query (and into the read) replaces two `(tokens, hidden) x (hidden, hidden)` projections
of the memory by two `(heads, hidden)` products per example, and no gradient is formed
for the memory's rows. `T5Teacher` (cross-attention to the cached encoder output) uses
`folded_scores`/`folded_read` with its attention layers' own kernels, masks and softmax;
`BertTeacher` and `ViTTeacher` ("query_token" suffix over the cached token states) call
`query_token_attention` on their blocks' own `MultiHeadAttention` layers (biases added).

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


def query_token_attention(attention, query, context, attention_mask, training):
    """`attention(query, value=[query; context])` for a single query token.

    Equal (up to float rounding) to calling the Keras `MultiHeadAttention`
    layer `attention` (KerasHub's BERT and ViT blocks use it or its
    `CachedMultiHeadAttention` subclass) on the concatenation, but
    the context tokens are never projected to keys and values: both are
    linear in the token, so per head `q . (W_k x + b_k) = (W_k q) . x +
    q . b_k` and `sum_t a_t (W_v x_t + b_v) = W_v (sum_t a_t x_t) + b_v
    sum_t a_t`. The context enters through two `(heads, hidden)` products
    per example instead of two `(tokens, hidden) x (hidden, hidden)`
    projections, and no gradient is formed for its rows: for MiniLM (47
    context tokens, 12 heads of 32) about 30x fewer flops per layer.

    Args:
        attention: a `keras.layers.MultiHeadAttention` (its projections,
            masked softmax and attention dropout are called, not copied).
        query: `(batch, 1, hidden_dim)`, the query token's state.
        context: `(batch, tokens, hidden_dim)`, the other tokens' states
            (constant: the cached teacher's own).
        attention_mask: `(batch, 1, 1 + tokens)`, 1 where attended, or `None`.
        training: bool, for the attention dropout.

    Returns:
        `(batch, 1, hidden_dim)`, the attention layer's output.
    """
    query_heads = attention._query_dense(query)[:, 0]  # (batch, heads, head_dim)
    dtype = query_heads.dtype
    query_heads = query_heads * ops.cast(attention._inverse_sqrt_key_dim, dtype)
    key_dense, value_dense = attention._key_dense, attention._value_dense

    # Scores of the query token against itself and against the context.
    own_key = key_dense(query)[:, 0]
    own_score = ops.sum(query_heads * own_key, axis=-1)[..., None]
    context_scores = folded_scores(query_heads, key_dense.kernel, context)
    if key_dense.bias is not None:
        context_scores = context_scores + ops.einsum(
            "bhd,hd->bh", query_heads, ops.cast(key_dense.bias, dtype)
        )[..., None]
    scores = ops.concatenate([own_score, context_scores], axis=-1)
    probabilities = attention._masked_softmax(
        scores[:, :, None, :], attention_mask
    )
    if attention._dropout > 0.0:
        probabilities = attention._dropout_layer(
            probabilities, training=training
        )
    probabilities = probabilities[:, :, 0, :]  # (batch, heads, 1 + tokens)
    own_probability = probabilities[..., :1]
    context_probabilities = probabilities[..., 1:]

    # Values: the query token's own, and the projected mix of the context.
    output = own_probability * value_dense(query)[:, 0] + folded_read(
        context_probabilities, context, value_dense.kernel
    )
    if value_dense.bias is not None:
        output = output + ops.sum(
            context_probabilities, axis=-1, keepdims=True
        ) * ops.cast(value_dense.bias, dtype)
    return attention._output_dense(output[:, None])

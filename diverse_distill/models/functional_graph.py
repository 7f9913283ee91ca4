"""The graph of a functional Keras model, read to cut it at a named layer.

`KerasTeacher` and `KerasStudent` wrap any functional Keras model (or a built
`Sequential`) and need three things from its graph: the single tensor a named
layer outputs, whether one tensor depends on another, and which tensors a
part of the graph reads besides a given one (skip connections, other inputs).

How the graph is read: Keras 3 has no public accessor for the operation that
produced a `KerasTensor`, so this module follows `tensor._keras_history`
(operation, node index, tensor index) and that operation's
`_inbound_nodes[node_index]`: the record every functional model is built
from (`Node.input_tensors`, `Node.output_tensors`), the same one KerasHub
walks. It is read from the model's own outputs back to its inputs and never
from `layer._inbound_nodes` as a whole, because sub-models built on
intermediate tensors with `keras.Model(intermediate_tensors, outputs)`
append cloned nodes to the same layers. `model.operations` is not used: a
`Sequential` lacks it.

How a part of the graph runs: `GraphSlice`, a layer around the public
`keras.Function(inputs, outputs)`, which accepts any tensors of the graph
as its inputs and runs the model's own layers between them. Not
`keras.Model(intermediate_tensors, outputs)`: for inputs that mix an
intermediate tensor with one of the model's `keras.Input`s (a second input
that bypasses the cut), Keras 3.15 re-points that `Input`'s history to a
cloned node, after which the user's model can no longer be serialised.
"""

import difflib
import math

import keras


def functional_inputs(model, owner):
    """The input structure of a functional model, as its `call` accepts it.

    Args:
        model: a functional `keras.Model` or a built `keras.Sequential`.
        owner: str. The class asking, for the error message.

    Returns:
        The model's input `KerasTensor`s: a dict, list or single tensor.
    """
    if not isinstance(model, keras.Model):
        raise ValueError(f"{owner} wraps a keras.Model, got {type(model).__name__}.")
    try:
        inputs = model.inputs
        outputs = model.outputs
    except (AttributeError, ValueError):
        inputs = outputs = None
    if not inputs or not outputs:
        raise ValueError(
            f"{owner} needs a functional model (keras.Model(inputs, outputs), or a "
            f"Sequential built with keras.Input); {model.name!r} "
            f"({type(model).__name__}) is subclassed or not built, so it has no graph to split."
        )
    if isinstance(model, keras.Sequential):
        return inputs[0] if len(inputs) == 1 else inputs
    return model.input


def static_size(tensor, what):
    """The number of values per example of `tensor` (its non-batch dims, known)."""
    dims = tuple(tensor.shape[1:])
    if any(d is None for d in dims):
        raise ValueError(
            f"{what} has shape {tuple(tensor.shape)}: its non-batch dims must be known "
            "to flatten it to one vector per example."
        )
    return int(math.prod(dims))


class GraphSlice(keras.layers.Layer):
    """Runs the part of a functional model's graph between some of its tensors.

    The slice owns no weights: it calls the model's own layers (keep the
    model tracked elsewhere). It always runs in inference mode: a layer whose
    symbolic call recorded a `training` value (Dropout records its default,
    `False`) runs with it, and every other one (BatchNormalization) reads the
    call context, which this layer pins to `training=False` whatever its
    caller passes. That is what a frozen teacher's suffix needs.

    Args:
        inputs: `KerasTensor`s of the model's graph (any, not only its inputs).
        outputs: `KerasTensor`s computed from `inputs` alone.
        **kwargs: passed to `keras.layers.Layer` (e.g. `name`).

    Example:
    ```python
    from diverse_distill.models.functional_graph import GraphSlice
    inputs = keras.Input((4,))
    h = keras.layers.Dense(3, name="h")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1)(h))
    after_h = GraphSlice(h, model.outputs[0])
    after_h(np.ones((2, 3), "float32")).shape  # (2, 1)
    ```
    """

    def __init__(self, inputs, outputs, **kwargs):
        super().__init__(**kwargs)
        self.function = keras.Function(inputs, outputs)
        self.built = True

    def call(self, inputs, training=False):
        return self.function(inputs)

    def __call__(self, inputs, training=None):
        # Pinned: see the class docstring.
        return super().__call__(inputs, training=False)


def _producer(tensor):
    """`(node, tensor_index)`: the call that produced `tensor` in its graph."""
    operation, node_index, tensor_index = tensor._keras_history
    return operation._inbound_nodes[node_index], tensor_index


class FunctionalGraph:
    """The nodes of a functional model, from its outputs back to its inputs.

    Args:
        model: a functional `keras.Model` or a built `keras.Sequential`.
        owner: str. The class using the graph, for error messages.

    Example:
    ```python
    from diverse_distill.models.functional_graph import FunctionalGraph
    a, b = keras.Input((4,), name="a"), keras.Input((2,), name="b")
    h = keras.layers.Dense(3, name="h")(a)
    out = keras.layers.Dense(1, name="out")(keras.layers.Concatenate(name="cat")([h, b]))
    graph = FunctionalGraph(keras.Model([a, b], out), owner="example")
    graph.depends_on(graph.output_of("out", "layer"), graph.output_of("h", "layer"))  # True
    [key for key, _ in graph.read_besides([graph.prediction()], graph.output_of("h", "layer"))]
    # ['b']: the second input bypasses `h`
    ```
    """

    def __init__(self, model, owner):
        self.owner = owner
        self.model_name = model.name
        self.inputs = functional_inputs(model, owner)
        self.outputs = list(model.outputs)
        # Iterative depth-first walk (deep models exceed Python's recursion
        # limit); `self.nodes` ends in topological order, inputs first.
        self.nodes = []
        seen, stack = set(), [(_producer(t)[0], False) for t in reversed(self.outputs)]
        while stack:
            node, expanded = stack.pop()
            if expanded:
                self.nodes.append(node)
                continue
            if id(node) in seen:
                continue
            seen.add(id(node))
            stack.append((node, True))
            for tensor in reversed(node.input_tensors):
                parent, _ = _producer(tensor)
                if id(parent) not in seen:
                    stack.append((parent, False))
        self.nodes_by_name = {}
        for node in self.nodes:
            self.nodes_by_name.setdefault(node.operation.name, []).append(node)

    def prediction(self):
        """The model's single output tensor."""
        if len(self.outputs) != 1:
            raise ValueError(
                f"{self.owner} needs a model with one output (its prediction); "
                f"{self.model_name!r} has {len(self.outputs)}."
            )
        return self.outputs[0]

    def output_of(self, name, role):
        """The single tensor the layer (or operation) `name` outputs in this model.

        Args:
            name: str. A layer name of the model.
            role: str. The argument that named it, for error messages.
        """
        nodes = self.nodes_by_name.get(name)
        if not nodes:
            close = difflib.get_close_matches(str(name), list(self.nodes_by_name), n=5, cutoff=0.4)
            hint = f"close names: {close}" if close else f"its layers: {list(self.nodes_by_name)[:20]}"
            raise ValueError(
                f"{self.owner}: `{role}`={name!r} is no layer of {self.model_name!r} ({hint}; "
                "a layer inside a nested model is reachable only if the model is built from that "
                "model's own inputs and outputs)."
            )
        if len(nodes) > 1 or len(nodes[0].output_tensors) != 1:
            count = (f"is called {len(nodes)} times in the model" if len(nodes) > 1
                     else f"returns {len(nodes[0].output_tensors)} tensors")
            raise ValueError(
                f"{self.owner}: `{role}`={name!r} {count}; its output must be a single tensor."
            )
        return nodes[0].output_tensors[0]

    def _dependents(self, source):
        """Ids of every tensor computed from `source` (itself included)."""
        dependent = {id(source)}
        for node in self.nodes:
            if any(id(t) in dependent for t in node.input_tensors):
                dependent.update(id(t) for t in node.output_tensors)
        return dependent

    def depends_on(self, tensor, source):
        """Whether `tensor` is computed from `source` (or is `source`)."""
        return id(tensor) in self._dependents(source)

    def key(self, tensor):
        """A stable name for `tensor`: its layer's name, with the output index if several."""
        node, index = _producer(tensor)
        name = node.operation.name
        if len(self.nodes_by_name.get(name, [])) > 1:
            name = f"{name}/call_{self.nodes_by_name[name].index(node)}"
        if len(node.output_tensors) > 1:
            name = f"{name}/output_{index}"
        return name

    def read_besides(self, outputs, source):
        """What computing `outputs` from `source` also reads: `[(key, tensor), ...]`.

        These are the tensors that bypass `source`: inputs of the graph between
        `source` and `outputs` that do not depend on `source` (skip
        connections, other model inputs), in the order they are found from
        the outputs back. Every one of `outputs` must depend on `source`.
        """
        dependent = self._dependents(source)
        found, seen, stack = [], {id(source)}, list(reversed(outputs))
        while stack:
            tensor = stack.pop()
            if id(tensor) in seen:
                continue
            seen.add(id(tensor))
            if id(tensor) not in dependent:
                found.append(tensor)
                continue
            node, _ = _producer(tensor)
            stack.extend(reversed(node.input_tensors))
        return [(self.key(t), t) for t in found]

"""ONNX export of a model's forward pass (`MLP.to_onnx`, the estimators' `to_onnx`), for
onnxruntime and any other ONNX runtime. Needs the `onnx` package (pip install
'accelnn[onnx]'); nothing here runs a model.

The graph is the forward pass written once in accelnn.network, in float32, for any number of
rows (input "X" of shape (N, n0)):

    every layer   Gemm(A, W, b)              Z[l] = A[l-1] @ W[l] + b[l] (W as in coefs_)
    hidden        Identity, Sigmoid, Tanh, Relu, LeakyRelu(alpha=0.01), Softplus
    output        Sigmoid, Softmax(axis=1) or nothing (identity)

Outputs: an MLP's graph gives "output", MLP.forward(X). A classifier's gives "label"
(predict: classes_ looked up by ArgMax of the probabilities; multi-label rows: 0/1 int64) and
"probabilities" (predict_proba: [1 - p, p] for one sigmoid unit); a regressor's gives
"variable" (predict: (N,) for one target, else (N, n_targets)). These are scikit-learn's and
skl2onnx's output names. The model is written at opset 17 (IR version 8), which
onnxruntime >= 1.14 runs.
"""

from __future__ import annotations

import os

import numpy as np

from accelnn.activations import LEAKY_SLOPE

OPSET = 17
IR_VERSION = 8
HIDDEN_OPS = {"identity": "Identity", "sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "Relu",
              "leaky_relu": "LeakyRelu", "softplus": "Softplus"}


def _onnx():
    try:
        import onnx
    except ImportError as exc:
        raise ImportError("to_onnx needs the onnx package: pip install 'accelnn[onnx]' (or "
                          "pip install onnx)") from exc
    return onnx


class _Graph:
    """Nodes, initializers and outputs of one graph, built step by step."""

    def __init__(self, onnx):
        self.onnx, self.helper = onnx, onnx.helper
        self.nodes, self.inits, self.outputs = [], [], []

    def const(self, name: str, value: np.ndarray) -> str:
        self.inits.append(self.onnx.numpy_helper.from_array(value, name))
        return name

    def node(self, op: str, inputs: list[str], output: str, **attrs) -> str:
        self.nodes.append(self.helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def output(self, name: str, elem_type: int, shape: list) -> None:
        self.outputs.append(self.helper.make_tensor_value_info(name, elem_type, shape))

    def save(self, path, n_inputs: int, doc: str) -> None:
        onnx, helper = self.onnx, self.helper
        X = helper.make_tensor_value_info("X", onnx.TensorProto.FLOAT, ["N", n_inputs])
        graph = helper.make_graph(self.nodes, "accelnn_mlp", [X], self.outputs, self.inits,
                                  doc_string=doc)
        model = helper.make_model(graph, producer_name="accelnn",
                                  opset_imports=[helper.make_opsetid("", OPSET)])
        model.ir_version = IR_VERSION
        onnx.checker.check_model(model)
        onnx.save(model, os.fspath(path))


def _forward(g: _Graph, mlp) -> str:
    """The layers of `mlp` (weights of one whole step, a resolved output) up to its output
    activation; returns the name of A[L]."""
    head = mlp.head
    prev = "X"
    for l, (W, b) in enumerate(mlp.get_weights(), start=1):
        z = g.node("Gemm", [prev, g.const(f"W{l}", W.astype(np.float32)),
                            g.const(f"b{l}", b.astype(np.float32))], f"Z{l}")
        if l == mlp.n_layers:
            prev = z
            break
        act = mlp.activations[l - 1].name
        extra = {"alpha": LEAKY_SLOPE} if act == "leaky_relu" else {}
        prev = g.node(HIDDEN_OPS[act], [z], f"A{l}", **extra)
    if head.name == "sigmoid":
        return g.node("Sigmoid", [prev], "A_out")
    if head.name == "softmax":
        return g.node("Softmax", [prev], "A_out", axis=1)
    return prev


def write_mlp(mlp, path) -> None:
    """Write MLP.forward as an ONNX graph with the output "output" (N, nL)."""
    g = _Graph(_onnx())
    g.node("Identity", [_forward(g, mlp)], "output")
    g.output("output", g.onnx.TensorProto.FLOAT, ["N", mlp.layer_sizes[-1]])
    g.save(path, mlp.layer_sizes[0], f"accelnn {mlp!r}: forward")


def _label_tensor(classes: np.ndarray):
    """classes_ as a constant array and its ONNX element type (numbers, bools or strings)."""
    if classes.dtype.kind in "iu":
        return classes.astype(np.int64), "INT64"
    if classes.dtype.kind == "f":
        return classes.astype(np.float64), "DOUBLE"
    if classes.dtype.kind == "b":
        return classes, "BOOL"
    return classes.astype(str).astype(object), "STRING"


def write_classifier(mlp, path, classes: np.ndarray, multilabel: bool) -> None:
    """An estimator's predict ("label") and predict_proba ("probabilities") as ONNX."""
    g = _Graph(_onnx())
    T = g.onnx.TensorProto
    P = _forward(g, mlp)
    n_out = mlp.layer_sizes[-1]
    if multilabel:
        g.node("Identity", [P], "probabilities")
        hit = g.node("Greater", [P, g.const("half", np.array(0.5, np.float32))], "hit")
        g.node("Cast", [hit], "label", to=T.INT64)
        g.output("label", T.INT64, ["N", n_out])
    else:
        if n_out == 1:  # one sigmoid unit: P(class 0) = 1 - p
            q = g.node("Sub", [g.const("one", np.array(1.0, np.float32)), P], "P0")
            P = g.node("Concat", [q, P], "P01", axis=1)
        g.node("Identity", [P], "probabilities")
        idx = g.node("ArgMax", [P], "index", axis=1, keepdims=0)
        values, kind = _label_tensor(np.asarray(classes))
        g.node("Gather", [g.const("classes", values), idx], "label", axis=0)
        g.output("label", getattr(T, kind), ["N"])
    g.output("probabilities", T.FLOAT, ["N", max(n_out, 2)])
    g.save(path, mlp.layer_sizes[0], f"accelnn {mlp!r}: classifier")


def write_regressor(mlp, path) -> None:
    """An estimator's predict ("variable": (N,) for one target) as ONNX."""
    g = _Graph(_onnx())
    T = g.onnx.TensorProto
    A = _forward(g, mlp)
    n_out = mlp.layer_sizes[-1]
    if n_out == 1:
        g.node("Reshape", [A, g.const("flat", np.array([-1], np.int64))], "variable")
        g.output("variable", T.FLOAT, ["N"])
    else:
        g.node("Identity", [A], "variable")
        g.output("variable", T.FLOAT, ["N", n_out])
    g.save(path, mlp.layer_sizes[0], f"accelnn {mlp!r}: regressor")

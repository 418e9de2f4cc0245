"""The FLOPs of a traced TF graph, op by op: a check of `flops`' count on the computation that runs."""

import re

import numpy as np

from spade_tf.tools.benchmark.flops import MODEL_SCOPES

FLOP_KINDS = ("conv", "conv_grad_input", "conv_grad_filter", "bias", "matmul")


def _shape(tensor, op):
    shape = tensor.shape
    if shape.rank is None or not shape.is_fully_defined():
        raise ValueError(
            f"cannot count the FLOPs of {op.type} {op.name!r}: shape {shape} is not fully known; "
            "trace the function with fixed input shapes (batch, height, width)."
        )
    return [int(s) for s in shape]


def op_flops(op):
    """(kind, FLOPs) of one graph op (kind in FLOP_KINDS), or None for ops that are not counted."""
    if op.type in ("Conv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter"):
        if op.type == "Conv2D":
            per_output, outputs = _shape(op.inputs[1], op), _shape(op.outputs[0], op)
            kind = "conv"
        elif op.type == "Conv2DBackpropInput":  # (input_sizes, filter, out_backprop)
            per_output, outputs = _shape(op.inputs[1], op), _shape(op.inputs[2], op)
            kind = "conv_grad_input"
        else:  # (input, filter_sizes, out_backprop); the output is the filter's gradient
            per_output, outputs = _shape(op.outputs[0], op), _shape(op.inputs[2], op)
            kind = "conv_grad_filter"
        kh, kw, cin = per_output[:3]
        return kind, 2 * int(np.prod(outputs)) * kh * kw * cin
    if op.type in ("BiasAdd", "BiasAddV1"):
        return "bias", int(np.prod(_shape(op.outputs[0], op)))
    if op.type == "BiasAddGrad":
        return "bias", int(np.prod(_shape(op.inputs[0], op)))
    if op.type == "MatMul":
        a = _shape(op.inputs[0], op)
        k = a[0] if op.get_attr("transpose_a") else a[1]
        return "matmul", 2 * int(np.prod(_shape(op.outputs[0], op))) * k
    if op.type in ("BatchMatMul", "BatchMatMulV2", "BatchMatMulV3"):
        a = _shape(op.inputs[0], op)
        k = a[-2] if op.get_attr("adj_x") else a[-1]
        return "matmul", 2 * int(np.prod(_shape(op.outputs[0], op))) * k
    return None


def executed_ops(graph):
    """The ops of a function graph that run: ancestors of its outputs and of its stateful ops.

    TF prunes the rest from a function body before running it, e.g. the
    weight gradients that a tape creates for variables nobody asked about.
    """
    roots = [t.op for t in graph.outputs] + list(getattr(graph, "control_outputs", []))
    seen, stack, ops = set(), list(roots), []
    while stack:
        op = stack.pop()
        if op.name in seen:
            continue
        seen.add(op.name)
        ops.append(op)
        stack.extend(t.op for t in op.inputs)
        stack.extend(op.control_inputs)
    return ops


def _scope(op_name):
    # Keras names ops after the layer path, with "_1" style suffixes:
    # "gradient_tape/discriminator_1/discriminator_0_1/model0_1/Conv2D".
    for part in op_name.split("/"):
        base = re.sub(r"(_\d+)+$", "", part)
        if base in MODEL_SCOPES:
            return base
    return "other"


def _called_graph(op):
    # The body of a (Stateful)PartitionedCall, e.g. a jit_compile=True function inside the step.
    name = op.get_attr("f").name
    graph = op.graph
    while graph is not None:
        function = getattr(graph, "_functions", {}).get(name)
        if function is not None:
            return function.graph
        graph = getattr(graph, "outer_graph", None)
    raise ValueError(f"cannot find the body of {op.type} {op.name!r} (function {name}) to count its FLOPs.")


def count_graph_flops(function):
    """FLOPs by model and kind of the conv, bias and matmul ops that a traced function runs.

    Ops that no output or stateful op needs are left out, as TF prunes them.
    Nested function calls (jit_compile parts) are counted through their bodies;
    the branches of `tf.cond` and loop bodies are not counted.

    Args:
        function: a ConcreteFunction (or its FuncGraph) traced with fixed shapes.

    Returns:
        {scope: {kind: FLOPs}} with scope in generator, discriminator, encoder,
        other and kind in conv, conv_grad_input, conv_grad_filter, bias, matmul.
    """
    counts = {scope: dict.fromkeys(FLOP_KINDS, 0) for scope in MODEL_SCOPES + ("other",)}
    graphs = [getattr(function, "graph", function)]
    while graphs:
        for op in executed_ops(graphs.pop()):
            if op.type in ("PartitionedCall", "StatefulPartitionedCall"):
                graphs.append(_called_graph(op))
                continue
            counted = op_flops(op)
            if counted is not None:
                kind, flops = counted
                counts[_scope(op.name)][kind] += flops
    return counts

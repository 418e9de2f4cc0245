"""Sends a label map to a served SPADE model over TF Serving's gRPC API (port 8500) and saves the image.

Needs `pip install tensorflow-serving-api` (it brings grpcio and the TensorFlow protos).

    python examples/grpc_client.py --labels label.png --output image.png
    python examples/grpc_client.py --server gpu-box:8500 --model_name spade --labels label.png --seed 7

The request is a `PredictRequest` for the `predict_png` signature (`style_png` with --style): the label PNG
as a DT_STRING tensor of shape (1,) and, for VAE models, an int32 `seed` of shape (1,). The reply holds
`image_png_bytes`, a DT_STRING tensor with the PNG. Unlike REST, gRPC carries bytes as they are (no base64).
"""

import argparse
import sys

import grpc
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2, prediction_service_pb2_grpc


def _vector(values, dtype):
    shape = tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=len(values))])
    if dtype == types_pb2.DT_STRING:
        return tensor_pb2.TensorProto(dtype=dtype, tensor_shape=shape, string_val=values)
    return tensor_pb2.TensorProto(dtype=dtype, tensor_shape=shape, int_val=values)


def signature_inputs(stub, model_name, signature, timeout=60.0):
    """Input names of a served signature, from GetModelMetadata."""
    md = get_model_metadata_pb2
    request = md.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = model_name
    response = stub.GetModelMetadata(request, timeout=timeout)
    defs = md.SignatureDefMap()
    response.metadata["signature_def"].Unpack(defs)
    if signature not in defs.signature_def:
        raise RuntimeError(
            f"model {model_name} has no signature {signature!r}; it has {sorted(defs.signature_def)}."
        )
    return set(defs.signature_def[signature].inputs)


def predict_png(server, model_name, label_png, seed=None, style_png=None, timeout=60.0):
    """Label PNG bytes -> synthesized PNG bytes over gRPC.

    Args:
        server: "host:port" of TF Serving's gRPC port.
        model_name: the served model's name.
        label_png: PNG bytes of the label map.
        seed: latent seed (VAE models); None sends 0 when the model takes a seed.
        style_png: PNG or JPEG bytes of a style photo (VAE models with an encoder), or None.
        timeout: seconds.

    Returns:
        The image as PNG bytes.
    """
    signature = "predict_png" if style_png is None else "style_png"
    with grpc.insecure_channel(server) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model_name
        request.model_spec.signature_name = signature
        request.inputs["label_png_bytes"].CopyFrom(_vector([label_png], types_pb2.DT_STRING))
        if style_png is not None:
            request.inputs["style_png_bytes"].CopyFrom(_vector([style_png], types_pb2.DT_STRING))
        if seed is not None or "seed" in signature_inputs(stub, model_name, signature, timeout):
            request.inputs["seed"].CopyFrom(_vector([int(seed or 0)], types_pb2.DT_INT32))
        response = stub.Predict(request, timeout=timeout)
    return response.outputs["image_png_bytes"].string_val[0]


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default="localhost:8500", help="gRPC host:port")
    parser.add_argument("--model_name", default="spade", help="served model name")
    parser.add_argument("--labels", required=True, help="label map PNG (ids or palette colours)")
    parser.add_argument("--seed", type=int, default=None, help="latent seed (VAE models; default 0)")
    parser.add_argument("--style", default=None, help="style photo, PNG or JPEG (VAE models)")
    parser.add_argument("--output", default="image.png", help="where to write the synthesized PNG")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds")
    args = parser.parse_args(argv)
    try:
        label_png = _read(args.labels)
        style = _read(args.style) if args.style else None
    except OSError as e:
        sys.exit(f"grpc_client.py: error: cannot read {e.filename}: {e.strerror}")
    try:
        image = predict_png(args.server, args.model_name, label_png, args.seed, style, args.timeout)
    except grpc.RpcError as e:
        sys.exit(f"grpc_client.py: error: {e.code().name}: {e.details()}")
    except RuntimeError as e:
        sys.exit(f"grpc_client.py: error: {e}")
    with open(args.output, "wb") as f:
        f.write(image)
    print(f"wrote {args.output} ({len(image)} bytes)")


if __name__ == "__main__":
    main()

"""Writes and reads apex4 checkpoints (FORMAT.md): model.safetensors + apex4.json. The reader
parses the safetensors header itself and hashes the raw stored bytes, as the C++ loader does."""
import hashlib
import json
import os
import struct
from typing import Optional

import numpy as np

from .gguf_loader import LINEAR_NAMES, ModelConfig, QuantizerError, expected_shapes
from .int4 import pack_int4, unpack_int4
from .model import KvCacheQuant
from .quantize import OutlierWeights, QuantizedLinear, QuantizedModel, WeightVariant

FORMAT = "apex4"
FORMAT_VERSION = 1
METADATA_FILE = "apex4.json"
TENSOR_FILE = "model.safetensors"
_VARIANT_SUFFIX = {"per_channel": "pc", "g128": "g128"}
_DTYPES = {"U8": np.uint8, "I8": np.int8, "I32": np.int32, "F32": np.float32}
_DTYPE_NAMES = {np.dtype(v): k for k, v in _DTYPES.items()}


def _sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def _kv_meta(kv: Optional[KvCacheQuant], head_dim: int) -> dict:
    if kv is None:
        return {"bits": 16}
    return {"bits": 4, "granularity": "per_token_per_head", "key_clip_ratio": kv.key_clip_ratio,
            "value_clip_ratio": kv.value_clip_ratio,
            "key_online_hadamard": {"block": head_dim} if kv.key_hadamard else None}


def _kv_from_meta(meta: dict) -> Optional[KvCacheQuant]:
    if meta.get("bits", 16) == 16:
        return None
    return KvCacheQuant(meta["key_clip_ratio"], meta["value_clip_ratio"],
                        meta.get("key_online_hadamard") is not None)


def _layer_tensors(layer: QuantizedLinear, n: int) -> tuple[dict, dict]:
    """(tensors, JSON entry) of one linear layer; checks every shape against n and k_padded."""
    tensors, variants = {}, {}
    for granularity, v in layer.variants.items():
        suffix = _VARIANT_SUFFIX[granularity]
        expected = {"codes": (n, layer.k_padded),
                    "scales": (n, layer.k_padded // layer.group_size(granularity))}
        for what, shape in expected.items():
            if getattr(v, what).shape != shape:
                raise QuantizerError(f"{layer.name} {granularity} {what}: shape "
                                     f"{getattr(v, what).shape}, expected {shape}")
        qname, sname = f"{layer.name}.qweight.{suffix}", f"{layer.name}.scales.{suffix}"
        tensors[qname] = pack_int4(v.codes)
        tensors[sname] = v.scales.astype(np.float32)
        variants[granularity] = {"qweight": qname, "scales": sname,
                                 "act_clip_ratio": v.act_clip_ratio}
    if layer.granularity not in variants:
        raise QuantizerError(f"{layer.name}: configured granularity {layer.granularity} "
                             "has no weights")
    outliers = None
    if layer.outliers is not None:
        o = layer.outliers
        if o.codes.shape != (n, len(o.channels)) or o.scales.shape != (n, 1):
            raise QuantizerError(f"{layer.name}: outlier shapes {o.codes.shape}/{o.scales.shape}")
        outliers = {"channels": f"{layer.name}.outlier_channels",
                    "qweight": f"{layer.name}.outlier_qweight",
                    "scales": f"{layer.name}.outlier_scales"}
        tensors[outliers["channels"]] = o.channels.astype(np.int32)
        tensors[outliers["qweight"]] = o.codes.astype(np.int8)
        tensors[outliers["scales"]] = o.scales.astype(np.float32)
    entry = {"name": layer.name, "n": n, "k": layer.k, "k_padded": layer.k_padded,
             "granularity": layer.granularity,
             "online_hadamard": {"block": layer.online_hadamard} if layer.online_hadamard else None,
             "variants": variants, "outliers": outliers, "sensitivity": layer.sensitivity()}
    return tensors, entry


def write_checkpoint(path: str, qm: QuantizedModel) -> None:
    from safetensors.numpy import save_file

    shapes = expected_shapes(qm.config)
    tensors = {}
    for name, array in qm.float_tensors.items():
        if array.shape != shapes[name]:
            raise QuantizerError(f"{name}: shape {array.shape}, expected {shapes[name]}")
        tensors[name] = array.astype(np.float32)
    entries = []
    for layer in qm.layers:
        n, k = shapes[layer.name + ".weight"]
        if layer.k != k:
            raise QuantizerError(f"{layer.name}: k={layer.k}, the model has {k}")
        layer_tensors, entry = _layer_tensors(layer, n)
        tensors.update(layer_tensors)
        entries.append(entry)
    # safetensors.numpy writes a non-C-contiguous array's bytes in the wrong order.
    tensors = {name: np.ascontiguousarray(a) for name, a in tensors.items()}
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "source": qm.source,
            "model": qm.config.to_json(),
            "quantization": {**qm.meta, "kv_cache": _kv_meta(qm.kv_quant, qm.config.head_dim)},
            "layers": entries,
            "tensors": {name: {"dtype": _DTYPE_NAMES[a.dtype], "shape": list(a.shape),
                               "sha256": _sha256(a)} for name, a in sorted(tensors.items())}}
    os.makedirs(path, exist_ok=True)
    save_file(tensors, os.path.join(path, TENSOR_FILE),
              metadata={"format": FORMAT, "format_version": str(FORMAT_VERSION)})
    with open(os.path.join(path, METADATA_FILE), "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=1)


def _read_safetensors(path: str) -> tuple[dict, bytes]:
    """(header without __metadata__, data section) of a safetensors file."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise QuantizerError(f"cannot read {path}: {e}") from e
    if len(raw) < 8:
        raise QuantizerError(f"{path}: truncated (no header length)")
    (header_len,) = struct.unpack("<Q", raw[:8])
    if 8 + header_len > len(raw):
        raise QuantizerError(f"{path}: header length {header_len} exceeds file size {len(raw)}")
    try:
        header = json.loads(raw[8:8 + header_len])
    except ValueError as e:
        raise QuantizerError(f"{path}: header is not JSON: {e}") from e
    header.pop("__metadata__", None)
    return header, raw[8 + header_len:]


def read_checkpoint(path: str) -> QuantizedModel:
    """Loads and verifies a checkpoint; any mismatch raises QuantizerError naming the field."""
    try:
        with open(os.path.join(path, METADATA_FILE), encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError) as e:
        raise QuantizerError(f"cannot read {METADATA_FILE} in '{path}': {e}") from e
    if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
        raise QuantizerError(f"'{path}': format {meta.get('format')} v{meta.get('format_version')}"
                             f", expected {FORMAT} v{FORMAT_VERSION}")
    header, data = _read_safetensors(os.path.join(path, TENSOR_FILE))
    declared = meta["tensors"]
    if set(header) != set(declared):
        diff = sorted(set(header) ^ set(declared))[:5]
        raise QuantizerError(f"tensor lists of {METADATA_FILE} and {TENSOR_FILE} differ: {diff}")
    tensors = {}
    for name, info in declared.items():
        stored = header[name]
        if stored["dtype"] != info["dtype"] or stored["shape"] != info["shape"]:
            raise QuantizerError(f"{name}: stored {stored['dtype']}{stored['shape']}, "
                                 f"metadata says {info['dtype']}{info['shape']}")
        begin, end = stored["data_offsets"]
        dtype = np.dtype(_DTYPES[info["dtype"]])
        if end > len(data) or end - begin != dtype.itemsize * int(np.prod(info["shape"])):
            raise QuantizerError(f"{name}: data offsets {begin}..{end} do not fit "
                                 f"{info['shape']} in a {len(data)}-byte data section")
        blob = data[begin:end]
        if hashlib.sha256(blob).hexdigest() != info["sha256"]:
            raise QuantizerError(f"{name}: sha256 mismatch (corrupt checkpoint)")
        tensors[name] = np.frombuffer(blob, dtype=dtype).reshape(info["shape"])
    config = ModelConfig.from_json(meta["model"])
    shapes = expected_shapes(config)
    float_tensors = {}
    for name, shape in shapes.items():
        if not name.split(".")[-2] in LINEAR_NAMES:
            if tensors[name].shape != shape:
                raise QuantizerError(f"{name}: shape {tensors[name].shape}, model needs {shape}")
            float_tensors[name] = tensors[name]
    layers = [_layer_from_meta(entry, tensors, shapes) for entry in meta["layers"]]
    quant = dict(meta["quantization"])
    kv_quant = _kv_from_meta(quant.pop("kv_cache"))
    return QuantizedModel(config, float_tensors, layers, quant, kv_quant, meta["source"])


def _layer_from_meta(entry: dict, tensors: dict, shapes: dict) -> QuantizedLinear:
    n, k = shapes[entry["name"] + ".weight"]
    if (entry["n"], entry["k"]) != (n, k) or entry["k_padded"] % 128 or entry["k_padded"] < k:
        raise QuantizerError(f"{entry['name']}: n/k/k_padded {entry['n']}/{entry['k']}/"
                             f"{entry['k_padded']} do not fit the model's {n}x{k}")
    sensitivity = entry.get("sensitivity") or {}
    layer = QuantizedLinear(entry["name"], k, entry["k_padded"], entry["granularity"], {},
                            (entry["online_hadamard"] or {}).get("block"))
    for granularity, v in entry["variants"].items():
        gs = layer.group_size(granularity)
        packed, scales = tensors[v["qweight"]], tensors[v["scales"]]
        if packed.shape != (n, layer.k_padded // 2) or scales.shape != (n, layer.k_padded // gs):
            raise QuantizerError(f"{entry['name']} {granularity}: qweight {packed.shape} / "
                                 f"scales {scales.shape} do not match n={n}, "
                                 f"k_padded={layer.k_padded}")
        layer.variants[granularity] = WeightVariant(
            unpack_int4(packed), scales, v["act_clip_ratio"],
            sensitivity.get(f"rel_err_{granularity}"))
    if entry["outliers"] is not None:
        o = entry["outliers"]
        layer.outliers = OutlierWeights(tensors[o["channels"]], tensors[o["qweight"]],
                                        tensors[o["scales"]])
    return layer

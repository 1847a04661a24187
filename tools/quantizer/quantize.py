"""The quantization pipeline: optional rotation, then block by block on calibration data: weight
quantization in both granularities (RTN or GPTQ), activation clip search, per-layer
sensitivity."""
import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from .calibration import SITE_OF, SITES, SiteStats, calibration_batch
from .gguf_loader import LINEAR_NAMES, ModelConfig, QuantizerError
from .int4 import GROUP_128, INT8_MAX, dequantize, pad_k, padded_k, quantize_symmetric
from .model import (ActQuant, Block, KvCache, KvCacheQuant, LlamaModel, Linear, Outliers,
                    block_forward)
from .transforms import DOWN_HADAMARD_BLOCK, rotate
from .weight_quant import gptq, rtn

METHODS = ("rtn", "atom", "quarot")
GRANULARITIES = ("per_channel", "g128")
ACT_CLIP_GRID = (1.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6)
# Atom keeps 128 of 4096 input channels in INT8; the same fraction of each layer's K here.
ATOM_OUTLIER_FRACTION = 128 / 4096
CLIP_SEARCH_SAMPLES = 256  # input rows per site used for the clip search and sensitivity
CALIB_BATCH = 8             # sequences per forward call during calibration


@dataclass
class QuantOptions:
    method: str = "rtn"
    gptq: bool = False
    granularity: str = "g128"          # per_channel | g128 | mixed
    mixed_g128_fraction: float = 0.5   # mixed: this fraction of the most sensitive layers gets g128
    act_clip: Optional[float] = None   # None: searched per layer and granularity
    weight_clip_search: bool = True
    kv_bits: int = 16
    calib_path: str = ""
    calib_seqs: int = 16
    calib_len: int = 512
    seed: int = 0

    def validate(self) -> None:
        if self.method not in METHODS:
            raise QuantizerError(f"method '{self.method}' not in {METHODS}")
        if self.granularity not in GRANULARITIES + ("mixed",):
            raise QuantizerError(f"granularity '{self.granularity}' unknown")
        if not 0.0 <= self.mixed_g128_fraction <= 1.0:
            raise QuantizerError("mixed_g128_fraction must be in [0, 1]")
        if self.act_clip is not None and not 0.0 < self.act_clip <= 1.0:
            raise QuantizerError("act_clip must be in (0, 1]")
        if self.kv_bits not in (4, 16):
            raise QuantizerError("kv_bits must be 4 or 16")


@dataclass
class WeightVariant:
    codes: np.ndarray   # int8 [N, k_padded], -7..7
    scales: np.ndarray  # float32 [N, k_padded / group_size]
    act_clip_ratio: float
    rel_err: Optional[float] = None  # this layer's W4A4 output error on calibration inputs


@dataclass
class OutlierWeights:
    channels: np.ndarray  # int32 [c]
    codes: np.ndarray     # int8 [N, c]
    scales: np.ndarray    # float32 [N, 1]


@dataclass
class QuantizedLinear:
    name: str  # e.g. blk.0.attn_q
    k: int
    k_padded: int
    granularity: str
    variants: dict  # granularity -> WeightVariant
    online_hadamard: Optional[int] = None
    outliers: Optional[OutlierWeights] = None

    def group_size(self, granularity: str) -> int:
        return self.k_padded if granularity == "per_channel" else GROUP_128

    def sensitivity(self) -> Optional[dict]:
        errs = {g: v.rel_err for g, v in self.variants.items()}
        if len(errs) < 2 or None in errs.values():
            return None
        return {"rel_err_per_channel": errs["per_channel"], "rel_err_g128": errs["g128"],
                "per_channel_over_g128": errs["per_channel"] / max(errs["g128"], 1e-12)}

    def to_linear(self, granularity: Optional[str] = None, quantize_acts: bool = True) -> Linear:
        granularity = granularity or self.granularity
        variant, gs = self.variants[granularity], self.group_size(granularity)
        outliers = None
        if self.outliers is not None:
            o = self.outliers
            outliers = Outliers(o.channels, dequantize(o.codes, o.scales, len(o.channels)))
        return Linear(dequantize(variant.codes, variant.scales, gs),
                      input_hadamard_block=self.online_hadamard,
                      act_quant=ActQuant(gs, variant.act_clip_ratio) if quantize_acts else None,
                      outliers=outliers)


@dataclass
class QuantizedModel:
    """Everything a checkpoint holds."""
    config: ModelConfig
    float_tensors: dict  # token_embd / output / norms, float32
    layers: list         # QuantizedLinear, block-major in LINEAR_NAMES order
    meta: dict           # the "quantization" section of apex4.json
    kv_quant: Optional[KvCacheQuant] = None
    source: dict = field(default_factory=dict)

    def build_model(self) -> LlamaModel:
        t = self.float_tensors
        blocks = [Block(t[f"blk.{i}.attn_norm.weight"], t[f"blk.{i}.ffn_norm.weight"], {})
                  for i in range(self.config.num_layers)]
        for layer in self.layers:
            block, name = _split(layer.name)
            blocks[block].linears[name] = layer.to_linear()
        return LlamaModel(self.config, t["token_embd.weight"], t["output_norm.weight"],
                          t["output.weight"], blocks, self.kv_quant)


def _split(layer_name: str) -> tuple[int, str]:
    _, block, name = layer_name.split(".")
    return int(block), name


def _search_act_clip(samples: np.ndarray, reference: np.ndarray, linear: Linear,
                     group_size: int, fixed: Optional[float]) -> tuple[float, float]:
    """The clip ratio minimising ||Y_q - Y||^2 on the samples, and its relative error."""
    best = None
    for ratio in ((fixed,) if fixed is not None else ACT_CLIP_GRID):
        linear.act_quant = ActQuant(group_size, float(ratio))
        err = float(np.sum((linear.apply_prepared(samples) - reference) ** 2))
        if best is None or err < best[1]:
            best = (float(ratio), err)
    denom = float(np.sum(reference ** 2))
    return best[0], float(np.sqrt(best[1] / denom)) if denom > 0 else 0.0


def quantize_linear(name: str, weight: np.ndarray, stats: SiteStats, opts: QuantOptions,
                    online_hadamard: Optional[int]) -> QuantizedLinear:
    k = weight.shape[1]
    k_pad = padded_k(k)
    w = pad_k(weight, k_pad)
    # The float model's inputs are unpadded: padded channels are zero, so H gets zero rows.
    hessian = np.pad(stats.hessian, (0, k_pad - k))
    outliers = None
    if opts.method == "atom":
        count = max(1, round(k * ATOM_OUTLIER_FRACTION))
        channels = np.sort(np.argsort(stats.channel_rms()[:k])[-count:]).astype(np.int32)
        codes8, scales8 = quantize_symmetric(w[:, channels], count, 1.0, INT8_MAX)
        outliers = OutlierWeights(channels, codes8, scales8)
        w = w.copy()
        w[:, channels] = 0.0  # the INT4 part carries no outlier column
        hessian[channels, :] = 0.0
        hessian[:, channels] = 0.0
    layer = QuantizedLinear(name, k, k_pad, opts.granularity, {}, online_hadamard, outliers)
    samples = pad_k(stats.sample_matrix(), k_pad)
    reference = samples @ pad_k(weight, k_pad).T
    for granularity in GRANULARITIES:
        gs = layer.group_size(granularity)
        if opts.gptq:
            codes, scales = gptq(w, hessian, gs, opts.weight_clip_search)
        else:
            codes, scales = rtn(w, gs, opts.weight_clip_search)
        layer.variants[granularity] = WeightVariant(codes, scales, 1.0)
        linear = layer.to_linear(granularity)
        clip, err = _search_act_clip(samples, reference, linear, gs, opts.act_clip)
        layer.variants[granularity].act_clip_ratio = clip
        layer.variants[granularity].rel_err = err
    return layer


def _run_block(model: LlamaModel, layer: int, x: np.ndarray) -> np.ndarray:
    return np.concatenate([block_forward(model, layer, x[s:s + CALIB_BATCH], KvCache())
                           for s in range(0, len(x), CALIB_BATCH)])


def set_granularity(layers: list, granularity: str, g128_fraction: float = 0.5) -> None:
    """Uniform granularity, or mixed: the g128_fraction of layers whose error grows most from
    g128 to per-channel get g128, the rest per-channel (what a node's planner decides)."""
    if granularity != "mixed":
        for layer in layers:
            if granularity not in layer.variants:
                raise QuantizerError(f"{layer.name} has no {granularity} weights")
            layer.granularity = granularity
        return
    sensitivities = [layer.sensitivity() for layer in layers]
    if None in sensitivities:
        raise QuantizerError("mixed granularity needs both variants and their sensitivity")
    ratios = np.array([s["per_channel_over_g128"] for s in sensitivities])
    chosen = set(np.argsort(ratios)[::-1][:int(round(g128_fraction * len(layers)))].tolist())
    for i, layer in enumerate(layers):
        layer.granularity = "g128" if i in chosen else "per_channel"


def quantize_model(config: ModelConfig, weights: dict, tokenizer, opts: QuantOptions,
                   log=print) -> QuantizedModel:
    opts.validate()
    rotation = None
    if opts.method == "quarot":
        weights, rotation = rotate(config, weights, opts.seed)
    model = LlamaModel.from_weights(config, weights, ffn_down_hadamard=rotation is not None)
    calib = calibration_batch(tokenizer, opts.calib_path, opts.calib_seqs, opts.calib_len,
                              opts.seed)
    rng = np.random.default_rng(opts.seed)
    batches = -(-len(calib) // CALIB_BATCH)
    x = model.token_embd[calib]
    layers = []
    start = time.time()
    for i, block in enumerate(model.blocks):
        stats = {site[0]: SiteStats(CLIP_SEARCH_SAMPLES, -(-CLIP_SEARCH_SAMPLES // batches), rng,
                                    full_hessian=opts.gptq)
                 for site in SITES}
        for site, observer in stats.items():
            block.linears[site].observer = observer
        # One float pass per block gives both the statistics and the next block's input: every
        # block is calibrated on float inputs (non-sequential; one pass instead of two).
        x = _run_block(model, i, x)
        for name in LINEAR_NAMES:
            online = DOWN_HADAMARD_BLOCK if block.linears[name].input_hadamard_block else None
            layers.append(quantize_linear(f"blk.{i}.{name}", weights[f"blk.{i}.{name}.weight"],
                                          stats[SITE_OF[name]], opts, online))
        log(f"[quantize] block {i + 1}/{config.num_layers} done, {time.time() - start:.0f} s")
    set_granularity(layers, opts.granularity, opts.mixed_g128_fraction)
    kv_quant = None
    if opts.kv_bits == 4:
        kv_quant = KvCacheQuant(key_hadamard=rotation is not None)
    float_names = ["token_embd.weight", "output.weight", "output_norm.weight"] + [
        f"blk.{i}.{n}.weight" for i in range(config.num_layers) for n in ("attn_norm", "ffn_norm")]
    meta = {"method": opts.method + ("_gptq" if opts.gptq else "_rtn"),
            "weight_bits": 4, "act_bits": 4, "default_granularity": opts.granularity,
            "calibration": {"file": opts.calib_path.rsplit("/", 1)[-1],
                            "sequences": opts.calib_seqs, "seq_len": opts.calib_len,
                            "seed": opts.seed},
            "rotation": rotation}
    return QuantizedModel(config, {n: weights[n] for n in float_names}, layers, meta, kv_quant)

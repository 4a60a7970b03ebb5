"""Latency / FLOPs of the KV-cache path vs the recompute reference (backs `wambench bench latency`)."""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import torch

from wambench.policies.wam.flow import FlowSchedule, euler_sample
from wambench.policies.wam.hooks import BackboneInputs, cached_velocity


@dataclass
class LatencyRequest:
    policy: str = "imagewam_flux2"
    size: str = "tiny"
    device: str = "cpu"
    steps: int = 10
    batch: int = 1
    dtype: str | None = None
    repeat: int = 3
    text_len: int | None = None
    compile: bool | None = None
    recompute: bool = True


@dataclass
class LatencyResult:
    config: dict[str, Any]
    params_m: dict[str, float]
    prefix_ms: float
    step_ms: float
    cached_chunk_ms: float
    recompute_chunk_ms: float | None
    prefix_gflops: float
    step_gflops: float
    recompute_gflops: float
    cache_mb: float
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class BenchModel:
    """What the benchmark needs to know to feed a MoT: its name, text width and observation latent shape."""

    name: str
    build: Callable[[], Any]  # -> WamModel (called under the meta device)
    text_dim: int
    latent_shape: tuple[int, int, int]  # a 224x448 observation (two cameras side by side) as the backbone reads it
    text_len: int  # the real config's prompt length


BENCH_POLICIES = ("imagewam_flux2", "imagewam_flux2_9b", "imagewam_tiny", "imagewam_omnigen2", "imagewam_ovis_u1")


def _bench_model(policy: str, size: str) -> BenchModel:
    if policy not in BENCH_POLICIES:
        raise ValueError(f"bench latency supports {', '.join(BENCH_POLICIES)}; got {policy!r}")
    if policy in ("imagewam_omnigen2", "imagewam_ovis_u1"):
        from wambench.policies.wam.backbones import build_backbone, build_edit_model, edit_variant

        backbone, size = policy.removeprefix("imagewam_"), "tiny" if size == "tiny" else "real"
        spec = edit_variant(backbone, size)
        with torch.device("meta"):
            geometry = build_backbone(backbone, size)
        return BenchModel(f"{backbone}-{size}", lambda: build_edit_model(spec, action_dim=7, proprio_dim=8, horizon=16),
                          geometry.text_dim, (geometry.latent_channels, 28, 56), spec.text["max_length"])
    from wambench.policies.wam.backbones import flux2 as imagewam

    variant = imagewam.TINY if size == "tiny" or policy == "imagewam_tiny" else \
        imagewam.VARIANTS["9b" if policy == "imagewam_flux2_9b" else "4b"]
    tcfg = variant.transformer
    return BenchModel(variant.name, lambda: imagewam.build_model(variant, action_dim=7, proprio_dim=8, horizon=16),
                      tcfg["joint_attention_dim"], (tcfg["in_channels"], 14, 28), variant.max_text_length)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn: Callable[[], Any], device: torch.device, repeat: int) -> float:
    fn()  # warm-up (allocator, compilation, kernel selection)
    samples = []
    for _ in range(repeat):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        samples.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(samples)


def _flops(fn: Callable[[], Any]) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9


def build_random_model(req: LatencyRequest, device: torch.device, dtype: torch.dtype, log: Callable[[str], None]):
    """The policy's MoT at its real (or tiny) size with small random weights; no checkpoint needed."""
    spec = _bench_model(req.policy, req.size)
    with torch.device("meta"):
        model = spec.build()
    model = model.to_empty(device=device).to(dtype)
    log(f"initialising {sum(p.numel() for p in model.parameters()) / 1e9:.2f}B random parameters ({spec.name}, {dtype})")
    gen = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1:
                p.fill_(1.0)  # norm scales
            else:
                p.normal_(0.0, 0.02, generator=gen)
        for b in model.buffers():
            b.zero_()
    return spec, model.eval()


def run_latency(req: LatencyRequest, log: Callable[[str], None] = print) -> LatencyResult:
    device = torch.device(req.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda requested but torch sees no CUDA device")
    from wambench.policies.wam.loading import device_and_dtype

    _, dtype = device_and_dtype(device.type, req.dtype)
    use_compile = req.compile if req.compile is not None else device.type == "cuda"
    spec, model = build_random_model(req, device, dtype, log)
    text_len = req.text_len or (spec.text_len if req.size == "real" else 97)
    b = req.batch
    g = torch.Generator(device=device).manual_seed(1)
    text = torch.randn(b, text_len, spec.text_dim, device=device, dtype=dtype, generator=g)
    obs = torch.randn(b, *spec.latent_shape, device=device, dtype=dtype, generator=g)  # 224x448 -> 392 tokens
    proprio = torch.randn(b, 8, device=device, dtype=dtype, generator=g)
    noise = torch.randn(b, 16, model.action.cfg.action_dim, device=device, dtype=dtype, generator=g)
    t = torch.full((b,), 0.5, device=device, dtype=dtype)
    schedule = FlowSchedule(req.steps, 1.0)
    notes = []

    with torch.inference_mode():
        inputs: BackboneInputs = model.prefix_inputs(text, None, obs, proprio)
        cache = model.build_cache(inputs)
        velocity = lambda x, s: cached_velocity(model.action, cache, x, s)  # noqa: E731
        if use_compile:
            # reduce-overhead = inductor + CUDA-graph capture of the whole Euler step (static shapes)
            velocity = torch.compile(velocity, mode="reduce-overhead" if device.type == "cuda" else "default", dynamic=False)
            notes.append("action loop: torch.compile" + (" + CUDA graphs (reduce-overhead)" if device.type == "cuda" else ""))
        log("timing prefix pass")
        prefix_ms = _time(lambda: model.build_cache(inputs), device, req.repeat)
        log("timing one Euler step")
        step_ms = _time(lambda: velocity(noise, t), device, req.repeat)
        log("timing a whole chunk (cache path)")

        def chunk():
            fresh = model.build_cache(inputs)
            if not use_compile:
                return euler_sample(lambda x, s: cached_velocity(model.action, fresh, x, s), noise, schedule)
            # CUDA graphs replay fixed addresses: refill the captured cache in place.
            for dst, src in zip((*cache.k, *cache.v), (*fresh.k, *fresh.v)):
                dst.copy_(src)
            return euler_sample(velocity, noise, schedule)

        chunk_ms = _time(chunk, device, req.repeat)
        recompute_ms = None
        if req.recompute:
            log("timing a whole chunk (recompute reference)")
            recompute_ms = _time(lambda: model.sample(inputs, noise, schedule, "recompute"), device, max(1, req.repeat // 2))
        prefix_gf = _flops(lambda: model.build_cache(inputs))
        step_gf = _flops(lambda: cached_velocity(model.action, cache, noise, t))
        recompute_gf = _flops(lambda: model.sample(inputs, noise, FlowSchedule(1, 1.0), "recompute")) * req.steps

    params = {
        "video_expert": sum(p.numel() for p in model.video.parameters()) / 1e6,
        "action_expert": sum(p.numel() for p in model.action.parameters()) / 1e6,
    }
    config = {
        "policy": req.policy, "size": req.size, "variant": spec.name, "device": str(device),
        "dtype": str(dtype).replace("torch.", ""), "steps": req.steps, "batch": b, "text_tokens": text_len,
        "obs_tokens": 392, "compile": use_compile, "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        config["gpu"] = torch.cuda.get_device_name(device)
    return LatencyResult(config, params, prefix_ms, step_ms, chunk_ms, recompute_ms, prefix_gf, step_gf,
                         recompute_gf, cache.nbytes() / 2**20, notes)


def format_report(r: LatencyResult) -> str:
    c = r.config
    lines = [
        f"{c['policy']} [{c['variant']}] on {c.get('gpu', c['device'])} {c['dtype']}, batch {c['batch']}, "
        f"{c['steps']} Euler steps, {c['text_tokens']}+1 text + {c['obs_tokens']} obs tokens"
        f" (params: video {r.params_m['video_expert']:.0f}M, action {r.params_m['action_expert']:.0f}M)",
        f"  prefix pass       {r.prefix_ms:10.2f} ms   {r.prefix_gflops:10.2f} GFLOP   (KV cache {r.cache_mb:.1f} MiB)",
        f"  one Euler step    {r.step_ms:10.2f} ms   {r.step_gflops:10.2f} GFLOP",
        f"  chunk, cached     {r.cached_chunk_ms:10.2f} ms   {r.prefix_gflops + c['steps'] * r.step_gflops:10.2f} GFLOP",
    ]
    if r.recompute_chunk_ms is not None:
        lines.append(f"  chunk, recompute  {r.recompute_chunk_ms:10.2f} ms   {r.recompute_gflops:10.2f} GFLOP"
                     f"   (cache speed-up x{r.recompute_chunk_ms / r.cached_chunk_ms:.2f})")
    lines += [f"  note: {n}" for n in r.notes]
    return "\n".join(lines)

"""Where the time goes when extracting features on a CUDA GPU straight from JPEG files.

    python scripts/gpu_probe.py DATA_DIR OUT_JSON

DATA_DIR is an ImageFolder of JPEGs (e.g. aria_all_pbs_binary). Measures, each
section on its own so one failure does not hide the others: file reads, the
batched nvjpeg decode at several batch sizes (and whether it holds the GIL),
the bare bf16 forward, plain hand-written loops (the ceiling for a Python
pipeline), and ``extract_features`` itself in its variants (general loop vs the
JPEG pipeline, reader threads, read-ahead, batch size, cache on/off).
The figures behind docs/PERFORMANCE.md's GPU section.
"""

from __future__ import annotations

import json
import os
import queue
import statistics
import sys
import tempfile
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

RESULTS: dict[str, object] = {}
DEV = os.environ.get("PROBE_DEVICE", "cuda")  # "cpu": a dry run of the script's logic
DEV_TYPE = DEV.split(":")[0]
DRY = DEV_TYPE != "cuda"
BATCHES = (8,) if DRY else (256,)
STEPS = 1 if DRY else 20


def sync() -> None:
    if DEV_TYPE == "cuda":
        torch.cuda.synchronize()


def section(name):
    def wrap(fn):
        def run(*args):
            t = time.perf_counter()
            try:
                RESULTS[name] = fn(*args)
            except Exception:  # noqa: BLE001 - report and go on
                RESULTS[name] = {"error": traceback.format_exc(limit=6)}
            print(f"[{name}] {time.perf_counter() - t:.1f}s: {RESULTS[name]}", flush=True)

        run.__name__ = fn.__name__
        return run

    return wrap


class Event:
    """torch.cuda.Event, or a stand-in for the dry run."""

    def __init__(self) -> None:
        self.ev = torch.cuda.Event() if DEV_TYPE == "cuda" else None

    def record(self) -> None:
        if self.ev is not None:
            self.ev.record()

    def synchronize(self) -> None:
        if self.ev is not None:
            self.ev.synchronize()


def rate(fn, n, repeats=5, synced=True):
    fn()
    if synced:
        sync()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        if synced:
            sync()
        out.append(n / (time.perf_counter() - t))
    return round(statistics.median(out)), [round(r) for r in out]


def main(data: Path, out_json: Path) -> None:
    from torchvision.io import ImageReadMode, decode_jpeg

    from bench.extraction.jpeg_bytes import read_file

    paths = sorted(p for p in data.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
    n = len(paths)
    RESULTS["env"] = {
        "gpu": torch.cuda.get_device_name(0) if DEV == "cuda" else "cpu (dry run)",
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "images": n,
    }
    print(RESULTS["env"], flush=True)
    blobs = [read_file(p) for p in paths]
    tensors = [torch.frombuffer(b, dtype=torch.uint8) for b in blobs]

    @section("read_files")
    def _reads():
        res = {}
        res["python_readinto_serial"] = rate(lambda: [read_file(p) for p in paths], n, synced=False)
        from torchvision.io import read_file as tv_read

        res["torchvision_read_file_serial"] = rate(
            lambda: [tv_read(str(p)) for p in paths], n, synced=False
        )
        chunks = [paths[i : i + 256] for i in range(0, n, 256)]
        for k in (2,):
            with ThreadPoolExecutor(k) as pool:
                res[f"readinto_{k}_threads"] = rate(
                    lambda pool=pool: list(pool.map(lambda c: [read_file(p) for p in c], chunks)),
                    n,
                    synced=False,
                )
        return res

    @section("nvjpeg_decode")
    def _decode():
        res = {}
        for b in (128, 256, 512):

            def run(b=b):
                for i in range(0, n, b):
                    decode_jpeg(tensors[i : i + b], mode=ImageReadMode.RGB, device=DEV)

            res[f"batch_{b}"] = rate(run, n, repeats=3)
        return res

    @section("nvjpeg_gil")
    def _gil():
        """Does a Python thread keep running while another thread is inside decode_jpeg?"""

        def spin(seconds):
            end = time.perf_counter() + seconds
            k = 0
            while time.perf_counter() < end:
                k += 1
            return k

        alone = spin(0.3)
        done = threading.Event()
        count = {}

        def decoder():
            t = time.perf_counter()
            for i in range(0, n, 256):
                decode_jpeg(tensors[i : i + 256], mode=ImageReadMode.RGB, device=DEV)
            sync()
            count["decode_rate"] = round(n / (time.perf_counter() - t))
            done.set()

        th = threading.Thread(target=decoder)
        th.start()
        t = time.perf_counter()
        k = 0
        while not done.is_set():
            k += 1
        spun = time.perf_counter() - t
        th.join()
        return {
            "spin_per_s_alone": round(alone / 0.3),
            "spin_per_s_during_decode": round(k / spun),
            "decode_rate_while_spinning": count["decode_rate"],
        }

    from bench.extraction import extract_features, resize_uint8
    from bench.registry import get_registry

    alex = get_registry().build_backbone("alexnet", weights="none")
    model = alex.extractor.eval().to(DEV).to(memory_format=torch.channels_last)
    mean = torch.tensor(alex.mean, device=DEV).view(1, 3, 1, 1)
    std = torch.tensor(alex.std, device=DEV).view(1, 3, 1, 1)

    @section("bare_forward_alexnet")
    def _bare():
        res = {}
        for b in BATCHES:
            x = torch.randn(b, 3, 227, 227, device=DEV).contiguous(
                memory_format=torch.channels_last
            )

            def run(x=x):
                with torch.inference_mode(), torch.autocast(DEV_TYPE, dtype=torch.bfloat16):
                    for _ in range(STEPS):
                        model(x)

            res[f"batch_{b}"] = rate(run, STEPS * b, repeats=3)
        return res

    tv_read = torch.ops.image.read_file

    def step(encs):
        imgs = decode_jpeg(encs, mode=ImageReadMode.RGB, device=DEV)
        x = resize_uint8(torch.stack(imgs), 227, "bilinear")
        x = ((x.float() / 255 - mean) / std).contiguous(memory_format=torch.channels_last)
        return model(x).float()

    @section("plain_loops_alexnet")
    def _plain():
        res = {}
        for b in BATCHES:

            def in_memory_sync(b=b):  # the reference loop
                with torch.inference_mode(), torch.autocast(DEV_TYPE, dtype=torch.bfloat16):
                    for i in range(0, n, b):
                        step(tensors[i : i + b]).cpu()

            def files_one_behind(b=b):
                with torch.inference_mode(), torch.autocast(DEV_TYPE, dtype=torch.bfloat16):
                    prev = None
                    for i in range(0, n, b):
                        encs = [
                            torch.frombuffer(read_file(p), dtype=torch.uint8)
                            for p in paths[i : i + b]
                        ]
                        host = torch.empty((len(encs), 4096), pin_memory=DEV_TYPE == "cuda")
                        host.copy_(step(encs), non_blocking=True)
                        ev = Event()
                        ev.record()
                        if prev is not None:
                            prev[1].synchronize()
                            prev[0].numpy().copy()
                        prev = (host, ev)
                    prev[1].synchronize()

            def files_reader_thread(b=b):
                q: queue.Queue = queue.Queue(maxsize=4)

                def reader():
                    for i in range(0, n, b):
                        q.put(
                            [
                                torch.frombuffer(read_file(p), dtype=torch.uint8)
                                for p in paths[i : i + b]
                            ]
                        )
                    q.put(None)

                th = threading.Thread(target=reader)
                th.start()
                with torch.inference_mode(), torch.autocast(DEV_TYPE, dtype=torch.bfloat16):
                    prev = None
                    while (encs := q.get()) is not None:
                        host = torch.empty((len(encs), 4096), pin_memory=DEV_TYPE == "cuda")
                        host.copy_(step(encs), non_blocking=True)
                        ev = Event()
                        ev.record()
                        if prev is not None:
                            prev[1].synchronize()
                            prev[0].numpy().copy()
                        prev = (host, ev)
                    prev[1].synchronize()
                th.join()

            def files_upfront(b=b):  # every file read first (C++ reader), then decode
                encs_all = [tv_read(str(p)) for p in paths]
                with torch.inference_mode(), torch.autocast(DEV_TYPE, dtype=torch.bfloat16):
                    prev = None
                    for i in range(0, n, b):
                        encs = encs_all[i : i + b]
                        host = torch.empty((len(encs), 4096), pin_memory=DEV_TYPE == "cuda")
                        host.copy_(step(encs), non_blocking=True)
                        ev = Event()
                        ev.record()
                        if prev is not None:
                            prev[1].synchronize()
                            prev[0].numpy().copy()
                        prev = (host, ev)
                    prev[1].synchronize()

            res[f"in_memory_sync_b{b}"] = rate(in_memory_sync, n, repeats=3)
            res[f"files_reader_thread_b{b}"] = rate(files_reader_thread, n, repeats=3)
            res[f"files_upfront_b{b}"] = rate(files_upfront, n, repeats=3)
        return res

    from bench.data.imageset import Samples, file_digest
    from bench.data.loaders import load_imagefolder
    from bench.feature_cache import FeatureCache

    if DRY:  # exercise the JPEG pipeline's code on the CPU
        import bench.extraction.extract as face

        face.JPEG_DIRECT_DEVICES = ("cuda", "cpu")
        face.CPU_LANES = False
    iset = load_imagefolder(data)
    digests = [file_digest(p) for p in iset.paths]
    samples = Samples.originals(iset)

    import bench.extraction.jpeg_pipeline as gp

    def e2e(bb, *, pipeline="auto", workers=None, batch=None, cache=False, repeats=5, **knobs):
        os.environ["LEUKOBENCH_GPU_PIPELINE"] = pipeline
        saved = {k: getattr(gp, k) for k in knobs}
        for k, v in knobs.items():
            setattr(gp, k, v)
        rates, stats = [], None
        try:
            for i in range(repeats + 1):
                with tempfile.TemporaryDirectory() as tmp:
                    c = FeatureCache(Path(tmp)) if cache else None
                    t = time.perf_counter()
                    r = extract_features(
                        samples,
                        bb,
                        digests=digests,
                        cache=c,
                        device=DEV,
                        progress=False,
                        workers=workers,
                        batch_size=batch,
                    )
                    dt = time.perf_counter() - t
                assert r.n_computed == len(samples)
                if i:
                    rates.append(len(samples) / dt)
                    stats = r.stats
        finally:
            for k, v in saved.items():
                setattr(gp, k, v)
            os.environ.pop("LEUKOBENCH_GPU_PIPELINE", None)
        return {
            "median": round(statistics.median(rates)),
            "runs": [round(r) for r in rates],
            "last_stats": stats,
        }

    @section("e2e_alexnet")
    def _e2e():
        res = {}
        res["classic"] = e2e(alex, pipeline="classic")
        res["direct_default"] = e2e(alex, repeats=9)
        res["direct_read_ahead_4"] = e2e(alex, READ_AHEAD=4)
        res["direct_batch_128"] = e2e(alex, batch=128)
        res["direct_batch_512"] = e2e(alex, batch=512)
        res["direct_cache_on"] = e2e(alex, cache=True)
        res["direct_default_again"] = e2e(alex, repeats=9)
        return res

    @section("e2e_efficientnet_lite0_random_weights")
    def _eff():
        eff = get_registry().build_backbone("efficientnet_lite0", weights="none")
        eff.extractor.to(DEV)
        x = torch.randn(BATCHES[0], 3, eff.input_size, eff.input_size, device=DEV).contiguous(
            memory_format=torch.channels_last
        )
        m = eff.extractor.eval().to(memory_format=torch.channels_last)

        def run():
            with torch.inference_mode(), torch.autocast(DEV_TYPE, dtype=torch.float16):
                for _ in range(STEPS):
                    m(x)

        return {
            "bare_fp16": rate(run, STEPS * BATCHES[0], repeats=3),
            "direct": e2e(eff),
            "direct_cache_on": e2e(eff, cache=True, repeats=3),
        }

    @section("alexnet_cuda_vs_cpu_features")
    def _match():
        import numpy as np

        sub = iset.subset(np.arange(0, len(iset), max(1, len(iset) // 64))[:64])
        d = [file_digest(p) for p in sub.paths]
        s = Samples.originals(sub)
        gpu = extract_features(s, alex, digests=d, cache=None, device=DEV, progress=False)
        alex.extractor.cpu()
        cpu = extract_features(s, alex, digests=d, cache=None, device="cpu", progress=False)
        alex.extractor.to(DEV)
        g, c = gpu.features, cpu.features
        cos = (g * c).sum(1) / (np.linalg.norm(g, axis=1) * np.linalg.norm(c, axis=1))
        return {
            "pipeline": gpu.stats.get("pipeline"),
            "max_rel_diff": float(np.abs(g - c).max() / np.abs(c).max()),
            "min_cosine": float(cos.min()),
        }

    only = os.environ.get("PROBE_ONLY", "")
    for fn in (_reads, _decode, _gil, _bare, _plain, _e2e, _eff, _match):
        if only and fn.__name__.strip("_") not in only.split(","):
            continue
        fn()
        out_json.write_text(json.dumps(RESULTS, indent=1, default=str))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))

"""The ``ray`` executor on real Ray clusters: identical records, faults, Ctrl-C, a `ray start` head.

One local cluster (``ray.init(num_cpus=2, include_dashboard=False)``) serves the
in-process tests of this module; the CLI tests start their own drivers (and one
starts its own head with ``ray start``). Nothing here mocks Ray.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray", reason="the ray extra is not installed")

from bench.cli import main  # noqa: E402
from bench.data.prepare import prepare_data  # noqa: E402
from bench.errors import UserError  # noqa: E402
from bench.protocols.base import Job, Protocol, Resources  # noqa: E402
from bench.protocols.context import CacheRoot, RunContext  # noqa: E402
from bench.registry import get_registry  # noqa: E402
from bench.runner import run_suite  # noqa: E402
from bench.strict_json import plain  # noqa: E402
from bench.suite import load_suite  # noqa: E402
from plugins.ray_executor.executor import RayExecutor  # noqa: E402

# Workers import the engine and plugins as installed; this module's own classes travel by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

REPO = Path(__file__).resolve().parents[1]

MODEL1 = """
[suite]
name = "ray-model1"
[data]
dataset = "synthetic"
options = { n_per_class = 8, size = 64 }
[[protocol]]
kind = "features"
backbones = ["timm/test_resnet", "timm/test_efficientnet"]
classifiers = ["lda", "knn1", "svm-linear"]
folds = 2
[backbone."timm/test_resnet"]
weights = "none"
[backbone."timm/test_efficientnet"]
weights = "none"
"""

FINETUNE = """
[suite]
name = "ray-finetune"
[data]
dataset = "synthetic"
options = { n_per_class = 6, size = 64 }
[[protocol]]
kind = "finetune"
backbones = ["timm/test_resnet"]
folds = 2
settings = { epochs = 1, batch_size = 4, lr = 1e-3, optimizer = "adamw" }
[backbone."timm/test_resnet"]
weights = "none"
"""

# Model 1 first (its cells are recorded early), then fine-tuning to interrupt.
INTERRUPTIBLE = """
[suite]
name = "ray-ctrl-c"
[data]
dataset = "synthetic"
options = { n_per_class = 6, size = 64 }
[[protocol]]
kind = "features"
backbones = ["timm/test_efficientnet"]
classifiers = ["lda", "knn1"]
folds = 2
[[protocol]]
kind = "finetune"
backbones = ["timm/test_resnet"]
folds = 2
settings = { epochs = 3, batch_size = 4, lr = 1e-3, optimizer = "adamw" }
[backbone."timm/test_resnet"]
weights = "none"
[backbone."timm/test_efficientnet"]
weights = "none"
"""

# What legitimately differs between two runs of one suite: names, clocks, where caches are.
VOLATILE_TOP = {"run_id", "started", "finished", "timings", "environment"}
VOLATILE_FOLD = {"fit_s"}
VOLATILE_TRAINING = {"images_per_s", "checkpoints"}


@pytest.fixture(scope="module")
def ray_local():
    """A real local Ray cluster of 2 CPUs for the in-process tests of this module."""
    if ray.is_initialized():
        ray.shutdown()
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def model1_local(tmp_path_factory) -> tuple[Path, dict[str, Any]]:
    """The Model 1 suite run once by the local executor: (its cache root, its record)."""
    root = tmp_path_factory.mktemp("model1-local")
    suite = _suite_file(root, MODEL1)
    return root / "cache-local", _run(root, suite, "local", "local")


def comparable(record: Mapping[str, Any], *, resumed: bool = False) -> str:
    """A record without what may differ between equal runs (ids, clocks, cache paths), as JSON.

    Strict JSON text as the record file holds it (:func:`bench.strict_json.plain`: NaN metrics
    of a 0/0 become null), so a record returned in memory and one read back from its file
    compare equal, bit for bit like every other number.
    ``resumed``: also leave out ``predictions_from_cache`` (true where a rerun reused them).
    """
    out = {k: v for k, v in record.items() if k not in VOLATILE_TOP}
    cells = []
    for cell in record["cells"]:
        cell = dict(cell)
        if resumed:
            cell.pop("predictions_from_cache", None)
        cell["folds"] = [
            {k: v for k, v in f.items() if k not in VOLATILE_FOLD} for f in cell["folds"]
        ]
        if "training" in cell:
            cell["training"] = {
                k: v for k, v in cell["training"].items() if k not in VOLATILE_TRAINING
            }
        cells.append(cell)
    out["cells"] = cells
    out["suite"] = {k: v for k, v in record["suite"].items() if k != "path"}
    return json.dumps(plain(out), sort_keys=True)


def cache_keys(root: Path) -> set[str]:
    """Every content-addressed file name in a cache root: predictions and fine-tuning state.

    (Feature packs have random names; :func:`assert_same_features` checks their keys.)
    """
    keep = ("predictions", "runs")
    return {
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and str(p.relative_to(root)).startswith(keep)
    }


def assert_same_features(suite_file: Path, roots: list[Path]) -> None:
    """Both caches hold exactly the feature keys the suite's Model 1 tables need."""
    from bench.extraction import sample_keys
    from bench.feature_cache import FeatureCache

    registry = get_registry()
    suite = load_suite(str(suite_file), registry=registry)
    data = prepare_data(suite, registry, cache_dir=roots[0])
    ctx = RunContext(suite, registry, data, "cpu", CacheRoot(roots[0]), progress=False)
    keys: set[str] = set()
    for table in suite.protocols:
        if table["kind"] == "features":
            samples = ctx.samples(table["augment"], suite.seeds[0])
            for name in table["backbones"]:
                keys |= set(sample_keys(samples, ctx.backbone(name), data.digests, ctx.mask, "cpu"))
    for root in roots:
        cache = FeatureCache(root)
        assert cache.count(keys) == len(keys) == cache.info()["entries"]


def _suite_file(tmp_path: Path, text: str, name: str = "suite.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _run(tmp_path: Path, suite_file: Path, tag: str, executor: Any) -> dict[str, Any]:
    registry = get_registry()
    suite = load_suite(str(suite_file), registry=registry)
    record, _ = run_suite(
        suite,
        registry=registry,
        results_dir=tmp_path / f"results-{tag}",
        progress=False,
        cache_dir=tmp_path / f"cache-{tag}",
        executor=executor,
    )
    return record


def assert_same_run(suite_file: Path, local: dict, other: dict, roots: list[Path]) -> None:
    """Same record (but ids and clocks), same cache keys: predictions, run state, features."""
    assert other["status"] == local["status"] == "complete"
    assert comparable(other) == comparable(local)
    a, b = (cache_keys(r) for r in roots)
    assert a and a == b
    assert_same_features(suite_file, roots)


# -- a few lines of test protocol -------------------------------------------------------------
class Tiny(Protocol):
    """Jobs that add numbers along their dependencies, and may sleep, touch a file or fail."""

    name = "tiny"

    def cells(self, table, index, seed):
        return []

    def plan(self, ctx, table, index, seed):
        return []

    def jobs(self, ctx, table, index, seed, cells):
        return []

    def run_job(self, ctx, job, inputs):
        import torch

        p = job.payload
        if p.get("sleep"):
            time.sleep(p["sleep"])
        if p.get("touch"):
            Path(p["touch"]).write_text(job.id)
        if p.get("fail"):
            raise UserError(p["fail"])
        return {
            "sum": p.get("value", 0) + sum(r["sum"] for r in inputs.values()),
            "pid": os.getpid(),
            "ctx": id(ctx),
            "threads": torch.get_num_threads(),
            "gpus": os.environ.get("CUDA_VISIBLE_DEVICES"),
        }

    def assemble(self, ctx, table, index, seed, cells, results):
        return []


class KillsItsWorkerOnce(Protocol):
    """Another protocol's jobs, except that one job ends its worker process the first time."""

    def __init__(self, inner: Protocol, job_id: str, marker: Path) -> None:
        self.inner, self.job_id, self.marker = inner, job_id, marker
        self.name = inner.name

    def cells(self, *a):
        return self.inner.cells(*a)

    def plan(self, *a):
        return self.inner.plan(*a)

    def jobs(self, *a):
        return self.inner.jobs(*a)

    def assemble(self, *a):
        return self.inner.assemble(*a)

    def run_job(self, ctx, job, inputs):
        if job.id == self.job_id and not self.marker.exists():
            self.marker.write_text(str(os.getpid()))
            os._exit(1)  # the worker dies mid-job: no exception, no result
        return self.inner.run_job(ctx, job, inputs)


class KillingRayExecutor(RayExecutor):
    """The ray executor, running protocols whose chosen job kills its worker once."""

    def __init__(self, pick: str, marker: Path) -> None:
        super().__init__()
        self.pick, self.marker = pick, marker

    def run(self, ctx, protocol, jobs, on_result=None):
        victim = next(j.id for j in jobs if j.kind == self.pick)
        wrapped = KillsItsWorkerOnce(protocol, victim, self.marker)
        return super().run(ctx, wrapped, jobs, on_result)


@pytest.fixture
def tiny_ctx(tmp_path):
    """A real run context of a small synthetic suite (what the tiny jobs receive)."""
    registry = get_registry()
    suite = load_suite(str(_suite_file(tmp_path, MODEL1)), registry=registry)
    data = prepare_data(suite, registry, cache_dir=tmp_path / "cache")
    return RunContext(
        suite=suite,
        registry=registry,
        data=data,
        device="cpu",
        cache=CacheRoot(tmp_path / "cache"),
        progress=False,
    )


def _job(i: str, deps: tuple[str, ...] = (), **payload: Any) -> Job:
    return Job(id=i, protocol="tiny", kind="t", payload=payload, deps=deps)


# -- the executor on its own ------------------------------------------------------------------
def test_dependencies_arrive_and_each_worker_opens_the_context_once(ray_local, tiny_ctx):
    jobs = [_job(f"a{i}", value=i) for i in range(4)]
    jobs += [_job("b", tuple(j.id for j in jobs), value=100), _job("c", ("b",), value=1000)]
    seen: list[str] = []
    ex = RayExecutor()
    out = ex.run(tiny_ctx, Tiny(), jobs, lambda job, result, s: seen.append(job.id))
    again = ex.run(tiny_ctx, Tiny(), [_job("d", value=7)])
    ex.close()
    assert out["b"]["sum"] == 100 + 0 + 1 + 2 + 3 and out["c"]["sum"] == 1106
    assert sorted(seen) == sorted(j.id for j in jobs) and seen[-2:] == ["b", "c"]
    ctx_per_pid: dict[int, set[int]] = {}
    for r in [*out.values(), again["d"]]:
        ctx_per_pid.setdefault(r["pid"], set()).add(r["ctx"])
    assert all(len(ids) == 1 for ids in ctx_per_pid.values())  # opened once per worker
    assert {r["threads"] for r in out.values()} == {__import__("torch").get_num_threads()}


def test_a_failing_job_raises_its_own_error_and_cancels_the_rest(ray_local, tiny_ctx, tmp_path):
    jobs = [
        _job("bad", fail="job says no"),
        _job("after", ("bad",), touch=str(tmp_path / "after")),
    ]
    with pytest.raises(UserError, match="job says no"):
        RayExecutor().run(tiny_ctx, Tiny(), jobs)
    assert not (tmp_path / "after").exists()


def test_keyboard_interrupt_cancels_outstanding_jobs(ray_local, tiny_ctx, tmp_path):
    jobs = [_job("quick", value=1)]
    jobs += [_job(f"slow{i}", sleep=20, touch=str(tmp_path / f"slow{i}")) for i in range(3)]

    def interrupt(job, result, seconds):
        raise KeyboardInterrupt

    started = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        RayExecutor().run(tiny_ctx, Tiny(), jobs, interrupt)
    assert time.perf_counter() - started < 15
    time.sleep(1.0)
    assert not list(tmp_path.glob("slow*"))  # cancelled: none ran to its end


def test_a_gpu_job_on_a_cluster_without_gpus_exits_2_naming_it(ray_local, tiny_ctx):
    job = Job(id="needs-gpu", protocol="tiny", kind="t", resources=Resources(gpus=1))
    with pytest.raises(UserError, match=r"'needs-gpu' needs 1 GPU.*ray start --num-gpus"):
        RayExecutor().run(tiny_ctx, Tiny(), [job])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_ray_address_exits_2_naming_it(tmp_path, capsys):
    suite = _suite_file(tmp_path, MODEL1)
    address = f"127.0.0.1:{_free_port()}"
    code = main(["run", str(suite), "--ray-address", address, "--results-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and f"--ray-address '{address}'" in err and "ray start --head" in err
    assert main(["run", str(suite), "--ray-address", "nowhere"]) == 2
    assert "expected auto, HOST:PORT" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.json"))


def test_without_ray_installed_the_executor_exits_2_naming_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` sees when it is absent
    code = main(["run", str(_suite_file(tmp_path, MODEL1)), "--executor", "ray"])
    assert code == 2 and "pip install 'leukobench[ray]'" in capsys.readouterr().err


# -- whole suites: the same record as the local executor ----------------------------------------
@pytest.mark.slow
def test_model1_two_backbones_give_the_local_record(ray_local, model1_local, tmp_path):
    suite = _suite_file(tmp_path, MODEL1)
    on_ray = _run(tmp_path, suite, "ray", "ray")
    assert_same_run(suite, model1_local[1], on_ray, [model1_local[0], tmp_path / "cache-ray"])


@pytest.mark.slow
def test_finetune_folds_give_the_local_record(ray_local, tmp_path):
    suite = _suite_file(tmp_path, FINETUNE)
    local = _run(tmp_path, suite, "local", "local")
    on_ray = _run(tmp_path, suite, "ray", "ray")
    assert_same_run(suite, local, on_ray, [tmp_path / "cache-local", tmp_path / "cache-ray"])


@pytest.mark.slow
def test_a_job_that_kills_its_worker_is_retried_to_the_same_record(
    ray_local, model1_local, tmp_path
):
    suite = _suite_file(tmp_path, MODEL1)
    marker = tmp_path / "killed-once"
    on_ray = _run(tmp_path, suite, "ray", KillingRayExecutor("fit", marker))
    assert marker.exists()  # the worker did die once
    assert_same_run(suite, model1_local[1], on_ray, [model1_local[0], tmp_path / "cache-ray"])


# -- the command line: Ctrl-C, and a cluster started with `ray start` -----------------------------
def _cli(*args: str, env: dict[str, str], **kw: Any) -> subprocess.Popen:
    code = "import sys; from bench.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def _env(cache: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(LEUKOBENCH_CACHE=str(cache), COLUMNS="200", **extra)
    return env


def _record(results: Path) -> dict[str, Any]:
    files = sorted(results.glob("*.json"), key=lambda p: p.stat().st_mtime)
    return json.loads(files[-1].read_text())


@pytest.mark.slow
def test_ctrl_c_exits_130_keeps_finished_work_and_a_rerun_is_identical(ray_local, tmp_path):
    suite = _suite_file(tmp_path, INTERRUPTIBLE)
    cache, results = tmp_path / "cache-ray", tmp_path / "results-ray"
    args = ("run", str(suite), "--executor", "ray", "--results-dir", str(results), "--no-progress")
    proc = _cli(*args, env=_env(cache))
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline and proc.poll() is None:
        files = list(results.glob("*.json"))
        if files and json.loads(files[0].read_text() or "{}").get("cells"):
            break  # the Model 1 cells are in: fine-tuning is running
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    interrupted = _record(results)
    assert interrupted["status"] == "incomplete"
    done = {c["id"] for c in interrupted["cells"]}
    assert done and all(c["status"] == "complete" for c in interrupted["cells"])
    kept = cache_keys(cache)
    assert any(k.startswith("predictions") for k in kept)

    rerun = _cli(*args, env=_env(cache))
    _, err = rerun.communicate(timeout=240)
    assert rerun.returncode == 0, err
    resumed = _record(results)
    assert resumed["status"] == "complete"
    assert all(c["predictions_from_cache"] for c in resumed["cells"] if c["id"] in done)
    local = _run(tmp_path, suite, "local", "local")
    assert comparable(resumed, resumed=True) == comparable(local, resumed=True)


@pytest.mark.slow
def test_a_suite_on_a_cluster_started_with_ray_start(model1_local, tmp_path):
    ray_bin = Path(sys.executable).with_name("ray")
    temp_dir = Path("/tmp") / f"lbray-{os.getpid()}"  # short: Ray's socket paths must fit
    port = _free_port()
    ports = {
        "--port": port,
        "--node-manager-port": _free_port(),
        "--object-manager-port": _free_port(),
        "--dashboard-agent-listen-port": _free_port(),
        "--dashboard-agent-grpc-port": _free_port(),
        "--metrics-export-port": _free_port(),
        "--runtime-env-agent-port": _free_port(),
    }
    worker_low = 20000 + (os.getpid() % 200) * 100
    # token authentication, as Ray 2.60 sets up by default; head and driver share the token
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": uuid.uuid4().hex}
    head = subprocess.Popen(
        [
            str(ray_bin),
            "start",
            "--head",
            "--block",
            "--node-ip-address=127.0.0.1",
            "--include-dashboard=false",
            "--num-cpus=2",
            f"--temp-dir={temp_dir}",
            f"--min-worker-port={worker_low}",
            f"--max-worker-port={worker_low + 99}",
            *(f"{flag}={value}" for flag, value in ports.items()),
        ],
        env=_env(tmp_path / "head-cache", **auth),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: stopped as one, nothing else touched
    )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert head.poll() is None, head.communicate()[1]
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.5)
        suite = _suite_file(tmp_path, MODEL1)
        cache, results = tmp_path / "cache-ray", tmp_path / "results-ray"
        args = ("run", str(suite), "--ray-address", f"127.0.0.1:{port}")
        proc = _cli(*args, "--results-dir", str(results), "--no-progress", env=_env(cache, **auth))
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
        on_cluster = _record(results)
    finally:
        # `ray start --block` stops what it started; its own group holds nothing else
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=90)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert_same_run(suite, model1_local[1], on_cluster, [model1_local[0], cache])

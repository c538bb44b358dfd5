"""Dask against Ray for lbml's sweeps: cluster start, task overhead and a CPU-bound batch, one run.

lbml's sweeps (walk-forward periods, CV/CPCV folds, robustness variants) are a few to a few dozen
independent tasks of seconds to minutes each, whose inputs are a scenario, a market and a pipeline.
What decides between the two engines is then the cost of starting a local cluster, the overhead per
task, and the speed-up on a CPU-bound batch — all measured here in one process, against a serial
baseline of the same batch in the same run.

Ray is not one of lbml's dependencies: run this in an environment that has ``ray`` and
``dask[distributed]`` installed, e.g.
``OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python -m benchmarks.bench_schedulers --workers 2``.
"""

import argparse
import json
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one BLAS thread per task, as lbml's sweeps run
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402  (after the thread settings)


def cpu_task(seed: int, market: np.ndarray, n: int = 500) -> float:
    """A CPU-bound task of about a second on one thread, reading a shared input like a sweep's market."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, n))
    acc = float(market[seed::97].sum())
    for _ in range(320):
        a = np.tanh(a @ a.T / n)
        acc += float(a.trace())
    return acc


def tiny_task(x: int) -> int:
    return x + 1


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def bench_dask(workers: int, batch: list[int], n_tiny: int, market: np.ndarray) -> dict:
    from dask.distributed import Client, LocalCluster

    start, (cluster, client) = _timed(lambda: _dask_cluster(LocalCluster, Client, workers))
    try:
        tiny, _ = _timed(lambda: client.gather(client.map(tiny_task, range(n_tiny), pure=False)))

        def run():
            shared = client.scatter(market, broadcast=True)
            return client.gather(client.map(cpu_task, batch, market=shared, pure=False))

        cpu, results = _timed(run)
    finally:
        client.close()
        cluster.close()
    return {"start_s": start, "tiny_tasks_s": tiny, "cpu_batch_s": cpu, "results": results}


def _dask_cluster(LocalCluster, Client, workers: int):
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
    return cluster, Client(cluster)


def bench_ray(workers: int, batch: list[int], n_tiny: int, market: np.ndarray) -> dict:
    import ray

    start, _ = _timed(lambda: ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False))
    try:
        remote_tiny = ray.remote(tiny_task)
        remote_cpu = ray.remote(cpu_task)
        tiny, _ = _timed(lambda: ray.get([remote_tiny.remote(i) for i in range(n_tiny)]))

        def run():
            shared = ray.put(market)
            return ray.get([remote_cpu.remote(s, shared) for s in batch])

        cpu, results = _timed(run)
    finally:
        ray.shutdown()
    return {"start_s": start, "tiny_tasks_s": tiny, "cpu_batch_s": cpu, "results": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--tasks", type=int, default=8, help="CPU-bound tasks in the batch")
    parser.add_argument("--tiny", type=int, default=500, help="trivial tasks for the per-task overhead")
    parser.add_argument("--market-mb", type=float, default=40.0, help="size of the input every task reads")
    args = parser.parse_args()
    batch = list(range(args.tasks))
    market = np.random.default_rng(0).standard_normal(int(args.market_mb * 2**20 / 8))
    serial_s, serial = _timed(lambda: [cpu_task(s, market) for s in batch])
    rows = {"serial": {"cpu_batch_s": serial_s}}
    for name, bench in (("dask", bench_dask), ("ray", bench_ray)):
        out = bench(args.workers, batch, args.tiny, market)
        # same answers as the serial loop (to rounding: BLAS may split sums differently per process)
        assert np.allclose(out.pop("results"), serial, rtol=1e-9, atol=0), f"{name}: results differ from serial"
        out["speed_up"] = serial_s / out["cpu_batch_s"]
        out["overhead_per_tiny_task_ms"] = 1000 * out["tiny_tasks_s"] / args.tiny
        rows[name] = out
    print(json.dumps({"workers": args.workers, "tasks": args.tasks, "market_mb": args.market_mb, "load_average": os.getloadavg(), **rows}, indent=2))


if __name__ == "__main__":
    main()

"""The job's heavy steps on a running Dask cluster (``cluster:`` in the job config).

What runs where: the client (the job) reads the logs, owns the embedding cache and MLflow, and
exports the router; the workers embed the prompts the cache lacks, one task per
``partition_size`` prompts, and train the LightGBM heads (the job passes its client to
``LGBMRouter.fit(..., client=)``, which trains through ``lightgbm.dask``). Results have the same
form as the local path's: float32 vectors under the same embedder id, and plain LightGBM
boosters, so the exported router never needs the cluster.

The workers need this package and the embedder's weights installed (``pip install
'learned-router[cluster]'``): tasks are functions of this module, and each worker checks that its
embedder id (weights, settings, ONNX recipe) equals the client's before its vectors are used.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from pipelines.config import ClusterConfig
from router.embed import Embedder

INSTALL_HINT = "pip install 'learned-router[cluster]'"

# On a worker: the loaded embedder per embedder id, shared by the worker's task threads.
_WORKER_EMBEDDERS: dict[str, Embedder] = {}
_WORKER_LOCK = threading.Lock()


def connect(cluster: ClusterConfig | str):
    """A ``distributed.Client`` to the scheduler at ``cluster`` (a config or an address).

    Waits up to ``timeout`` seconds for the scheduler and for a first worker, and checks that the
    workers can run this package's code; each failure names the address.
    """
    cfg = cluster if isinstance(cluster, ClusterConfig) else ClusterConfig(address=cluster)
    try:
        from distributed import Client
    except ImportError as exc:
        raise RuntimeError(f"cluster {cfg.address!r}: the Dask client is not installed ({INSTALL_HINT})") from exc
    try:
        client = Client(cfg.address, timeout=cfg.timeout, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ConnectionError(
            f"cannot connect to the Dask scheduler at {cfg.address!r} within {cfg.timeout:g}s ({exc}); check that "
            f"the scheduler runs and is reachable from here, and that its workers have this package "
            f"installed ({INSTALL_HINT})"
        ) from None
    try:
        client.wait_for_workers(1, timeout=cfg.timeout)
    except (OSError, TimeoutError) as exc:
        client.close()
        raise ConnectionError(f"the Dask scheduler at {cfg.address!r} has no workers after {cfg.timeout:g}s") from exc
    try:
        client.run(_worker_check)
    except Exception as exc:  # an ImportError on the worker arrives as whatever it raised there
        client.close()
        raise RuntimeError(
            f"the workers of the Dask scheduler at {cfg.address!r} cannot run learned-router tasks ({exc!r}); "
            f"install this package on every worker ({INSTALL_HINT})"
        ) from exc
    return client


def _worker_check() -> bool:
    """Runs on each worker at connect time: unpickling this function (importing this module) is the check."""
    return True


def total_threads(client) -> int:
    """Task slots in the cluster: the sum of its workers' threads."""
    return sum(int(n) for n in client.nthreads().values()) or 1


class ClusterEmbedder:
    """An ``Embedder`` whose ``encode`` runs as Dask tasks, ``partition_size`` prompts each.

    ``partition_size``: at most this many prompts per task (the job's ``cluster.partition_size``);
    fewer prompts than that per worker thread are split evenly across the threads. Same ``id`` and
    ``settings()`` as the wrapped embedder, so ``embed_with_cache(ClusterEmbedder(...),
    prompts, cache)`` sends only uncached prompts to the cluster and writes the cache on the client.
    Each worker process loads the embedder once (on its first task) and keeps it. An embedder with
    ``threads=None`` runs one thread per task on the workers: Dask already runs as many tasks at once
    as the worker has threads.
    """

    def __init__(self, embedder: Embedder, client, partition_size: int) -> None:
        if partition_size < 1:
            raise ValueError(f"partition_size must be >= 1, got {partition_size}")
        self.embedder = embedder
        self.client = client
        self.partition_size = partition_size

    @property
    def id(self) -> str:
        return self.embedder.id

    def settings(self) -> dict[str, object]:
        return self.embedder.settings()

    @property
    def dimension(self) -> int:
        return int(self.client.submit(_worker_dimension, self.embedder, self.id, pure=False).result())

    @property
    def chunk_size(self) -> int:
        """Prompts per ``embed_with_cache`` chunk that keep every worker thread busy twice over."""
        return self.partition_size * total_threads(self.client) * 2

    def partitions(self, n: int) -> list[tuple[int, int]]:
        """(start, stop) of each task for ``n`` prompts: at most ``partition_size`` each, and at least
        one per worker thread while there are prompts to share (a nightly job's few hundred new prompts
        in one 1,024-prompt task would leave every other worker idle: 82 vs 147 prompts/s on 2 workers)."""
        if n <= 0:
            return []
        size = min(self.partition_size, -(-n // total_threads(self.client)))
        return [(lo, min(lo + size, n)) for lo in range(0, n, size)]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32, row-aligned with ``texts``, computed on the workers."""
        texts = [str(t) for t in texts]
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        parts = [texts[lo:hi] for lo, hi in self.partitions(len(texts))]
        # The embedder pickles without its loaded model (a few hundred bytes), so it rides with each task.
        futures = self.client.map(_worker_encode, [self.embedder] * len(parts), [self.id] * len(parts), parts,
                                  pure=False)
        try:
            vectors = self.client.gather(futures)  # in submission order
        finally:
            self.client.cancel(futures)
        return np.ascontiguousarray(np.concatenate(vectors), dtype=np.float32)

    def __repr__(self) -> str:
        return f"ClusterEmbedder({self.embedder!r}, partition_size={self.partition_size})"


# ------------------------------------------------------------------------- on the workers


def _worker_embedder(embedder: Embedder, expected_id: str) -> Embedder:
    """This worker's loaded copy of ``embedder`` (loaded on first use, then kept)."""
    with _WORKER_LOCK:
        loaded = _WORKER_EMBEDDERS.get(expected_id)
        if loaded is None:
            worker_id = embedder.id
            if worker_id != expected_id:
                raise RuntimeError(
                    f"embedder mismatch on this worker: its embedder id is {worker_id!r}, the client's is "
                    f"{expected_id!r}; install the same learned-router and embedder versions on the workers"
                )
            loaded = Embedder.from_settings(embedder.settings(), threads=embedder.threads or 1,
                                            device=embedder.device, show_progress=False)
            loaded.load()
            _WORKER_EMBEDDERS[expected_id] = loaded
    return loaded


def _worker_encode(embedder: Embedder, expected_id: str, texts: list[str]) -> np.ndarray:
    return _worker_embedder(embedder, expected_id).encode(texts)


def _worker_dimension(embedder: Embedder, expected_id: str) -> int:
    return _worker_embedder(embedder, expected_id).dimension

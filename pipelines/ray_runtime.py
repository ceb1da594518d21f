"""Start or join Ray for one `svd curate` run, quietly: the job shows one progress display, not Ray's.

No `--address`: an embedded local Ray sized to this machine, shut down at the end. With an address (a
`ray://` client URL, `HOST:PORT` or `auto`) the job joins that cluster and leaves it running.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager

import ray
import ray.data

log = logging.getLogger(__name__)

QUIET_LOGGERS = (
    "ray._private.authentication.authentication_token_setup",
    "ray.data._internal.progress",
    "ray.data._internal.execution.streaming_executor",
)


class ClusterError(RuntimeError):
    """Ray could not be started or the cluster could not be reached (one line, with the address)."""


@contextmanager
def ray_session(address: str | None, cpus_needed: float = 1.0) -> Iterator[None]:
    """Ray for the duration of the block; a session already started in this process is reused as it is.

    `cpus_needed`: the CPUs the job's actor pools hold plus one task of each CPU stage. Ray counts CPUs
    as logical slots, and a pipeline whose actors cannot all be placed waits forever; so the embedded Ray
    declares at least that many (the OS shares the cores), and a cluster with fewer is refused up front.
    """
    if ray.is_initialized():
        _quiet_data()
        _check_capacity(address, cpus_needed)
        yield
        return
    # Ray's own notices (token authentication, progress bars off) are not the user's business here.
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    options = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
    try:
        if address is None:
            # "local": always a new Ray of our own, never one that `ray start` left running on this machine.
            ray.init(address="local", num_cpus=max(os.cpu_count() or 1, math.ceil(cpus_needed)), **options)
        else:
            ray.init(address=address, **options)
    except (ConnectionError, RuntimeError, ValueError) as error:
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise ClusterError(f"cannot start or reach {where}: {str(error).splitlines()[0]}") from None
    try:
        _quiet_data()
        _check_capacity(address, cpus_needed)
        yield
    finally:
        ray.shutdown()


def _check_capacity(address: str | None, cpus_needed: float) -> None:
    available = ray.cluster_resources().get("CPU", 0.0)
    if available < cpus_needed:
        where = f"the Ray cluster at {address}" if address else "this Ray session"
        raise ClusterError(
            f"the curation stages need {cpus_needed:g} CPUs at once (actor pools plus one task per CPU stage) but "
            f"{where} has {available:g}: lower ray.*.num_cpus or ray.*.concurrency"
        )


def _quiet_data() -> None:
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    context.enable_auto_log_stats = False

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
    if address is not None:
        _check_authentication(address)
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


def _check_authentication(address: str) -> None:
    """Ask the cluster's GCS one cheap question first: a cluster that wants a token this process does not send
    fails `ray.init` only after 20 s of retries and with a bare "Failed to connect"; this says why, in one line.
    Only for HOST:PORT addresses (a `ray://` client or `auto` is left to ray.init)."""
    if address == "auto" or "://" in address:
        return
    try:
        from ray._raylet import GcsClient  # Ray's own client of the cluster's control store (not a public API)
    except ImportError:
        return
    try:
        GcsClient(address).internal_kv_get(b"svd-curate-probe", None, timeout=5)
    except ray.exceptions.AuthenticationError:
        raise ClusterError(f"cannot join the Ray cluster at {address}: {_token_advice()}") from None
    except (ray.exceptions.RayError, ConnectionError, OSError, RuntimeError, ValueError):
        return  # not an authentication problem: ray.init tries, and reports what it finds, as it always does


def _token_advice() -> str:
    """What to set, and where the token is read from, for a cluster with token authentication."""
    if os.environ.get("RAY_AUTH_MODE", "").lower() != "token":
        return (
            "it uses token authentication (`ray start` turns it on by default) and this process sends no token: set "
            f"RAY_AUTH_MODE=token, with the cluster's token in {_token_source()} (copy it from the head node's "
            "~/.ray/auth_token)"
        )
    return f"it refused the token read from {_token_source()} (RAY_AUTH_MODE=token): give it the head node's token"


def _token_source() -> str:
    if os.environ.get("RAY_AUTH_TOKEN"):
        return "RAY_AUTH_TOKEN"
    if os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return f"RAY_AUTH_TOKEN_PATH ({os.environ['RAY_AUTH_TOKEN_PATH']})"
    return "RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token"


def _check_capacity(address: str | None, cpus_needed: float) -> None:
    available = ray.cluster_resources().get("CPU", 0.0)
    if available < cpus_needed:
        where = f"the Ray cluster at {address}" if address else "this Ray session"
        raise ClusterError(
            f"the curation stages need {cpus_needed:g} CPUs at once (actor pools plus one task per CPU stage) but "
            f"{where} has {available:g}: lower ray.*.num_cpus or ray.*.concurrency"
        )


def _pool_actors_take_arguments_by_value() -> None:
    """Ray Data builds every actor of an actor pool with two object-store references as constructor arguments (its
    DataContext and the map function). Ray's core cannot restart an actor whose constructor arguments have been
    evicted (ray-project/ray#53727) and logs an error-level line for each such restartable actor, on every healthy
    run (ray-project/ray#57733). Passed by value instead (a few KB: they travel inline in the actor's creation task,
    which the cluster keeps for restarts), the same actors restart safely and nothing is logged. This changes two
    properties of Ray Data's actor-pool operator, checked to exist: an unknown Ray version is left as it is."""
    from ray.data._internal.execution.operators import actor_pool_map_operator

    operator = getattr(actor_pool_map_operator, "ActorPoolMapOperator", None)
    if operator is None or not all(hasattr(operator, name) for name in ("_map_transformer_ref", "_data_context_ref")):
        return
    operator._map_transformer_ref = property(lambda self: self._map_transformer)
    operator._data_context_ref = property(lambda self: self.data_context)


def _quiet_data() -> None:
    _pool_actors_take_arguments_by_value()
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    context.enable_auto_log_stats = False

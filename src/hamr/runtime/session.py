"""Session: an executable loaded onto one device, ready to run, and movable to another.

A session is safe to share between threads. Stateless runs go straight to the program
(whose executors are checked out per run); runs of a session with carried state are
serialised, since each reads the state the previous one wrote. `migrate` swaps the
program under the session lock, so a run sees either the old device or the new one.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import os
import threading
import weakref
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hamr import profiling
from hamr.errors import HamrError, KernelError, first_line
from hamr.format.executable import Executable, load
from hamr.runtime import last_profile, measurements
from hamr.runtime.binding import IOBinding
from hamr.runtime.devices import Device
from hamr.runtime.feeds import FeedValidator
from hamr.runtime.placement import Choice, choose
from hamr.runtime.state import check_state_map, initial_value
from hamr.targets import get_target

_KEPT_TIMES = 256  # run times kept per device for the latency store


@dataclass(frozen=True)
class Migration:
    """What `Session.migrate` did."""

    source: str  # device id
    destination: str
    source_target: str
    destination_target: str
    seconds: float
    moved_bytes: int  # carried state and bound values copied between the devices
    plans_adopted: int  # per-shape plans reused instead of re-planned

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class _Active:
    program: Any
    device: Device
    target: str
    times: collections.deque


class Session:
    def __init__(
        self,
        executable: Executable | str | Path | bytes,
        device: str = "auto",
        state: dict[str, str] | None = None,
        trust_binaries: bool = False,
    ):
        """`trust_binaries`: for a file or bytes, load its native code even if no trusted key signed it."""
        self.executable = (
            executable if isinstance(executable, Executable) else load(executable, trust_binaries=trust_binaries)
        )
        self.state_map = check_state_map(self.signature, state)
        self._validate = FeedValidator(self.signature)
        self._state_inputs = tuple(dict.fromkeys(self.state_map.values()))
        self._keep_state = frozenset(self.state_map)
        self.input_names = [s.name for s in self.signature.inputs]
        self.output_names = [s.name for s in self.signature.outputs]
        self._lock = threading.RLock()
        self._state: dict[str, Any] = {}  # state input -> device value
        self._bindings: weakref.WeakSet[IOBinding] = weakref.WeakSet()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._profiling: profiling.Profile | None = None
        self.last_profile: profiling.Profile | None = None
        self.choice = choose(device, self.executable)
        self._active = self._load(self.choice)
        self._finalizer = weakref.finalize(self, _flush, self.executable, [self._active])

    # -- what runs where --

    @property
    def signature(self):
        return self.executable.signature

    @property
    def program(self):
        return self._active.program

    @property
    def device(self) -> Device:
        return self._active.device

    @property
    def target(self) -> str:
        return self._active.target

    def _load(self, choice: Choice) -> _Active:
        variant = self.executable.variants[choice.target]
        program = get_target(choice.target).load(self.executable.model, variant, choice.device.id)
        program.warm()
        return _Active(program, choice.device, choice.target, collections.deque(maxlen=_KEPT_TIMES))

    # -- running --

    def run(self, feeds: dict[str, Any], profile: bool = False) -> dict[str, Any]:
        """Outputs by name (carried-state outputs are kept, not returned: see `state`)."""
        return self._run(dict(feeds), None, profile)

    def run_async(self, feeds: dict[str, Any], profile: bool = False) -> concurrent.futures.Future:
        """Like `run`, on a worker thread; wrong feeds raise here, before anything is queued.
        A session with carried state runs its asynchronous calls one at a time, in submission order."""
        feeds = dict(feeds)
        if not self.state_map:
            self._validate(feeds)
        with self._lock:
            if self._pool is None:
                # with carried state each run reads the last one's state: one worker keeps submission order
                workers = 1 if self.state_map else os.cpu_count() or 2
                self._pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="hamr-run")
            pool = self._pool
        return pool.submit(self._run, feeds, None, profile)

    def io_binding(self) -> IOBinding:
        binding = IOBinding(self)
        self._bindings.add(binding)
        return binding

    def run_with_binding(
        self, binding: IOBinding, feeds: dict[str, Any] | None = None, profile: bool = False
    ) -> dict[str, Any]:
        """Run with the binding's device inputs (plus `feeds`); bound outputs stay on the device."""
        if binding._session is not self:
            raise HamrError("this I/O binding belongs to another session")
        return self._run({**binding.inputs, **(feeds or {})}, binding, profile)

    def _run(self, feeds: dict[str, Any], binding: IOBinding | None, profile: bool) -> dict[str, Any]:
        if self.state_map:
            with self._lock:
                return self._run_once(feeds, binding, profile)
        return self._run_once(feeds, binding, profile)

    def _run_once(self, feeds: dict[str, Any], binding: IOBinding | None, profile: bool) -> dict[str, Any]:
        active = self._active
        for name in self._state_inputs:
            if name not in feeds:
                feeds[name] = self._state[name] if name in self._state else initial_value(self.signature, name, feeds)
        checked = self._validate(feeds)
        keep = self._keep_state if binding is None else self._keep_state | binding.bound_outputs
        prof = profiling.Profile() if profile or self._profiling is not None else None
        start = profiling.now()
        try:
            values = active.program.run(checked, keep_on_device=keep, profile=prof)
        except HamrError:
            raise
        except Exception as exc:  # a driver or runtime error below the program
            detail = first_line(exc, with_type=False)
            raise KernelError(
                f"run failed on {active.device.id} [{active.target}]: {detail}", device=active.device.id
            ) from exc
        elapsed = profiling.now() - start
        results = dict(zip(self.output_names, values))
        if self.state_map:
            self._state = {self.state_map[o]: results.pop(o) for o in self.state_map}
        if binding is not None:
            binding._store({name: results.pop(name) for name in binding.bound_outputs})
        if prof is None:
            active.times.append(elapsed)
        else:
            prof.add("run", "run", start, elapsed, active.target, active.device.id)
            self._keep_profile(prof)
        return results

    # -- carried state --

    @property
    def state(self) -> dict[str, np.ndarray]:
        """Host copies of the carried state, by input name (empty before the first run)."""
        with self._lock:
            return {name: np.array(self.program.to_host(value)) for name, value in self._state.items()}

    def reset_state(self) -> None:
        """Forget the carried state: the next run starts from zeros (or the state inputs it is given)."""
        with self._lock:
            self._state = {}

    # -- migration --

    def migrate(self, device: str) -> Migration:
        """Move this session, weights, carried state and bindings included, to another device."""
        start = profiling.now()
        with self._lock:
            old = self._active
            choice = choose(device, self.executable)
            new = self._load(choice)
            adopted = new.program.adopt_plans(old.program)
            moved = 0
            for name, value in list(self._state.items()):
                host = np.asarray(old.program.to_host(value))
                self._state[name] = new.program.to_device(host)
                moved += host.nbytes
            for binding in list(self._bindings):
                moved += binding._move(old.program, new.program)
            _flush(self.executable, [old])
            self._active = new
            self.choice = choice
            self._finalizer.detach()
            self._finalizer = weakref.finalize(self, _flush, self.executable, [new])
        return Migration(old.device.id, new.device.id, old.target, new.target, profiling.now() - start, moved, adopted)

    # -- profiling --

    @contextlib.contextmanager
    def profiling(self) -> Iterator[profiling.Profile]:
        """Record every run inside the block into one profile."""
        collected = profiling.Profile()
        with self._lock:
            outer, self._profiling = self._profiling, collected
        try:
            yield collected
        finally:
            with self._lock:
                self._profiling = outer
            self.last_profile = collected
            last_profile.save_last(self.executable, collected)

    def _keep_profile(self, prof: profiling.Profile) -> None:
        collecting = self._profiling
        if collecting is not None:
            collecting.extend(prof)
        else:
            self.last_profile = prof
            last_profile.save_last(self.executable, prof)

    # -- lifetime --

    def close(self) -> None:
        """Record measured latencies and stop the worker threads."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self._finalizer()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _flush(exe: Executable, actives: list[_Active]) -> None:
    for active in actives:
        times = list(active.times)
        active.times.clear()
        measurements.record(exe, active.device.id, active.target, times)

"""The deployment replicas a `hamr agent` hosts: Sessions in the agent's own process, over the pool's HTTP API.

A "load" work item loads (and warms, on example inputs) a Session, keyed by (executable
sha256, device), and answers its target; an "infer" item fetches its inputs as raw tensors
(`GET /v1/agents/{node}/requests/{id}`), runs, and posts the outputs as raw tensors, or a JSON
error line (`POST` to the same path). Sessions are loaded, warmed and kept by hamr/pool/sessions.py.
Items run on a small thread pool, so the agent keeps long-polling meanwhile. hamr/pool/nodes/remote/server_replicas.py
is the pool's side.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from hamr.errors import HamrError
from hamr.pool.nodes.remote.agent_link import Link, Refused, Stopped, Unreachable
from hamr.pool.sessions import SessionCache
from hamr.pool.wire import tensors


class Agent(Protocol):
    """What the replicas use of their `hamr agent` (agent.Agent; a protocol, so neither module imports the other)."""

    name: str
    link: Link
    files: object  # agent.Files: executable(executable id, sha256) -> its cached path
    say: Callable[[str], None]

    def fail(self, exc: HamrError) -> None: ...


THREADS = 4


def _line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    line = text if isinstance(exc, HamrError) and text else f"{type(exc).__name__}: {text}".rstrip(": ")
    return line[:4000]


class AgentReplicas:
    def __init__(self, agent: Agent, threads: int = THREADS):
        self.agent = agent
        self.sessions = SessionCache()  # (executable sha256, device) -> hamr.Session, loaded and warmed once
        self._threads = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="hamr-agent-replicas")

    def submit(self, item: dict) -> None:
        self._threads.submit(self._handle, item)

    def _handle(self, item: dict) -> None:
        try:
            if item["kind"] == "load":
                self._load(item)
            else:
                self._infer(item)
        except (Stopped, Unreachable):
            pass  # the pool times the request out and sends it to another replica
        except Refused as exc:
            if exc.status in (401, 403):
                self.agent.fail(exc)
            else:  # 409: the request no longer waits
                self.agent.say(f"hamr agent: replica request {item.get('request')} not taken: {exc}")
        except Exception as exc:  # noqa: BLE001 - a thread of the pool must outlive one bad item; it says why
            self.agent.say(f"hamr agent: replica request {item.get('request')} failed in the agent: {_line(exc)}")

    def _path(self, item: dict) -> str:
        return f"/v1/agents/{self.agent.name}/requests/{item['request']}"

    def _session(self, item: dict):
        def executable() -> Path:
            return self.agent.files.executable(item["executable_id"], item["executable_sha256"])

        return self.sessions.get((item["executable_sha256"], item["device"]), executable, item["device"], warm=True)

    def _load(self, item: dict) -> None:
        try:
            answer = {"target": self._session(item).target}
        except Refused:
            raise
        except (HamrError, OSError, ValueError) as exc:
            answer = {"error": _line(exc)}
        self.agent.link.call("POST", self._path(item), retry=False, json=answer)

    def _infer(self, item: dict) -> None:
        feeds = tensors.decode(self.agent.link.call("GET", self._path(item), retry=False).content)
        try:
            outputs = self._session(item).run(feeds)
        except Refused:
            raise
        except (HamrError, KeyError, TypeError, ValueError, OSError) as exc:
            self.agent.link.call("POST", self._path(item), retry=False, json={"error": _line(exc)})
            return
        self.agent.link.call(
            "POST",
            self._path(item),
            retry=False,
            content=tensors.encode(outputs),
            headers={"Content-Type": tensors.MEDIA_TYPE},
        )

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)
        self.sessions.close()


__all__ = ["AgentReplicas"]

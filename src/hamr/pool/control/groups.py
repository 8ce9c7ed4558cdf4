"""Node groups driven as one by the pool's loop: `hamr pool up`'s own node beside the remote nodes."""

from __future__ import annotations

from hamr.pool.contracts import NodeGroup


class LocalAndRemote:
    """The local node's Dispatcher and the remote nodes, driven as one NodeGroup by `hamr pool up`'s loop."""

    def __init__(self, local: NodeGroup, remote: NodeGroup):
        self.local, self.remote = local, remote
        self.registry = local.registry
        remote.replica_hosts[:0] = local.replica_hosts  # one list, the local host first; remote nodes' join it

    @property
    def replica_hosts(self) -> list:
        return self.remote.replica_hosts

    def refresh(self) -> list[str]:
        return [*self.local.refresh(), *self.remote.refresh()]

    def heartbeat(self) -> None:
        self.local.heartbeat()
        self.remote.heartbeat()

    def step(self) -> int:
        return self.local.step() + self.remote.step()

    def busy(self) -> bool:
        return self.local.busy() or self.remote.busy()

    def loading(self) -> bool:
        return self.local.loading() or self.remote.loading()

    def wait_for_replies(self, timeout: float) -> None:
        if self.local.busy():
            self.local.wait_for_replies(timeout)  # a remote result meanwhile is read in the next round
        else:
            self.remote.wait_for_replies(timeout)

    def close(self) -> None:
        self.remote.close()
        self.local.close()


__all__ = ["LocalAndRemote"]

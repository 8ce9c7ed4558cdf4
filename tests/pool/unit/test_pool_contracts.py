"""Every node kind implements the pool's declared contracts (hamr/pool/contracts.py).

Two checks: a static one, that reads each implementation class (its methods' parameters, its
properties, class attributes and the attributes its __init__ assigns) against each member of its
protocol, so a renamed method or a missing flag fails here and not in the pool's loop; and
isinstance checks on instances that are cheap to build (the protocols are runtime_checkable).
"""

from __future__ import annotations

import ast
import inspect
import textwrap

import pytest

from hamr.pool.contracts import DeviceWorker, Executor, NodeGroup, ReplicaSession
from hamr.pool.control.groups import LocalAndRemote
from hamr.pool.dispatch.dispatcher import Dispatcher
from hamr.pool.nodes.local.workers import LocalWorkers, WorkerProcess
from hamr.pool.nodes.remote.server import RemoteNode, RemoteNodes, RemoteWorker
from hamr.pool.nodes.remote.server_replicas import RemoteSession
from hamr.pool.registry import open_registry
from hamr.runtime.session import Session


def _ray_classes() -> list[tuple[type, type]]:
    try:
        from hamr.pool.nodes.ray.cluster import RayNode, RayPool, RaySession, RayWorker
    except ImportError:  # ray is an extra
        return []
    return [(RayNode, Executor), (RayWorker, DeviceWorker), (RaySession, ReplicaSession), (RayPool, NodeGroup)]


IMPLEMENTATIONS = [
    (LocalWorkers, Executor),
    (RemoteNode, Executor),
    (WorkerProcess, DeviceWorker),
    (RemoteWorker, DeviceWorker),
    (Session, ReplicaSession),
    (RemoteSession, ReplicaSession),
    (Dispatcher, NodeGroup),
    (RemoteNodes, NodeGroup),
    (LocalAndRemote, NodeGroup),
    *_ray_classes(),
]


def protocol_members(protocol: type) -> dict[str, object]:
    """name -> the protocol's function, property, or None for a data attribute."""
    members: dict[str, object] = {}
    for name, value in vars(protocol).items():
        if not name.startswith("_") and (inspect.isfunction(value) or isinstance(value, property)):
            members[name] = value
    for name in vars(protocol).get("__annotations__", {}):
        members.setdefault(name, None)
    return members


def assigned_in_init(cls: type) -> set[str]:
    """The `self.X` names the class's __init__ (or a dataclass field) gives an instance."""
    names = set(getattr(cls, "__dataclass_fields__", {}))
    for klass in cls.__mro__:
        init = vars(klass).get("__init__")
        if init is None or not inspect.isfunction(init):
            continue
        tree = ast.parse(textwrap.dedent(inspect.getsource(init)))
        for node in ast.walk(tree):
            targets = (
                node.targets
                if isinstance(node, ast.Assign)
                else [node.target]
                if isinstance(node, ast.AnnAssign)
                else []
            )
            for target in targets:
                for leaf in ast.walk(target):
                    if isinstance(leaf, ast.Attribute) and isinstance(leaf.value, ast.Name) and leaf.value.id == "self":
                        names.add(leaf.attr)
    return names


def mismatches(cls: type, protocol: type) -> list[str]:
    found = []
    instance_names = assigned_in_init(cls)
    for name, member in protocol_members(protocol).items():
        has = hasattr(cls, name) or name in instance_names
        if not has:
            found.append(f"{cls.__name__} lacks {protocol.__name__}.{name}")
            continue
        if not inspect.isfunction(member):
            continue
        implemented = inspect.getattr_static(cls, name)
        if not callable(getattr(cls, name, None)) or isinstance(implemented, property):
            found.append(f"{cls.__name__}.{name} is not a method, as {protocol.__name__}.{name} is")
            continue
        wanted = list(inspect.signature(member).parameters.values())[1:]
        given = list(inspect.signature(getattr(cls, name)).parameters.values())[1:]
        if any(p.kind == p.VAR_POSITIONAL for p in given):
            continue
        names = [p.name for p in given[: len(wanted)]]
        if len(given) < len(wanted) or any(
            w.name != g and w.kind != w.POSITIONAL_ONLY for w, g in zip(wanted, names, strict=True)
        ):
            found.append(
                f"{cls.__name__}.{name}{inspect.signature(getattr(cls, name))} does not take "
                f"{protocol.__name__}.{name}'s parameters ({', '.join(w.name for w in wanted)})"
            )
        extra = [p.name for p in given[len(wanted) :] if p.default is p.empty and p.kind not in (p.VAR_KEYWORD,)]
        if extra:
            found.append(f"{cls.__name__}.{name} requires more than {protocol.__name__}.{name}: {', '.join(extra)}")
    return found


@pytest.mark.parametrize(("cls", "protocol"), IMPLEMENTATIONS, ids=lambda x: x.__name__)
def test_implementation_has_its_protocols_members(cls, protocol):
    assert mismatches(cls, protocol) == []


def test_the_check_finds_a_missing_member():
    class Half:
        gangs = True

        def start(self, local_id, env, staging=None, protect=None): ...

        def ready(self, workers, timeout): ...  # a renamed parameter

    assert mismatches(Half, Executor) == [
        "Half.ready(self, workers, timeout) does not take Executor.ready's parameters (workers, wait)",
        "Half lacks Executor.node_labels",
    ]


def test_instances_are_their_protocols(tmp_path):
    assert isinstance(LocalWorkers(), Executor)
    with open_registry(data_dir=tmp_path / "pool") as registry:
        remote = RemoteNodes(registry)
        dispatcher = Dispatcher(registry, "contracts-node", reports=[])
        try:
            assert isinstance(dispatcher, NodeGroup)
            assert isinstance(remote, NodeGroup)
            assert isinstance(RemoteNode(remote, "contracts-remote"), Executor)
            assert isinstance(LocalAndRemote(dispatcher, remote), NodeGroup)
            assert not isinstance(object(), NodeGroup)
        finally:
            remote.close()
            dispatcher.close()


def test_no_import_cycle_inside_the_pool():
    """No module of hamr.pool imports itself back, through module-level, function-level or type-only imports."""
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph("hamr", include_external_packages=False, cache_dir=None)
    cycles = []
    for module in sorted(m for m in graph.modules if m.startswith("hamr.pool.")):
        for imported in graph.find_modules_directly_imported_by(module):
            back = (
                graph.find_shortest_chain(importer=imported, imported=module)
                if imported.startswith("hamr.pool.")
                else None
            )
            if back:
                cycles.append(" -> ".join([module, *back]))
    assert cycles == []

"""Every backend that has kernels covers every activation, output head and optimizer rule.

A backend with kernels dispatches through its tables (`Backend.fused_kernels`: by kind of work,
each keyed by name); what it leaves to the generic path on purpose is listed, with the reason,
in its module's DELIBERATELY_GENERIC. A name in neither fails here, naming the backend, the
kind and the name; so does a declaration that has gone stale (a name that has a kernel after
all, or names nothing). The tables need no device: the cupy backend is checked on machines
without CUDA too, imported against a stand-in `cupy` module when cupy is not installed.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
import types

import pytest

from accelnn import backends as registry
from accelnn.activations import ACTIVATIONS
from accelnn.losses import HEADS
from accelnn.optimizers import RULES

KINDS = {"activation": ACTIVATIONS, "activation gradient": ACTIVATIONS, "head": HEADS,
         "head output": HEADS, "optimizer": RULES}
WITH_KERNELS = ("numba", "cupy")  # the built-in backends that must have kernel tables


@contextlib.contextmanager
def _stand_in_cupy():
    """A `cupy` to import the cupy backend's modules against when cupy is not installed (an
    empty module: nothing in them touches it at import), and afterwards sys.modules and the
    registry package exactly as they were, so the rest of the session still finds no cupy."""
    if importlib.util.find_spec("cupy") is not None:
        yield
        return
    names = ["cupy", *(f"accelnn.backends.{m}" for m in ("cupy_backend", "cupy_kernels",
                                                         "cupy_blas"))]
    saved = {n: sys.modules.pop(n) for n in names if n in sys.modules}
    attrs = {n: vars(registry).pop(n) for n in ("cupy_backend", "cupy_kernels", "cupy_blas")
             if n in vars(registry)}
    sys.modules["cupy"] = types.ModuleType("cupy")
    try:
        yield
    finally:
        for n in names:
            sys.modules.pop(n, None)
        for n in ("cupy_backend", "cupy_kernels", "cupy_blas"):
            vars(registry).pop(n, None)
        sys.modules.update(saved)
        vars(registry).update(attrs)


def _tables(name: str):
    """The backend class `name`'s kernel tables and its module's DELIBERATELY_GENERIC."""
    module_name, _, class_name = registry.BUILTIN[name].partition(":")
    if name == "numba":
        pytest.importorskip("numba", reason="numba is not installed: its tables can't load")
    with _stand_in_cupy() if name == "cupy" else contextlib.nullcontext():
        module = importlib.import_module(module_name)
        cls = getattr(module, class_name)
        return cls.fused_kernels(), getattr(module, "DELIBERATELY_GENERIC", {})


def gaps(name: str, tables, generic) -> list[str]:
    """Every way backend `name`'s tables and declaration fall short, one line each."""
    found = []
    for kind in generic:
        if kind not in KINDS:
            found.append(f"{name}: DELIBERATELY_GENERIC names an unknown kind {kind!r}")
    for kind, universe in KINDS.items():
        table, declared = tables.get(kind, {}), generic.get(kind, {})
        for item in universe:
            if item not in table and item not in declared:
                found.append(f"{name}: {kind} {item!r} has no fused kernel and is not listed "
                             f"in DELIBERATELY_GENERIC")
            elif item in table and item in declared:
                found.append(f"{name}: {kind} {item!r} has a fused kernel but is listed in "
                             f"DELIBERATELY_GENERIC (stale)")
        for item in set(table) - set(universe):
            found.append(f"{name}: the {kind} table has a kernel for {item!r}, which names "
                         f"no {kind}")
        for item, reason in declared.items():
            if item not in universe:
                found.append(f"{name}: DELIBERATELY_GENERIC lists {kind} {item!r}, which names "
                             f"no {kind}")
            if not isinstance(reason, str) or not reason.strip():
                found.append(f"{name}: DELIBERATELY_GENERIC gives no reason for {kind} {item!r}")
    return found


@pytest.mark.parametrize("name", sorted(registry.BUILTIN))
def test_every_name_has_a_kernel_or_a_reason(name):
    tables, generic = _tables(name)
    if name not in WITH_KERNELS:
        assert tables == {} and generic == {}, f"{name} has kernels: add it to WITH_KERNELS"
        return
    assert tables, f"{name}: fused_kernels() is empty"
    found = gaps(name, tables, generic)
    assert not found, "\n".join(found)
    for kind, declared in generic.items():
        for item, reason in declared.items():
            print(f"{name}: {kind} {item!r} generic on purpose: {reason}")


@pytest.mark.parametrize("name", WITH_KERNELS)
def test_a_missing_kernel_is_named(name):
    """Removing one entry of each kind from a table is reported as that gap; a declaration
    for a name that has a kernel is reported as stale."""
    tables, generic = _tables(name)
    for kind in KINDS:
        table = dict(tables.get(kind, {}))
        if not table:
            continue
        item = sorted(table)[0]
        del table[item]
        assert gaps(name, {**tables, kind: table}, generic) == [
            f"{name}: {kind} {item!r} has no fused kernel and is not listed in "
            f"DELIBERATELY_GENERIC"]
        stale = {**generic, kind: {**generic.get(kind, {}), item: "because"}}
        assert gaps(name, tables, stale) == [
            f"{name}: {kind} {item!r} has a fused kernel but is listed in "
            f"DELIBERATELY_GENERIC (stale)"]


@pytest.mark.parametrize("name", WITH_KERNELS)
def test_a_new_name_without_a_kernel_is_named(name, monkeypatch):
    """An activation, head or rule added to its table, and to no backend's, is a gap."""
    tables, generic = _tables(name)
    monkeypatch.setitem(ACTIVATIONS, "swish", ACTIVATIONS["tanh"])
    monkeypatch.setitem(HEADS, "poisson", HEADS["identity"])
    monkeypatch.setitem(RULES, "lion", RULES["sgd"])
    assert sorted(gaps(name, tables, generic)) == sorted(
        f"{name}: {kind} {item!r} has no fused kernel and is not listed in DELIBERATELY_GENERIC"
        for kind, item in (("activation", "swish"), ("activation gradient", "swish"),
                           ("head", "poisson"), ("head output", "poisson"),
                           ("optimizer", "lion")))


def test_the_stand_in_leaves_no_trace():
    """Reading cupy's tables on a machine without cupy leaves cupy unimportable."""
    before = {n: m for n, m in sys.modules.items() if "cupy" in n}
    _tables("cupy")
    assert {n: m for n, m in sys.modules.items() if "cupy" in n} == before


def test_numba_dispatches_through_its_tables(monkeypatch):
    """The tables are what runs: a name taken out of one goes the generic way, a kernel put
    in one is called."""
    pytest.importorskip("numba", reason="numba is not installed")
    import numpy as np

    from accelnn.backends.numba_backend import NumbaBackend
    from accelnn.optimizers import SGD

    nb, calls = NumbaBackend(), []

    def boom(*args):
        raise AssertionError("a kernel ran for a name its table does not hold")

    monkeypatch.setitem(nb.kernels, "optimizer", {"sgd": lambda p, g, lr: calls.append(lr)})
    monkeypatch.setitem(nb.kernels, "activation", {})
    monkeypatch.setattr(nb.k, "bias_act", boom)
    p, g = np.ones(3), np.ones(3)
    SGD(0.5).update(nb, [p], [g], {}, 0.5)
    assert calls == [0.5] and (p == 1).all()
    SGD(0.5, momentum=0.9).update(nb, [p], [g], {"velocity": [np.zeros(3)]}, 0.5)
    assert (p == 0.5).all()  # no kernel in the table: the reference ran
    Z = np.array([[-1.0, 2.0]])
    nb.bias_act(Z, np.zeros(2), ACTIVATIONS["relu"])
    assert Z.tolist() == [[0.0, 2.0]]

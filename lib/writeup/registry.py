"""The predicates a claims.toml may name: a registry filled by a decorator (as lm-eval-harness's
`@register_metric`), in place of hand-kept lists.

    @predicate
    def layer2_heavy_tail(t: Tables) -> Outcome: ...

    @predicate(factory=True)          # made from the claim's `params`
    def few_samples_dominate(layer: int | str) -> Callable[[Tables], Outcome]: ...

exp7's are lib/writeup/predicates/*.py; a write-up may ship its own `predicates.py` beside its TOML files
(loaded with it, lib/writeup/write_up.py), for a sentence a `check` expression cannot say.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, overload

PREDICATES: dict[str, Callable[..., Any]] = {}
"""name -> predicate (tables -> (holds, measured))."""
FACTORIES: dict[str, Callable[..., Any]] = {}
"""name -> factory (params -> predicate)."""
SOURCES: dict[str, str] = {}
"""name -> the file that registered it (a name registered twice names both)."""

F = Callable[..., Any]


def _register(fn: F, factory: bool) -> F:
    name = fn.__name__
    source = getattr(sys.modules.get(fn.__module__), "__file__", fn.__module__) or fn.__module__
    if name in SOURCES and SOURCES[name] != source:
        raise ValueError(f"predicate {name!r} is registered by {SOURCES[name]} and again by {source}: rename one")
    (FACTORIES if factory else PREDICATES)[name] = fn
    SOURCES[name] = source
    return fn


@overload
def predicate(fn: F) -> F: ...
@overload
def predicate(*, factory: bool = False) -> Callable[[F], F]: ...
def predicate(fn: F | None = None, *, factory: bool = False) -> F | Callable[[F], F]:
    """Register a predicate under its function's name (factory=True: one made from `params`)."""
    if fn is not None:
        return _register(fn, factory)
    return lambda f: _register(f, factory)


def load_predicates(path: Path) -> None:
    """Run a write-up's predicates.py once (its @predicate functions join the registry); ValueError naming
    the file where it cannot be imported."""
    name = f"writeup_predicates_{abs(hash(str(path.resolve())))}"
    if name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        del sys.modules[name]
        raise ValueError(f"{path}: cannot be imported ({type(e).__name__}: {e})") from None

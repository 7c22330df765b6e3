"""The matrix of a session's run configs: the product of the option lists, times the token windows (DESIGN.md,
"Many runs in one session").

Window w is the selection that window 0 makes (BOS, then text tokens; past n_ctx, chunks
each starting with BOS), taken from the token stream after the text tokens windows
0 .. w-1 used: no two windows share a text token, and window 0 is the write-up's.
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path
from typing import Any

from lib.setup.config import RunConfig, build_config
from lib.setup.corpus import KNOWN_TEXTS
from lib.setup.device import check_dtype
from lib.setup.options import DEFAULT_DATASET, OPTIONS, option, split, validate

LABELLED = ("numerics", "positions", "pca", "dtype")
"""The conventions a run label names where they differ from their option's default (lib/setup/options.py)."""
LISTS = tuple(o.name for o in OPTIONS if o.listed)
"""Options that take a comma-separated list; the session runs their product."""


def build_matrix(values: dict[str, Any], windows: int = 1) -> list[RunConfig]:
    """Every combination of the list options' values, times windows 0 .. windows-1.

    `values` are build_config's keyword arguments, list options as comma-separated text.
    Each model and text is resolved (fingerprinted) once.
    """
    defaults = {o.name: o.default for o in OPTIONS}
    lists = {name: split(name, values.get(name, defaults[name])) for name in LISTS}
    rest = {k: v for k, v in values.items() if k not in LISTS}
    resolved: dict[tuple[str, str], RunConfig] = {}
    runs = []
    for combination in itertools.product(*(lists[n] for n in LISTS)):
        v = dict(zip(LISTS, combination))
        if (v["model"], v["dataset"]) not in resolved:
            resolved[v["model"], v["dataset"]] = build_config(**v, **rest)
        first = resolved[v["model"], v["dataset"]]
        base = dataclasses.replace(
            first, numerics=v["numerics"], positions=v["positions"], dtype=check_dtype(first.device, v["dtype"])
        )
        runs += [dataclasses.replace(base, window=w) for w in range(validate({"windows": windows})["windows"])]
    return runs


def label(config: RunConfig) -> str:
    """A short readable name of the run, a function of the run alone: model, then what differs
    from the write-up's set-up (text, positions count, conventions), then the window."""
    local = config.model_revision.startswith("sha256:")
    parts = [Path(config.model).name if local else config.model.split("/")[-1]]
    if config.dataset != DEFAULT_DATASET and KNOWN_TEXTS.get(config.dataset_revision) != "wikitext-2-raw-test":
        parts.append(KNOWN_TEXTS.get(config.dataset_revision) or Path(config.dataset).stem.replace(":", "-"))
    if config.n_tokens != option("n-tokens").default:
        parts.append(f"n{config.n_tokens}")
    parts += [getattr(config, o) for o in LABELLED if getattr(config, o) != option(o).default]
    parts.append(f"w{config.window}")
    return "-".join(parts)


def labels(runs: list[RunConfig]) -> list[str]:
    """label() of each run; runs whose labels collide (two directories of one name) get their key."""
    names = [label(r) for r in runs]
    return [f"{n}-{r.key()[:6]}" if names.count(n) > 1 else n for n, r in zip(names, runs)]

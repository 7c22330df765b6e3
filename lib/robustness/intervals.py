"""What the replicates say about each number: its bootstrap SD and shift, a prediction interval for a
fresh sample of the same size, the population (basic) interval, and the pseudo-samples a claim's
stability is judged on.

With estimate t and replicates t*_1..t*_R of one numeric field:

- sd = std(t*) (ddof=1); shift = mean(t*) - t: the resample's bias (a resample repeats positions, so its
  covariance has a shorter tail, and every CEV moves up: docs/uncertainty.md);
- prediction: t + [q_lo, q_hi], the (1 - level) / 2 and (1 + level) / 2 quantiles of the pairwise
  differences t*_i - t*_j (i != j, both orders: symmetric, so q_lo = -q_hi and the interval always holds
  t). Two independent samples differ by a difference of two draws, and the shift cancels in it.
  Efron & Tibshirani (1993) ch. 13; the two-sample form: Hall, "The Bootstrap and Edgeworth Expansion"
  (1992) section 3.10;
- population: the basic interval [2t - q*(1 - a/2), 2t - q*(a/2)] over the replicates' quantiles q*: it
  moves the percentile interval back by the shift (Davison & Hinkley 1997, eq. 5.6). BC/BCa are not
  used: with a shift above one SD (K on the embedded model) their coverage collapses.

A K field (the smallest k with CEV(k) >= t) is built from its cumulative-variance curve, which is
continuous: with lo_k, hi_k the interval of CEV(k) at every k, K_lo = min{k : hi_k >= t} and K_hi =
min{k : lo_k >= t} (lo_k <= CEV(k) <= hi_k, so a prediction interval holds K). A pseudo-sample t + t*_i -
t*_j (every numeric field, the K fields from their pseudo-curves) is what `stability_of` judges.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from numbers import Real
from typing import TYPE_CHECKING, Any

import torch

from lib.measure.spectra import RATIO_ATOL, Pca

if TYPE_CHECKING:
    from lib.tables.context import Context

LEVEL = 0.95
"""The intervals' coverage."""
KINDS = ("prediction", "population")
"""The interval kinds: for a fresh sample of the same size (default), for the population value."""
PAIRS = 4000
"""Replicate pairs for the intervals: every ordered pair up to this many (R <= 63), else this many drawn
(both orders of each): the 2.5% quantile then rests on ~100 differences."""
STABILITY_PAIRS = 400
"""Replicate pairs (pseudo-samples) a claim's stability is judged on: every claim is decided once per pair,
so this is the stability's cost; its sampling SD is at most 0.025."""
NOT_STATISTICS = frozenset({"layer", "largest", "top_positions", "left_out"})
"""Fields that name a row or positions, not a statistic: no interval."""

Path = tuple[Any, ...]
"""Where a number sits in the tables: (table, row index or field name, ...)."""

CURVES: dict[str, dict[str, tuple[str, float]]] = {
    "layer_pca": {f"k{round(t * 100)}": ("delta_phi", t) for t in (0.5, 0.8, 0.9, 0.95)},
    "attn_ffn": {"attn_k90": ("attn", 0.9), "ffn_k90": ("ffn", 0.9)},
    "shared_pca": {f"k{round(t * 100)}": ("shared", t) for t in (0.5, 0.8, 0.9, 0.95)},
}
"""table -> K field -> (the write whose cumulative-variance curve gives it, its threshold): row i of a
per-layer table is layer i; "shared" is 7C's shared basis."""


def curve_key(table: str, row: int | None, write: str) -> tuple[str, int | None, str]:
    return (table, row, write)


def curves_of(c: Context, tables: Mapping[str, Any]) -> dict[tuple[str, int | None, str], torch.Tensor]:
    """(table, row, write) -> the (d,) cumulative explained-variance ratio under the context's weights,
    for every K field of CURVES in `tables`."""
    out: dict[tuple[str, int | None, str], torch.Tensor] = {}
    for name, fields in CURVES.items():
        if name not in tables:
            continue
        writes = {w for w, _ in fields.values()}
        rows: Sequence[int | None] = [None] if isinstance(tables[name], Mapping) else range(len(tables[name]))
        for row in rows:
            for write in writes:
                fit: Pca = c.shared if write == "shared" else c.pca(write, row)  # type: ignore[arg-type]
                out[curve_key(name, row, write)] = torch.cumsum(fit.ratio, 0)
    return out


def first_crossing(curve: torch.Tensor, threshold: float) -> torch.Tensor:
    """(..., d) curves -> (...,) long: the smallest k (1-based) with curve_k >= threshold (Pca.k_at's
    tolerance), d where none is: K of a monotone curve, and a defined K of a pseudo-curve that is not."""
    above = curve >= threshold - RATIO_ATOL
    d = curve.shape[-1]
    return torch.where(above.any(-1), above.int().argmax(-1) + 1, torch.full_like(above[..., 0], d, dtype=torch.long))


def pairs(replicates: int, most: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(i, j) long tensors of replicate pairs, i != j, each pair in both orders: all ordered pairs where
    there are at most `most`, else most // 2 drawn unordered pairs (a fixed seed)."""
    if replicates < 2:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
    if replicates * (replicates - 1) <= most:
        i, j = torch.meshgrid(torch.arange(replicates), torch.arange(replicates), indexing="ij")
        keep = i != j
        return i[keep], j[keep]
    g = torch.Generator().manual_seed(seed)
    i = torch.randint(0, replicates, (most // 2,), generator=g)
    j = (i + torch.randint(1, replicates, (most // 2,), generator=g)) % replicates  # never i
    return torch.cat([i, j]), torch.cat([j, i])


def numeric(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def leaves(node: Any, path: Path = ()) -> Iterator[tuple[Path, Any]]:
    """(path, number) of every numeric field of a table (NOT_STATISTICS left out)."""
    if numeric(node):
        yield path, node
    elif isinstance(node, Mapping):
        for k, v in node.items():
            if k not in NOT_STATISTICS:
                yield from leaves(v, (*path, k))
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            yield from leaves(v, (*path, i))


def rebuild(node: Any, values: Mapping[Path, Any], path: Path = ()) -> Any:
    """The structure of `node` with each numeric field replaced by values[path]; dict fields without a
    value left out, None where nothing below has one."""
    if numeric(node):
        return values.get(path)
    if isinstance(node, Mapping):
        out = {k: rebuild(v, values, (*path, k)) for k, v in node.items() if k not in NOT_STATISTICS}
        return {k: v for k, v in out.items() if v is not None} or None
    if isinstance(node, (list, tuple)):
        out_list = [rebuild(v, values, (*path, i)) for i, v in enumerate(node)]
        return out_list if any(x is not None for x in out_list) else None
    return None


def at(node: Any, path: Path) -> Any:
    for p in path:
        node = node[p]
    return node


def _quantiles(t: torch.Tensor, level: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The (1 - level) / 2 and (1 + level) / 2 quantiles along dim 0, values attained (lower, higher)."""
    q = (1 - level) / 2
    return torch.quantile(t, q, 0, interpolation="lower"), torch.quantile(t, 1 - q, 0, interpolation="higher")


def _k_path(path: Path) -> tuple[str, int | None, str, float] | None:
    """(table, row, write, threshold) where `path` is a K field of CURVES."""
    table = path[0]
    if table not in CURVES:
        return None
    row, field = (None, path[1]) if len(path) == 2 and isinstance(path[1], str) else (path[1], path[-1])
    spec = CURVES[table].get(field) if len(path) <= 3 else None
    return None if spec is None else (table, row if isinstance(row, int) else None, spec[0], spec[1])


def summarise(
    estimate: Mapping[str, Any],
    replicates: Sequence[Mapping[str, Any]],
    curves: tuple[Mapping[Any, torch.Tensor], Sequence[Mapping[Any, torch.Tensor]]],
    names: Sequence[str],
    level: float = LEVEL,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """{"prediction", "population", "sd", "shift"} -> table -> its structure with each numeric field's
    value ([lo, hi] for the intervals), for the tables `names`. curves: the estimate's and each
    replicate's (curves_of)."""
    i, j = pairs(len(replicates), PAIRS, seed)
    own, theirs = curves
    out: dict[str, dict[str, Any]] = {k: {} for k in (*KINDS, "sd", "shift")}
    for name in names:
        values: dict[str, dict[Path, Any]] = {k: {} for k in out}
        for path, value in leaves(estimate[name], (name,)):
            try:
                drawn = [at(r, path) for r in replicates]
            except (KeyError, IndexError, TypeError):
                continue
            if not all(numeric(x) for x in drawn):
                continue
            for kind, v in field_summary(value, drawn, i, j, level).items():
                values[kind][path] = v
            k = _k_path(path)
            if k is not None and curve_key(*k[:3]) in own and value > 0:
                key = curve_key(*k[:3])
                c = torch.stack([r[key] for r in theirs])  # (R, d)
                for kind, v in k_interval(own[key], c, i, j, k[3], level).items():
                    values[kind][path] = v
        for kind in out:
            built = rebuild(estimate[name], values[kind], (name,))
            if built is not None:
                out[kind][name] = built
    return out


def field_summary(
    value: float, drawn: Sequence[float], i: torch.Tensor, j: torch.Tensor, level: float
) -> dict[str, Any]:
    """One numeric field: both intervals, sd and shift (ints stay ints in the intervals; a field whose
    estimate or replicates are not finite gets [value, value] and no sd or shift)."""
    t = torch.tensor([float(x) for x in drawn], dtype=torch.float64)  # (R,)
    integral = isinstance(value, int) and all(isinstance(x, int) for x in drawn)
    if not math.isfinite(float(value)) or not bool(torch.isfinite(t).all()) or len(i) == 0:
        return {"prediction": [value, value], "population": [value, value], "sd": None, "shift": None}
    d_lo, d_hi = _quantiles(t[i] - t[j], level)
    r_lo, r_hi = _quantiles(t, level)
    cast: Callable[[torch.Tensor], Any] = (lambda x: int(round(float(x)))) if integral else float
    return {
        "prediction": [cast(value + d_lo), cast(value + d_hi)],
        "population": [cast(2 * value - r_hi), cast(2 * value - r_lo)],
        "sd": float(t.std()),
        "shift": float(t.mean() - value),
    }


def k_interval(
    own: torch.Tensor, drawn: torch.Tensor, i: torch.Tensor, j: torch.Tensor, threshold: float, level: float
) -> dict[str, list[int]]:
    """A K field's intervals from its curve: own (d,) the estimate's cumulative ratio, drawn (R, d) the
    replicates'; K_lo = first crossing of the upper curve, K_hi of the lower one."""
    d_lo, d_hi = _quantiles(drawn[i] - drawn[j], level)  # (d,) each
    r_lo, r_hi = _quantiles(drawn, level)
    out = {}
    for kind, lo, hi in (("prediction", own + d_lo, own + d_hi), ("population", 2 * own - r_hi, 2 * own - r_lo)):
        out[kind] = [int(first_crossing(hi, threshold)), int(first_crossing(lo, threshold))]
    return out


def pseudo_samples(
    estimate: Mapping[str, Any],
    replicates: Sequence[Mapping[str, Any]],
    curves: tuple[Mapping[Any, torch.Tensor], Sequence[Mapping[Any, torch.Tensor]]],
    names: Sequence[str],
    seed: int = 0,
    most: int = STABILITY_PAIRS,
) -> Iterator[dict[str, Any]]:
    """The tables t + t*_i - t*_j, one per replicate pair: every numeric field of the tables `names`
    moved by the pair's difference (a field equal in both: unchanged), each K field of CURVES the first
    crossing of its pseudo-curve, 7E's ratio recomputed from its pseudo K and the perplexities' ratios
    from the moved perplexities (`_derived`); the other tables as given."""
    i, j = pairs(len(replicates), most, seed)
    own, theirs = curves
    for a, b in zip(i.tolist(), j.tolist()):
        ra, rb = replicates[a], replicates[b]
        out = dict(estimate)
        for name in names:
            out[name] = _moved(estimate[name], ra[name], rb[name], (name,), own, theirs[a], theirs[b])
        yield _derived(out, names)


def _derived(tables: dict[str, Any], names: Sequence[str]) -> dict[str, Any]:
    """The fields a table defines from others, recomputed from their moved values: a perplexity's ratio
    to the baseline (7D, 7F, 7H: `<x>_ratio = <x>_ppl / baseline_ppl`), so that a pseudo-sample keeps
    the tables' identities (7D's ratio at K = d_model stays 1)."""
    base = tables.get("baseline_ppl")
    if not numeric(base) or not base:
        return tables
    for name in names:
        if not isinstance(tables[name], list):
            continue
        rows = tables[name] = [dict(r) if isinstance(r, Mapping) else r for r in tables[name]]  # never the run's
        for row in rows:
            if isinstance(row, dict):
                for key in [k for k in row if k.endswith("ppl") and numeric(row[k])]:
                    ratio = key[: -len("ppl")] + "ratio"
                    if ratio in row:
                        row[ratio] = row[key] / base
    return tables


def _moved(node: Any, a: Any, b: Any, path: Path, own: Mapping, ca: Mapping, cb: Mapping) -> Any:
    if numeric(node) and numeric(a) and numeric(b):
        k = _k_path(path)
        if k is not None and curve_key(*k[:3]) in own and node > 0:
            key = curve_key(*k[:3])
            return int(first_crossing(own[key] + ca[key] - cb[key], k[3]))
        if a == b:
            return node
        moved = node + a - b
        if not math.isfinite(moved):
            return a
        return moved
    if isinstance(node, Mapping) and isinstance(a, Mapping) and isinstance(b, Mapping):
        out = {
            key: _moved(v, a[key], b[key], (*path, key), own, ca, cb)
            if key in a and key in b and key not in NOT_STATISTICS
            else v
            for key, v in node.items()
        }
        if path[0] == "attn_ffn" and {"attn_k90", "ffn_k90", "ratio"} <= out.keys():
            out["ratio"] = out["attn_k90"] / out["ffn_k90"] if out["ffn_k90"] else math.inf
        return out
    if isinstance(node, list) and isinstance(a, list) and isinstance(b, list) and len(node) == len(a) == len(b):
        return [_moved(v, x, y, (*path, n), own, ca, cb) for n, (v, x, y) in enumerate(zip(node, a, b))]
    return node

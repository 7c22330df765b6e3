"""Drop-k fragility: the fewest positions found whose removal flips a claim's verdict.

Broderick, Giordano & Meager, "An Automatic Finite-Sample Robustness Metric: When Can Dropping a
Little Data Make a Big Difference?" (arXiv 2011.14999) ask for the smallest share of the data whose
removal changes a conclusion; "Approximations to worst-case data dropping: unmasking failure modes"
(arXiv 2408.09008) found recursive greedy removal (drop the most influential point, recompute, repeat)
the approximation that never missed a flip. Here, per claim (lib/writeup/claims.py CLAIMS and CELLS):

1. which statistics it reads: its predicate runs once on the run's tables through a recording
   wrapper (lib/robustness/recording.py: which tables, which layers' rows, which fields);
2. recursive greedy order: at each step the position with the largest share of the scatter
   sum ||x_i - mean||^2 of any layer of the writes the claim reads (or of the spread of 7A's
   norms), means and sums downdated after each removal; the verdict is recomputed without the
   first position, then without the budget, and bisected between them where the budget flips it;
3. hypothesis (sentences): drop sets drawn from the ranked candidates, the property "the verdict
   does not flip" (after the witnesses an earlier search kept for the claim, tried first); a flip it
   finds is shrunk;
4. the witness found (greedy's prefix or hypothesis's set) made 1-minimal: each position left out
   where the flip holds without it (not for 7D's claims: each try runs the projected passes), and
   kept under the claim's id, as ranks in the greedy order, for a later search.

Every verdict is computed on lib/robustness/dropped.py's tables, which recompute through the tables' own
functions (moments downdated, new bases, new projected passes for 7D): a reported flip is exact.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from random import Random
from typing import TYPE_CHECKING, Any

import torch

from lib.robustness.dropped import Base, Dropped
from lib.robustness.judged import Judged, cache_meta, judged, kind_of, require_held, verdict
from lib.robustness.recording import Reads, Recorder, static_reads
from lib.setup.progress import progress
from lib.tables.registry import TABLES
from lib.writeup.claims import Claim
from lib.writeup.write_up import EXP7_WRITE_UP, WriteUp

if TYPE_CHECKING:
    from lib.tables.run import Run

FRAGILITY_VERSION = 2
"""Bump when the search or the verification changes, so cached fragility rows are recomputed."""
BUDGET_SHARE = 0.05
"""The search's budget: at most 5% of the positions dropped (the issue's default)."""
FRAGILE_SHARE = 0.005
"""A claim that holds but flips when at most 0.5% of the positions are dropped is marked fragile."""
EXAMPLES = 4
"""Hypothesis examples per sentence after the greedy search (each one recomputes the tables it reads,
and no two claims share its drop sets); table cells get the greedy search only."""
SHRINK_FACTOR = 4
"""hypothesis recomputes at most SHRINK_FACTOR x EXAMPLES drop sets per claim, shrinking included."""
PASSES = "projected passes (7D, 7F, 7H)"


Source = tuple[str, int]
"""(write, layer): KEYS' writes, or "norm" (7A's per-position norms of Δφ)."""


def sources(reads: Reads, n_layers: int, per_layer: bool = False) -> set[Source]:
    """The (write, layer) pairs whose positions the claim's tables are computed from.

    By default every layer of each write a table reads, whatever rows the claim reads: claims that read
    the same writes then share one greedy order, so the drop sets, and the tables recomputed for them
    (Base.memo), are shared (a layer-2 claim still sees layer 2's dominant positions first: their share
    of layer 2's scatter is the largest anywhere). per_layer: the layers of the rows read only.
    """
    out: set[Source] = set()
    for table, rows in reads.rows.items():
        entry = TABLES[table]
        if entry.passes and not reads.passes:  # a K column: fixed
            continue
        read: Sequence[int] = range(n_layers)
        if entry.per_layer and per_layer and None not in rows:
            read = sorted(r for r in rows if r is not None)
        out |= {(key, layer) for key in entry.reads for layer in read}  # no reads (the run's identity): none
    return out


# ---------------------------------------------------------------- the search
def greedy_order(base: Base, chosen: set[Source], budget: int) -> list[int]:
    """Recursive greedy: `budget` positions, each the one with the largest share of the scatter of any
    source, recomputed (means and sums downdated) after every removal."""
    n = base.stats.norms.shape[1]
    dropped = torch.zeros(n, dtype=torch.bool)
    parts = []
    for key, layer in sorted(chosen):
        x = base.stats.norms[layer, :, None] if key == "norm" else base.vectors[key][layer].double()  # (n, d)
        parts.append((x, x.square().sum(-1), x.sum(0)))  # x, ||x||^2 (n,), sum of x (d,)
    order: list[int] = []
    for _ in range(min(budget, n - 2)):  # centred PCA needs two positions
        kept = n - len(order)
        score = torch.full((n,), -math.inf, dtype=torch.float64)
        for x, sq, total in parts:
            mean = total / kept if base.centred else torch.zeros_like(total)
            dev = (sq - 2 * (x @ mean) + mean @ mean).clamp_min(0)  # ||x_i - mean||^2
            scatter = dev[~dropped].sum()
            if scatter > 0:
                score = torch.maximum(score, torch.where(dropped, -math.inf, dev / scatter))
        if not parts or not bool(torch.isfinite(score).any()):
            break
        i = int(score.argmax())
        order.append(i)
        dropped[i] = True
        parts = [(x, sq, total - x[i]) for x, sq, total in parts]
    return order


@dataclass
class Searcher:
    """The search for one run: drop sets' tables shared between claims (a few kept, as each may hold
    downdated moments of every layer)."""

    base: Base
    budget: int
    examples: int = EXAMPLES
    database: Any = None
    """A hypothesis ExampleDatabase holding each claim's verified witnesses (None: none kept). hypothesis
    itself ignores its database when given a seeded `random` (which keeps every run's draws the same),
    so the witnesses are kept here: as ranks in the greedy order, tried first by a later search."""
    keep: int = 2
    cache: OrderedDict[tuple[int, ...], Dropped] = field(default_factory=OrderedDict)
    orders: dict[frozenset[Source], list[int]] = field(default_factory=dict)

    def tables(self, drop: Sequence[int]) -> Dropped:
        key = tuple(sorted(drop))
        if key not in self.cache:
            self.cache[key] = Dropped(self.base, key)
            while len(self.cache) > self.keep:
                self.cache.popitem(last=False)
        self.cache.move_to_end(key)
        return self.cache[key]

    def order(self, chosen: set[Source]) -> list[int]:
        key = frozenset(chosen)
        if key not in self.orders:
            self.orders[key] = greedy_order(self.base, chosen, 2 * self.budget)
        return self.orders[key]

    def flips(self, claim: Judged, holds: bool, drop: Sequence[int]) -> bool:
        after, _ = verdict(claim, self.tables(drop))
        return after is not None and after != holds

    def greedy(self, claim: Judged, holds: bool, order: list[int], passes: bool) -> int | None:
        """The smallest k found with order[:k] flipping: k = 1, then the whole order (the budget): no flip
        there, no search below it (most claims: two recomputations); else bisection between them, for the
        smallest k whose prefix flips (7D claims: the budget first, each try runs the passes)."""
        if not order:
            return None
        if not passes and self.flips(claim, holds, order[:1]):
            return 1
        if not self.flips(claim, holds, order):
            return None
        lo, hi = 0 if passes else 1, len(order)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if self.flips(claim, holds, order[:mid]) else (mid, hi)
        return hi

    def hypothesis(self, claim: Judged, holds: bool, candidates: list[int], most: int) -> list[int] | None:
        """A drop set of at most `most` candidates that flips the verdict, shrunk; None when none was found."""
        from hypothesis import HealthCheck, Phase, find, settings
        from hypothesis import strategies as st
        from hypothesis.errors import NoSuchExample

        if most < 1 or not candidates or self.examples < 1:
            return None
        drops = st.lists(st.sampled_from(candidates), min_size=1, max_size=min(most, len(candidates)), unique=True)
        seen: dict[frozenset[int], bool] = {}

        def flips(drop: list[int]) -> bool:
            """Each drop set recomputed once; past SHRINK_FACTOR x examples new sets count as no flip, so that
            shrinking (up to hundreds of calls) stops there with the smallest flip it verified."""
            key = frozenset(drop)
            if key not in seen:
                if len(seen) >= SHRINK_FACTOR * self.examples:
                    return False
                seen[key] = self.flips(claim, holds, drop)
            return seen[key]

        try:
            return find(
                drops,
                flips,
                settings=settings(
                    max_examples=self.examples,
                    database=None,
                    deadline=None,
                    suppress_health_check=list(HealthCheck),
                    phases=[Phase.generate, Phase.shrink],
                ),
                # one seed for every claim: claims that read the same statistics draw the same drop sets
                # first, whose tables Base.memo then computes once
                random=Random(0),
            )
        except NoSuchExample:
            return None

    def kept_witnesses(self, claim: Judged, candidates: list[int]) -> list[list[int]]:
        """The claim's witnesses kept by earlier searches, as positions of this run's candidates (a
        witness is kept as ranks: "the 2nd and 21st most influential positions"), smallest first."""
        if self.database is None:
            return []
        ranked = sorted((json.loads(v) for v in self.database.fetch(claim.id.encode())), key=lambda r: (len(r), r))
        return [[candidates[r] for r in ranks] for ranks in ranked if ranks and max(ranks) < len(candidates)]

    def keep_witness(self, claim: Judged, candidates: list[int], witness: list[int]) -> None:
        if self.database is not None and set(witness) <= set(candidates):
            ranks = sorted(candidates.index(i) for i in witness)
            self.database.save(claim.id.encode(), json.dumps(ranks).encode())

    def minimal(self, claim: Judged, holds: bool, witness: list[int]) -> list[int]:
        """The witness with every position the flip does not need left out, one at a time, in passes
        until none can be (1-minimal: a greedy prefix or a shrunk hypothesis example may hold positions
        that only came along; flips are not monotone in the drop set, hence the passes)."""
        kept, changed = list(witness), True
        while changed and len(kept) > 1:
            changed = False
            for i in list(kept):
                rest = [j for j in kept if j != i]
                if rest and self.flips(claim, holds, rest):
                    kept, changed = rest, True
        return kept

    def search(self, claim: Judged) -> dict[str, Any]:
        recorder = Recorder(self.base.tables)
        holds, before = verdict(claim, recorder)
        n = self.base.stats.norms.shape[1]
        row: dict[str, Any] = {"claim": claim.id, "kind": kind_of(claim), "holds": holds, "k": None, "share": None}
        row.update(
            positions=[], witnesses=[], before=before, after=None, budget=self.budget, found_by=None, fragile=False
        )
        if holds is None:  # undecided here (a role this model lacks): there is nothing to flip, nor reads to name
            return {**row, "note": f"not decidable on this run's tables: {before}"}
        static = static_reads(claim, self.base.tables)  # a check's, from its syntax; else what was recorded
        reads = recorder.reads if static is None else static
        chosen = sources(reads, self.base.stats.total.shape[1])
        if not chosen:
            return {**row, "note": "reads no statistic of the positions"}
        passes = reads.passes
        order = self.order(chosen)  # 2 x budget: the greedy search's, then hypothesis's further candidates
        k = self.greedy(claim, holds, order[: self.budget], passes)
        witness, found_by = (order[:k], "greedy") if k is not None else (None, None)
        if k != 1 and not passes and isinstance(claim, Claim):  # 7D: each example would run the passes again
            most = (k - 1) if k is not None else self.budget
            kept = next(
                (w for w in self.kept_witnesses(claim, order) if len(w) <= most and self.flips(claim, holds, w)), None
            )  # a witness an earlier search kept (another run), by rank in this run's order
            smaller = kept if kept is not None else self.hypothesis(claim, holds, order, most)
            if smaller is not None:
                witness, found_by = sorted(smaller), "kept witness" if kept is not None else "hypothesis"
        if witness is not None and not passes:
            witness = self.minimal(claim, holds, witness)
        if witness is not None:
            self.keep_witness(claim, order, witness)
        if witness is None:
            return {
                **row,
                "note": f"no flip within the budget ({self.budget} of {n} positions)"
                + (f"; {PASSES}" if passes else ""),
            }
        after_holds, after = verdict(claim, self.tables(witness))
        assert after_holds is not None and after_holds != holds, (claim.id, witness)  # flips() said so
        where = self.base.selection.where
        return {
            **row,
            "k": len(witness),
            "share": len(witness) / n,
            "positions": [list(where[i]) for i in witness],
            "witnesses": self.describe(witness, sources(reads, self.base.stats.total.shape[1], per_layer=True)),
            "after": after,
            "found_by": found_by,
            "fragile": bool(holds) and len(witness) <= FRAGILE_SHARE * n,
        }

    def describe(self, witness: Sequence[int], chosen: set[Source]) -> list[dict[str, Any]]:
        """Per witness position: (chunk, index), the token there, ||Δφ|| at the layers the claim reads."""
        where, chunks = self.base.selection.where, self.base.selection.chunks
        layers = sorted({layer for _, layer in chosen})
        out = []
        for i in witness:
            c, p = where[i]
            norms = {str(layer): round(float(self.base.stats.norms[layer, i]), 4) for layer in layers}
            token = int(chunks[c][p])
            text = self.base.bridge.tokenizer.decode([token]) if self.base.bridge is not None else None
            out.append({"chunk": c, "index": p, "token_id": token, "token": text, "norms": norms})
        return out


def fragility_rows(
    base: Base,
    budget_share: float = BUDGET_SHARE,
    examples: int = EXAMPLES,
    database: Any = None,
    follow_ups: bool = False,
    write_up: WriteUp = EXP7_WRITE_UP,
) -> list[dict[str, Any]]:
    """One row per claim (sentences, then cells) of the write-up on one run: JSON-shaped, as `--json`'s
    `fragility`. follow_ups: the follow-up sentences too (base.tables then holds the follow-up tables)."""
    n = base.stats.norms.shape[1]
    if not 0 < budget_share < 1:
        raise ValueError(f"fragility budget share must be in (0, 1), got {budget_share}")
    budget = max(1, math.floor(budget_share * n))
    searcher = Searcher(base, budget, examples, database)
    items = judged(follow_ups, write_up)
    return [searcher.search(c) for c in progress(f"fragility search: {len(items)} claims and cells")(items)]


def fragility_of(run: Run, follow_ups: bool = False, write_up: WriteUp = EXP7_WRITE_UP) -> list[dict[str, Any]]:
    """Drop-k fragility of every claim of one run (fragility_rows), the follow-up sentences too with
    follow_ups (their tables computed first); cached beside the tables; needs the held capture."""
    from hypothesis.database import DirectoryBasedExampleDatabase

    meta = cache_meta(
        "fragility", FRAGILITY_VERSION, run, write_up, follow_ups, budget_share=BUDGET_SHARE, examples=EXAMPLES
    )

    def compute() -> dict[str, Any]:
        require_held(run, "--fragility")
        base = Base(
            run.capture,
            run.stats,
            run.selection,
            {**run.tables, **(run.followups if follow_ups else {})},
            run.config.pca == "centred",
            run.bridge,
            run.batch_size,
            run.config.attention,
        )
        database = DirectoryBasedExampleDatabase(run.store.root / "fragility-examples")
        return {"rows": fragility_rows(base, database=database, follow_ups=follow_ups, write_up=write_up)}

    stage = "fragility-followups" if follow_ups else "fragility"  # two entries: neither overwrites the other
    return run.store.get_or_compute_json(stage, run.config.key(), meta, compute)["rows"]

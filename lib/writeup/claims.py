"""The write-up's claims: what each sentence says, and the predicate that decides it.

The claims are data, `lib/writeup/exp7/claims.toml` (one [[claim]] per sentence: id, section, the Japanese
phrase, the English sentence, the predicate by name with its parameters, the verdict on the
write-up's own tables and its reason), so a reviewer checks every claim without reading
Python, and `python -m lib claims --markdown` (docs/claims.md) lists them. The predicates
are lib/writeup/predicates/restated.py and lib/writeup/predicates/lowrank.py (sentences that restate tables 7A-7E; 7D's in the latter) and lib/writeup/predicates/causal.py
(causal sentences and follow-ups); the layer roles lib/writeup/roles.py; the write-up's tables and
cells lib/writeup/document.py. This module loads the claims and keeps every name the suite imports.

A sentence's predicate runs on a tables dict: on the measured tables it checks the finding;
on the document's own it checks that the sentence follows from the write-up's numbers. Each
claim quotes the Japanese phrase it tests (`ja`): the original stands where the English
rendering differs. A sentence whose literal reading goes beyond the document's own tables
while its qualified reading holds is "overstated" (both readings are tested).
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lib.writeup.document import CELLS, DOCUMENT_TABLES, SETUP, THRESHOLDS, Cell, Tables, cells_in
from lib.writeup.predicates import causal as causal_predicates
from lib.writeup.predicates import lowrank as lowrank_predicates
from lib.writeup.predicates import restated as predicates
from lib.writeup.predicates.causal import (
    attention_candidate,
    attention_similar_patterns,
    harmful_noise,
    inner_attention_lower,
    largest_std_ratio_k90_rises_without_outliers,
    layer2_k90_rises_without_outliers,
)
from lib.writeup.predicates.lowrank import rises_8_to_32
from lib.writeup.roles import (
    NotApplicable,
    Outcome,
    combined_band,
    d_model,
    inner,
    middle,
    middle_wide,
    n_layers,
    tied,
)

__all__ = [
    "CELLS",
    "CLAIMS",
    "CLAIMS_FILE",
    "DOCUMENT_TABLES",
    "SECTIONS",
    "SETUP",
    "THRESHOLDS",
    "Cell",
    "Claim",
    "NotApplicable",
    "Outcome",
    "Tables",
    "attention_candidate",
    "attention_similar_patterns",
    "cells_in",
    "claims_in",
    "combined_band",
    "d_model",
    "harmful_noise",
    "inner",
    "inner_attention_lower",
    "largest_std_ratio_k90_rises_without_outliers",
    "layer2_k90_rises_without_outliers",
    "load_claims",
    "middle",
    "middle_wide",
    "n_layers",
    "rises_8_to_32",
    "tied",
]

CLAIMS_FILE = Path(__file__).parent / "exp7" / "claims.toml"
SECTIONS = ("background", "setup", "7A", "7B", "7C", "7D", "7E", "conclusions")


@dataclass(frozen=True)
class Claim:
    """One qualitative statement of the write-up."""

    id: str
    section: str
    sentence: str
    """The sentence as the English rendering gives it."""
    predicate: Callable[[Tables], Outcome] | None = None
    scope: str = "any"
    """any: phrased by layer role, applies to every model; gpt2: names GPT-2 small's layers or numbers."""
    untested: str | None = None
    """Why the suite cannot test it (then predicate is None)."""
    contradicted: str | None = None
    """Where the document's own tables contradict it: both sides quoted."""
    document_untestable: str | None = None
    """Why the document's own tables cannot decide it (it needs data the write-up does not give,
    or its verdict changes within the cells' tolerance: "within tolerance: not decided")."""
    literal: Callable[[Tables], Outcome] | None = None
    """The literal reading, where `predicate` is a qualified one (then `overstated` says why)."""
    overstated: str | None = None
    """Where the literal sentence goes beyond the document's own tables while the qualified
    reading (predicate) holds on them: both sides quoted."""
    ja: str = ""
    """The Japanese phrase tested, verbatim from exp7.ja.md."""
    followup: bool = False
    """Tested on the follow-up experiments' tables (7F-7H, lib/tables/followups.py), computed on request only."""
    predicate_name: str = ""
    """The predicate's name in claims.toml (with params), for listings."""
    params: tuple[tuple[str, Any], ...] = ()


PREDICATES: dict[str, Callable[[Tables], Outcome]] = {
    "about_half": predicates.about_half,
    "all_but_2_last_over_80": predicates.all_but_2_last_over_80,
    "attn_always_lower": predicates.attn_always_lower,
    "few_components_fail": lowrank_predicates.few_components_fail,
    "ffn_high": predicates.ffn_high,
    "first_attn_low": predicates.first_attn_low,
    "first_lower_than_middle": predicates.first_lower_than_middle,
    "full_k_is_baseline": lowrank_predicates.full_k_is_baseline,
    "gpt2_shape": predicates.gpt2_shape,
    "hard_to_compress": lowrank_predicates.hard_to_compress,
    "inner_about_half": predicates.inner_about_half,
    "last_attn_concentrated": predicates.last_attn_concentrated,
    "last_concentrated": predicates.last_concentrated,
    "last_norm_dominates": predicates.last_norm_dominates,
    "last_norm_largest": predicates.last_norm_largest,
    "layer11_attn_3": predicates.layer11_attn_3,
    "layer2_ffn_k1": predicates.layer2_ffn_k1,
    "layer2_heavy_tail": predicates.layer2_heavy_tail,
    "layer2_k1": predicates.layer2_k1,
    "layers_2_and_last_top_std_ratio": predicates.layers_2_and_last_top_std_ratio,
    "middle_effectively_full_rank": predicates.middle_effectively_full_rank,
    "middle_full_rank_literal": predicates.middle_full_rank_literal,
    "middle_k90_fraction": predicates.middle_k90_fraction,
    "none_meets_50": predicates.none_meets_50,
    "norms_rise_every_layer": predicates.norms_rise_every_layer,
    "norms_trend_with_depth": predicates.norms_trend_with_depth,
    "not_low_rank": predicates.not_low_rank,
    "ppl_11_at_two_thirds": lowrank_predicates.ppl_11_at_two_thirds,
    "ratio_column": predicates.ratio_column,
    "ratio_first_good_at_two_thirds": lowrank_predicates.ratio_first_good_at_two_thirds,
    "ratios_are_ppl_over_baseline": lowrank_predicates.ratios_are_ppl_over_baseline,
    "shared_catastrophic": lowrank_predicates.shared_catastrophic,
    "shared_low": predicates.shared_low,
    "shared_reconstruction_poor": predicates.shared_reconstruction_poor,
    "shared_rises": lowrank_predicates.shared_rises,
    "shared_worse": lowrank_predicates.shared_worse,
    "singular_layers": predicates.singular_layers,
    "third_catastrophic": lowrank_predicates.third_catastrophic,
    "thousand_positions": predicates.thousand_positions,
    "twenty_times": predicates.twenty_times,
    "twenty_times_literal": predicates.twenty_times_literal,
    "variance_is_not_function": lowrank_predicates.variance_is_not_function,
    "delta_phi_input_dependent": predicates.delta_phi_input_dependent,
    "early_attn_limited": predicates.early_attn_limited,
    "every_k90_fraction": predicates.every_k90_fraction,
    "none_meets_50_literal": predicates.none_meets_50_literal,
    "pooled_rows": predicates.pooled_rows,
    "attention_candidate": causal_predicates.attention_candidate,
    "ffn_diverse": causal_predicates.ffn_diverse,
    "shared_destroys_others": causal_predicates.shared_destroys_others,
    "shared_follows_last_norm": causal_predicates.shared_follows_last_norm,
    "attention_similar_patterns": causal_predicates.attention_similar_patterns,
    "harmful_noise": causal_predicates.harmful_noise,
    "imbalance_breaks_shared": causal_predicates.imbalance_breaks_shared,
    "inner_attention_lower": causal_predicates.inner_attention_lower,
    "largest_std_ratio_k90_rises_without_outliers": causal_predicates.largest_std_ratio_k90_rises_without_outliers,
    "layer2_ffn_is_cause": causal_predicates.layer2_ffn_is_cause,
    "layer2_fixed_bias": causal_predicates.layer2_fixed_bias,
    "layer2_k90_rises_without_outliers": causal_predicates.layer2_k90_rises_without_outliers,
    "norm_dominance_makes_shared_low": causal_predicates.norm_dominance_makes_shared_low,
    "sacrifices_others": causal_predicates.sacrifices_others,
    "shared_costs_middle": causal_predicates.shared_costs_middle,
    "shared_optimised_for_last": causal_predicates.shared_optimised_for_last,
}

FACTORIES: dict[str, Callable[..., Callable[[Tables], Outcome]]] = {
    "few_samples_dominate": causal_predicates.few_samples_dominate,
    "toward_unembedding": causal_predicates.toward_unembedding,
}
"""Predicates made from parameters (`params` in claims.toml)."""
FIELDS = {
    "id",
    "section",
    "ja",
    "sentence",
    "predicate",
    "params",
    "literal",
    "scope",
    "followup",
    "untested",
    "document_untestable",
    "contradicted",
    "overstated",
}


def _predicate(claim_id: str, name: str, params: dict[str, Any]) -> Callable[[Tables], Outcome]:
    if name in FACTORIES:
        return FACTORIES[name](**params)
    if name not in PREDICATES:
        raise ValueError(
            f"{CLAIMS_FILE.name}: claim {claim_id}: unknown predicate {name!r}; known: {sorted(PREDICATES)}"
        )
    if params:
        raise ValueError(f"{CLAIMS_FILE.name}: claim {claim_id}: predicate {name!r} takes no params, got {params}")
    return PREDICATES[name]


def _claim(entry: dict[str, Any]) -> Claim:
    unknown = set(entry) - FIELDS
    if unknown:
        raise ValueError(
            f"{CLAIMS_FILE.name}: claim {entry.get('id')}: unknown keys {sorted(unknown)}; allowed: {sorted(FIELDS)}"
        )
    if entry["section"] not in SECTIONS:
        raise ValueError(f"{CLAIMS_FILE.name}: claim {entry['id']}: section {entry['section']!r} not in {SECTIONS}")
    params = entry.get("params", {})
    name = entry.get("predicate")
    return Claim(
        id=entry["id"],
        section=entry["section"],
        sentence=entry["sentence"],
        predicate=_predicate(entry["id"], name, params) if name else None,
        scope=entry.get("scope", "any"),
        untested=entry.get("untested"),
        contradicted=entry.get("contradicted"),
        document_untestable=entry.get("document_untestable"),
        literal=_predicate(entry["id"], entry["literal"], {}) if "literal" in entry else None,
        overstated=entry.get("overstated"),
        ja=entry["ja"],
        followup=entry.get("followup", False),
        predicate_name=name or "",
        params=tuple(params.items()),
    )


def load_claims(path: Path = CLAIMS_FILE) -> tuple[Claim, ...]:
    """The claims of a claims file, in its order."""
    with path.open("rb") as f:
        return tuple(_claim(entry) for entry in tomllib.load(f)["claim"])


CLAIMS: tuple[Claim, ...] = load_claims()


def claims_in(*sections: str) -> list[Claim]:
    return [c for c in CLAIMS if c.section in sections]

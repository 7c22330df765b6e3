"""The largest deviation per table of a low-precision run from the float32 run (docs/dtype.md).

    python benchmarks/dtype_cost.py FLOAT32.json OTHER.json [OTHER.json ...]

Each JSON is what `python -m lib tables --json` writes. Deviations are relative
(|other - float32| / |float32|) for norms and perplexities, absolute for 7C's cosine and
relative L2 (both in [0, 1]; relative L2 tends to 0 as K nears d_model), and in components
for K (absolute, and relative to the float32 K).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

K_COLUMNS = ("k50", "k80", "k90", "k95")


def _rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b) if b else abs(a - b)


def deviations(ref: dict[str, Any], other: dict[str, Any]) -> dict[str, float]:
    """Largest deviation of `other` from `ref` per table: relative for values, components (and relative) for K."""
    out: dict[str, float] = {}
    out["norms (7A, rel.)"] = max(
        _rel(o[c], r[c]) for r, o in zip(ref["norms"], other["norms"]) for c in ("mean_norm", "std_norm")
    )
    ks = [(o[c], r[c]) for r, o in zip(ref["layer_pca"], other["layer_pca"]) for c in K_COLUMNS]
    ks += [(other["shared_pca"][c], ref["shared_pca"][c]) for c in K_COLUMNS]
    ks += [(o[c], r[c]) for r, o in zip(ref["attn_ffn"], other["attn_ffn"]) for c in ("attn_k90", "ffn_k90")]
    out["K (7B, 7C, 7E, components)"] = max(abs(o - r) for o, r in ks)
    out["K (7B, 7C, 7E, rel.)"] = max(_rel(o, r) for o, r in ks)
    out["reconstruction (7C, abs.)"] = max(  # absolute: relative_l2 tends to 0 as K nears d_model
        abs(o[c] - r[c])
        for r, o in zip(ref["reconstruction"], other["reconstruction"])
        for c in ("cos_sim", "relative_l2")
    )
    ppl = [(other["baseline_ppl"], ref["baseline_ppl"])]
    ppl += [
        (o[c], r[c]) for r, o in zip(ref["lowrank_ppl"], other["lowrank_ppl"]) for c in ("individual_ppl", "shared_ppl")
    ]
    out["perplexity (7D, rel.)"] = max(_rel(o, r) for o, r in ppl)
    return out


if __name__ == "__main__":
    ref = json.loads(Path(sys.argv[1]).read_text())
    for path in sys.argv[2:]:
        other = json.loads(Path(path).read_text())
        print(f"{other['config']['dtype']} vs {ref['config']['dtype']}:")
        for name, value in deviations(ref, other).items():
            print(f"  {name}: {value:.3g}")

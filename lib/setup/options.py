"""The run options, defined once for both the pytest group and `python -m lib`.

Every option is a default and a named choice (DESIGN.md): where the write-up is
ambiguous the default is its most plausible reading and the alternative is an option.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lib.errors import ConfigError

DEFAULT_MODEL = "gpt2"  # GPT-2 small (Hub: openai-community/gpt2), the write-up's model
DEFAULT_DATASET = "wikitext-2-raw-v1"  # WikiText-2 raw, test split, through `datasets`
CACHE_ENV = "DPHI_CACHE_DIR"
DTYPES = ("float32", "bfloat16", "float16")
"""--dtype: the forward passes' dtype (float32 as the write-up). Statistics are float64 on the CPU whatever it is."""


Check = Callable[[str, Any], Any]
"""An option's constraint: (its name, a value) -> the value accepted, or ConfigError naming both."""


def at_least(least: int, why: str = "") -> Check:
    """A whole number of at least `least`."""

    def check(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ConfigError(f"--{name} {value!r} is not allowed; expected a whole number of at least {least}{why}")
        return value

    return check


def whole_or_auto(name: str, value: Any) -> int | str:
    """A whole number of at least 1, or auto (resolved per device: lib/setup/config.py AUTO_BATCH_SIZE)."""
    if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return value
    raise ConfigError(f"--{name} {value!r} is not allowed; expected a whole number of at least 1, or auto")


def k_list(name: str, value: Any) -> tuple[int, ...]:
    """'8,16,32' (or a tuple) -> (8, 16, 32): positive whole numbers, sorted, each once."""
    if isinstance(value, tuple):
        values = value
    else:
        try:
            values = tuple(int(k) for k in str(value).split(",") if k.strip())
        except ValueError:
            raise ConfigError(f"--{name} {value!r} is not a list of whole numbers; expected e.g. 8,16,32") from None
    if not values or min(values) < 1:
        raise ConfigError(f"--{name} {value!r}: expected one or more positive whole numbers, e.g. 8,16,32")
    return tuple(sorted(set(values)))


@dataclass(frozen=True)
class Option:
    """One run option: `--name` on the command line and in pytest."""

    name: str
    """Long flag without dashes, e.g. `n-tokens`."""
    default: Any
    """Value when the flag is absent."""
    help: str
    """One line for `--help`."""
    type: Callable[[str], Any] = str
    """Parser for the flag's text."""
    choices: tuple[str, ...] | None = None
    """Allowed values, when the set is closed."""
    listed: bool = False
    """Takes a comma-separated list: the session runs every value (lib/setup/matrix.py); choices are checked per value."""
    run: bool = True
    """Part of a run's identity (a RunConfig field); False: a setting of the session (lib/session.py)."""
    flag: bool = False
    """A switch without a value (`--refresh`): False unless given."""
    check: Check | None = None
    """Its constraint beyond `choices`, declared here once; `validate` applies every one."""

    @property
    def argparse_help(self) -> str:
        """`help` as argparse wants it (its `%` formats: a literal one doubled), with the default."""
        shown = self.help if self.flag else f"{self.help} (default: {self.default})"
        return shown.replace("%", "%%")

    @property
    def key(self) -> str:
        """The name with underscores (`n_tokens`): a RunConfig field, a Session.from_options and lib.run keyword."""
        return self.name.replace("-", "_")

    @property
    def dest(self) -> str:
        """pytest's and argparse's destination."""
        return "dphi_" + self.key


def batch_size_value(text: str) -> int | str:
    """--batch-size's text: a whole number as int, anything else as given (`check_batch_size` names it)."""
    try:
        return int(text)
    except ValueError:
        return text


OPTIONS: tuple[Option, ...] = (
    Option("device", "auto", "device for the forward passes", choices=("auto", "cpu", "cuda", "mps")),
    Option(
        "model",
        DEFAULT_MODEL,
        "Hub name (default GPT-2 small), a local directory in Hugging Face format, "
        "or an embedded model's name (tiny-wikitext); a comma-separated list runs each",
        listed=True,
    ),
    Option(
        "dataset",
        DEFAULT_DATASET,
        "WikiText-2 raw test split (default: a local copy, else `datasets` Salesforce/wikitext), "
        "hf:NAME[:CONFIG[:SPLIT[:COLUMN]]] (any `datasets` dataset), or a path to a UTF-8 text file; "
        "a comma-separated list runs each",
        listed=True,
    ),
    Option(
        "n-tokens",
        1000,
        "number of token positions collected (the write-up: 1000)",
        type=int,
        check=at_least(2, " (PCA needs two positions)"),
    ),
    Option(
        "windows",
        1,
        "token windows: N disjoint windows of --n-tokens positions each, every one starting with BOS; "
        "window 0 is the text's start (the write-up's), window w follows the text tokens of windows 0..w-1",
        type=int,
        run=False,
        check=at_least(1),
    ),
    Option(
        "numerics",
        "compat",
        "compat: HookedTransformer-equivalent (fold LayerNorm, centre writing weights), "
        "as the write-up's legacy loader; raw: Hugging Face numerics; compat,raw runs both",
        choices=("compat", "raw"),
        listed=True,
    ),
    Option(
        "positions",
        "all",
        "which positions count: all (BOS included, as to_tokens(text)[:, :n]) or text (BOS positions left out); "
        "all,text runs both",
        choices=("all", "text"),
        listed=True,
    ),
    Option(
        "pca",
        "centred",
        "centred PCA (mean removed, as scikit-learn) or uncentred (second moment)",
        choices=("centred", "uncentred"),
    ),
    Option(
        "attention",
        "sdpa",
        "attention kernel during capture and 7D: sdpa (fused where a load-time probe shows it equals the bridge's "
        "own attention on this model, to 1e-5; the bridge's own elsewhere) or eager (the bridge's own everywhere)",
        choices=("sdpa", "eager"),
    ),
    Option(
        "dtype",
        "float32",
        "dtype of the weights and forward passes: float32 (the write-up), bfloat16 or float16 (half the memory; "
        "statistics stay float64; what it costs: docs/dtype.md); a comma-separated list runs each "
        "(the report's claim x run matrix shows a verdict that changes with it)",
        choices=DTYPES,
        listed=True,
    ),
    Option(
        "ks",
        "8,16,32,64,128,256,512",
        "7D's K list, comma-separated; d_model is always added and values above it dropped",
        check=k_list,
    ),
    Option(
        "batch-size",
        "auto",
        "sequences (chunks x projections) per forward pass: a whole number, or auto (1 on cpu, "
        "8 on cuda, 4 on mps); never changes a number",
        type=batch_size_value,
        run=False,
        check=whole_or_auto,
    ),
    Option("cache-dir", None, f"on-disk cache (default: ${CACHE_ENV} or the user cache dir)", run=False),
    Option(
        "bootstrap",
        0,
        "R > 0: a moving-block bootstrap of the positions, R replicates (docs/uncertainty.md): a 95% interval "
        "for every cell, the stability of every verdict (UNSTABLE below 0.95); a baseline then fails only on "
        "changes beyond that noise; needs the held capture",
        type=int,
        run=False,
        check=at_least(0),
    ),
    Option(
        "bootstrap-block",
        0,
        "--bootstrap's block length in positions (neighbours share their context: Künsch 1989): 0 (default) "
        "sets it by Politis and White's rule, capped at a quarter of a chunk; N >= 1 sets it to N; blocks stay "
        "within a chunk, each chunk's BOS is kept once; the seed is fixed (0)",
        type=int,
        run=False,
        check=at_least(0),
    ),
    Option(
        "bootstrap-interval",
        "prediction",
        "--bootstrap's interval: prediction (where a fresh sample of as many positions would land) or "
        "population (the basic interval for the population value); docs/uncertainty.md",
        choices=("prediction", "population"),
        run=False,
    ),
    Option(
        "bootstrap-refit",
        False,
        "--bootstrap: run 7D's (and 7F, 7H's) projected passes of K <= 16 with each replicate's own bases "
        "(4 passes per replicate for 7D); without it every K keeps the full fit's bases and its interval is a lower bound",
        run=False,
        flag=True,
    ),
    Option(
        "write-up",
        None,
        "the write-up whose claims are judged: a directory with write-up.toml and claims.toml "
        "(default: Experiment 7, lib/writeup/exp7; docs/adding-a-claim.md)",
        run=False,
    ),
    Option(
        "refresh",
        False,
        "recompute every cache entry the run reads, whatever the cache holds (docs/cache.md)",
        run=False,
        flag=True,
    ),
    Option(
        "skip-unavailable",
        False,
        "a run whose model or text cannot be had here (offline, mistyped) skips its tests instead of stopping "
        "the session with an error",
        run=False,
        flag=True,
    ),
    Option(
        "follow-ups",
        False,
        "also run the follow-up experiments 7F-7H (docs/followups.md); about as many passes again as 7D",
        run=False,
        flag=True,
    ),
    Option(
        "fragility",
        False,
        "also search, for every claim and table cell, the fewest positions whose removal flips its verdict, "
        "verified by recomputing the tables without them (docs/fragility.md); needs the held capture",
        run=False,
        flag=True,
    ),
)
"""Every option of a session, for the pytest group and `python -m lib tables` alike (lib/session.py)."""


def option(name: str) -> Option:
    """The option named `name` (without dashes): its default, choices and list-ness, for every check."""
    for o in OPTIONS:
        if o.name == name:
            return o
    raise KeyError(name)


def split(name: str, value: str) -> list[str]:
    """'a, b,a' -> ['a', 'b']: the values of a list option, in order, each once, each allowed."""
    values = list(dict.fromkeys(v.strip() for v in str(value).split(",") if v.strip()))
    if not values:
        raise ConfigError(f"--{name} {value!r}: expected one value or a comma-separated list")
    allowed = option(name).choices
    bad = [v for v in values if allowed and v not in allowed]
    if bad:
        raise ConfigError(
            f"--{name} {bad[0]!r} is not allowed; allowed: {', '.join(allowed or ())} (or a comma-separated list of them)"
        )
    return values


def validate(values: Mapping[str, Any]) -> dict[str, Any]:
    """Every option's constraint, in one loop (scikit-learn's _parameter_constraints): `values` by
    Option.key -> the values accepted (a K list parsed; list options as given, each of their values
    checked). ConfigError names the first bad value and what is allowed. Keys that are no option pass."""
    accepted = dict(values)
    for o in OPTIONS:
        if o.key not in values:
            continue
        value = values[o.key]
        if o.listed:
            split(o.name, value)
        elif o.choices and value not in o.choices:
            raise ConfigError(f"--{o.name} {value!r} is not allowed; allowed: {', '.join(o.choices)}")
        if o.check is not None:
            accepted[o.key] = o.check(o.name, value)
    return accepted


def cache_dir(value: str | None) -> str:
    """The cache directory: the option, else $DPHI_CACHE_DIR, else the user cache dir."""
    if value:
        return value
    if os.environ.get(CACHE_ENV):
        return os.environ[CACHE_ENV]
    from platformdirs import user_cache_dir

    return user_cache_dir("dphi-claims")


def checkout_root() -> Path:
    """The project's checkout (models/, snapshots/, the git commit; ../shared beside it): lib's
    parent where lib is used in place (the checkout on sys.path, or `pip install -e .`), else the
    working directory (lib installed as a copy, pytest run from a checkout)."""
    here = Path(__file__).resolve().parents[2]
    return here if (here / "pyproject.toml").is_file() else Path.cwd()


ROOT = checkout_root()

"""Load the text and select the token positions Δφ is collected at.

Default (DESIGN.md): WikiText-2 raw, test split, rows joined as they come
(`"".join(rows)`); BOS prepended, then the first `n_tokens` tokens as one sequence;
past the model's context, consecutive chunks of `n_ctx`, each starting with BOS.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from lib.errors import ConfigError, ResourceUnavailable
from lib.setup.model_source import hub_reachable
from lib.setup.options import DEFAULT_DATASET, ROOT

if TYPE_CHECKING:
    import torch

HF_DATASET = ("Salesforce/wikitext", DEFAULT_DATASET, "test", "text")
"""The default text by its canonical id (the bare `wikitext` is a legacy alias of it)."""
HF_PREFIX = "hf:"
"""--dataset hf:NAME[:CONFIG[:SPLIT[:COLUMN]]]: any `datasets` dataset (split test, column text by default)."""
LOCAL_COPY_ENV = "DPHI_WIKITEXT2_TEST"
KNOWN_TEXTS = {"sha256:bbf94c53a05abe9e": "wikitext-2-raw-test"}
"""Readable names of texts known by content hash (used in run ids and snapshot names)."""
UNAVAILABLE = (
    "WikiText-2 (datasets: Salesforce/wikitext, wikitext-2-raw-v1, test) is not in the `datasets` cache, no local "
    f"copy was found (${LOCAL_COPY_ENV}, ../shared/data/wikitext-2-raw/wiki.test.raw) and the Hub cannot be "
    "reached from here. Run once with network access, or pass --dataset <text file>"
)


def local_copies() -> list[Path]:
    """Files holding the default text: $DPHI_WIKITEXT2_TEST if set (empty: none), else the
    workspace copy beside the project (WikiText-2 raw test, its non-empty rows, LF), whose text
    is "".join(rows) of the `datasets` split.
    """
    env = os.environ.get(LOCAL_COPY_ENV)
    if env is not None:
        return [Path(env)] if env else []
    return [ROOT.parent / "shared" / "data" / "wikitext-2-raw" / "wiki.test.raw"]


@contextmanager
def _datasets_offline() -> Iterator[None]:
    """Make `datasets` answer from its cache only, without 20 s of retries."""
    import datasets.config

    saved = datasets.config.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE = saved


def hf_spec(name: str) -> tuple[str, str | None, str, str]:
    """'hf:NAME[:CONFIG[:SPLIT[:COLUMN]]]' -> (NAME, CONFIG or None, SPLIT, COLUMN)."""
    parts = name.removeprefix(HF_PREFIX).split(":")
    if not parts[0] or len(parts) > 4:
        raise ConfigError(
            f"--dataset {name!r}: expected hf:NAME[:CONFIG[:SPLIT[:COLUMN]]], e.g. hf:Salesforce/wikitext:wikitext-103-raw-v1:test:text"
        )
    path, config, split, column = (parts + [""] * 3)[:4]
    return path, config or None, split or "test", column or "text"


def _hf_text(path: str, config: str | None, split: str, column: str, unavailable: str) -> str:
    """The rows of a `datasets` split joined as they come (from its cache when the Hub is unreachable)."""
    import datasets

    try:
        if hub_reachable():
            rows = datasets.load_dataset(path, config, split=split)
        else:
            with _datasets_offline():
                rows = datasets.load_dataset(path, config, split=split)
    except Exception as e:  # noqa: BLE001 - datasets raises many kinds when the cache is empty
        raise ResourceUnavailable(unavailable) from e
    if column not in rows.column_names:
        raise ConfigError(
            f"--dataset: {path} ({config}, {split}) has no column {column!r}; its columns: {', '.join(rows.column_names)}"
        )
    return "".join(rows[column])


def _default_text() -> str:
    """WikiText-2 raw test: a local copy, else `datasets` (from its cache when the Hub is unreachable)."""
    local = next((p for p in local_copies() if p.is_file()), None)
    if local is not None:
        return local.read_text(encoding="utf-8")
    return _hf_text(*HF_DATASET, UNAVAILABLE)


def _text_of_spec(name: str) -> str:
    path, config, split, column = hf_spec(name)
    return _hf_text(
        path,
        config,
        split,
        column,
        (
            f"dataset {name!r} is not in the `datasets` cache and the Hub cannot be reached from here. Run once with "
            "network access, or pass --dataset <text file>"
        ),
    )


def _sha(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def resolve_dataset(name: str) -> tuple[str, str]:
    """(location, revision) for --dataset; the revision is the text's sha256, or 'unavailable: why'.

    The default text is identified by its content, so the `datasets` split and a local copy
    of the same text share cache entries and snapshots.
    """
    if name == DEFAULT_DATASET or name.startswith(HF_PREFIX):
        if name != DEFAULT_DATASET:
            hf_spec(name)  # a malformed spec is an error, not an unavailable text
        try:
            return name, _sha(load_text(name))
        except ResourceUnavailable as e:
            return name, f"unavailable: {e}"
    path = Path(name).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"--dataset {name!r}: no such file; expected {DEFAULT_DATASET!r} (WikiText-2 raw test), "
            "hf:NAME[:CONFIG[:SPLIT[:COLUMN]]] (a `datasets` dataset) or the path of a UTF-8 text file"
        )
    return str(path.resolve()), _sha(read_utf8(path, name))


def read_utf8(path: Path, shown: str) -> str:
    """The text of a --dataset file, which must be UTF-8."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"--dataset {shown!r} is not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start} "
            "cannot be decoded); expected a UTF-8 text file (convert it, e.g. iconv -t utf-8)"
        ) from None


def load_text(dataset: str) -> str:
    """The whole text of a resolved dataset location."""
    if dataset == DEFAULT_DATASET:
        return _default_text()
    if dataset.startswith(HF_PREFIX):
        return _text_of_spec(dataset)
    return read_utf8(Path(dataset), dataset)


def window_text_tokens(n_tokens: int, n_ctx: int, positions: str) -> int:
    """Text tokens one window of n_tokens positions uses: select_tokens' chunks, counted in closed form.

    positions='text': one counted position per text token. positions='all': each chunk of n_ctx
    positions holds BOS and n_ctx - 1 text tokens; a last partial chunk of r positions holds r - 1.
    """
    if positions != "all":
        return n_tokens
    full, rest = divmod(n_tokens, n_ctx)
    return full * (n_ctx - 1) + max(rest - 1, 0)


def check_text_size(text: str, n_tokens: int, n_ctx: int | None, positions: str, window: int = 0) -> None:
    """ConfigError when windows 0 .. window of n_tokens positions cannot fit the text, decided
    from its length in bytes, before tokenising it: every token covers at least one byte of
    the text (byte-level BPE; a SentencePiece tokenizer may add one leading piece, hence + 1).
    What passes here may still not fit: select_tokens counts exactly.

    n_ctx: the model's context (None: unknown, the bound then assumes the most BOS, n_ctx 2).
    """
    n_bytes = len(text.encode("utf-8"))
    most_text = n_bytes + 1
    ctx = max(n_ctx or 2, 2)
    most = most_text + (-(-most_text // (ctx - 1)) if positions == "all" else 0)  # one BOS per chunk
    if n_tokens > most:
        raise ConfigError(
            f"--n-tokens {n_tokens} is larger than the text provides: its {n_bytes:,} bytes hold at most "
            f"{most:,} positions with --positions {positions} (a token covers at least one byte)"
        )
    per_window = window_text_tokens(n_tokens, ctx, positions)
    if window and (window + 1) * per_window > most_text:
        raise ConfigError(
            f"--windows {window + 1} with --n-tokens {n_tokens}: the windows need at least "
            f"{(window + 1) * per_window:,} text tokens, but the text's {n_bytes:,} bytes hold at most "
            f"{most_text:,}; at most {most_text // per_window} windows fit"
        )


@dataclass(frozen=True)
class Selection:
    """The token chunks fed to the model and which of their positions are collected."""

    chunks: tuple[torch.Tensor, ...]
    """Each (T_i,) int64, starting with BOS; T_i <= n_ctx."""
    counted: tuple[torch.Tensor, ...]
    """Each (T_i,) bool: the positions whose Δφ is collected."""

    @property
    def n_positions(self) -> int:
        return int(sum(int(c.sum()) for c in self.counted))

    @cached_property
    def where(self) -> list[tuple[int, int]]:
        """(chunk, position within the chunk) of every counted position, in capture order."""
        return [(c, p) for c, mask in enumerate(self.counted) for p in mask.nonzero().flatten().tolist()]


def select_tokens(
    text_ids: list[int], bos_id: int, n_tokens: int, n_ctx: int, positions: str, window: int = 0
) -> Selection:
    """The first `n_tokens` collected positions: chunks of BOS + up to n_ctx - 1 text tokens.

    positions='all' counts every position (BOS too, as `to_tokens(text)[:, :n_tokens]`);
    'text' counts only the text tokens. Window w starts after the text tokens windows
    0 .. w-1 use (window_text_tokens each): windows share no text token.
    """
    import torch

    count_bos = positions == "all"
    start = window * window_text_tokens(n_tokens, n_ctx, positions)
    chunks, counted, used, remaining = [], [], start, n_tokens
    while remaining > 0:
        n_text = min(n_ctx - 1, remaining - 1 if count_bos else remaining)
        if used + n_text > len(text_ids):
            most = len(text_ids) + (-(-len(text_ids) // (n_ctx - 1)) if count_bos else 0)
            per_window = window_text_tokens(n_tokens, n_ctx, positions)
            if window:
                raise ConfigError(
                    f"--windows {window + 1} with --n-tokens {n_tokens}: window {window} needs text tokens "
                    f"{start}..{start + per_window - 1}, but the text has {len(text_ids)}; at most "
                    f"{len(text_ids) // per_window} windows fit"
                )
            raise ConfigError(
                f"--n-tokens {n_tokens} is larger than the text provides: it has {len(text_ids)} "
                f"tokens, enough for at most {most} positions with --positions {positions}"
            )
        chunk = torch.tensor([bos_id, *text_ids[used : used + n_text]], dtype=torch.long)  # (T,)
        mask = torch.ones_like(chunk, dtype=torch.bool)
        mask[0] = count_bos
        chunks.append(chunk)
        counted.append(mask)
        used += n_text
        remaining -= int(mask.sum())
    return Selection(tuple(chunks), tuple(counted))


def tokenize(tokenizer: object, text: str) -> list[int]:
    """Token ids of the whole text, without special tokens."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        return list(backend.encode(text, add_special_tokens=False).ids)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])  # type: ignore[operator]

"""What a run's boot keeps in the cache: the tokenized text, keyed by the text and the tokenizer."""

from __future__ import annotations

import lib.tables.run
from lib.measure.store import Store
from lib.tables.run import Run, Shared


def test_a_second_process_reads_the_tokens_and_a_changed_tokenizer_recomputes(
    make_model, make_config, text_file, tmp_path, monkeypatch
):
    calls: list[int] = []
    real = lib.tables.run.tokenize
    monkeypatch.setattr(lib.tables.run, "tokenize", lambda t, text: calls.append(1) or real(t, text))
    config = make_config(make_model(n_layer=1), text_file)
    store = Store(tmp_path / "cache")
    first = Run(config, store, shared=Shared())
    ids = first.shared.text_ids(config, first.bridge.tokenizer, store)
    assert calls == [1] and ids == real(first.bridge.tokenizer, text_file.read_text())
    again = Run(config, store, shared=Shared())  # a new process: nothing shared in memory
    assert again.shared.text_ids(config, again.bridge.tokenizer, store) == ids
    assert calls == [1], "the second run tokenized the text again"

    tokenizer = again.bridge.tokenizer
    tokenizer.backend_tokenizer.normalizer = __import__("tokenizers").normalizers.Lowercase()
    Shared().text_ids(config, tokenizer, store)
    assert calls == [1, 1], "a tokenizer with another normalizer must not read the old tokens"
    assert list(store.root.glob("tokens-*.safetensors")), "no tokens entry in the store"

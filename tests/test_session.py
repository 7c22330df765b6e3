"""One session for both front ends (lib/session.py): options validated once, flags declared once,
rank 0 decided once, the plugin's state on the session."""

from __future__ import annotations

import argparse
import inspect
from pathlib import Path

import pytest

import lib.plugin
from lib.cli import parser
from lib.errors import ConfigError
from lib.measure import distributed
from lib.session import Session
from lib.setup.options import OPTIONS

ROOT = Path(__file__).resolve().parent.parent


def _values(model: Path, text: Path, tmp_path: Path, **more: object) -> dict[str, object]:
    return {"model": str(model), "dataset": str(text), "device": "cpu", "cache_dir": str(tmp_path), **more}


def test_a_session_builds_every_run_once(make_model, text_file, tmp_path):
    model = make_model()
    session = Session.from_options(_values(model, text_file, tmp_path, n_tokens=20, windows=2, positions="all,text"))
    assert len(session.runs) == 4 and len(set(session.runs)) == 4
    assert {c.window for c in session.runs.values()} == {0, 1}
    label = next(iter(session.runs))
    assert session.run(label) is session.run(label)  # one Run (its model, tokens, tables) per label
    assert session.store.root == tmp_path


@pytest.mark.parametrize(
    ("option", "value", "named"),
    [
        ("batch_size", "many", "--batch-size 'many'"),
        ("batch_size", 0, "--batch-size 0"),
        ("windows", 0, "--windows 0"),
        ("positions", "all,some", "--positions 'some'"),
        ("pca", "sideways", "--pca 'sideways'"),
        ("n_tokens", 1, "--n-tokens 1"),
        ("bootstrap_block", -1, "--bootstrap-block -1"),
        ("bootstrap_interval", "percentile", "--bootstrap-interval 'percentile'"),
    ],
)
def test_a_bad_value_is_one_error_naming_it(option, value, named, make_model, text_file, tmp_path):
    with pytest.raises(ConfigError, match=f"^{named}"):
        Session.from_options(_values(make_model(), text_file, tmp_path, **{option: value}))


def test_an_unknown_option_is_named(tmp_path):
    with pytest.raises(ConfigError, match="unknown options \\['n_token'\\]"):
        Session.from_options({"n_token": 3, "cache_dir": str(tmp_path)})


def test_a_size_that_cannot_fit_stops_the_session_before_any_model_work(make_model, text_file, tmp_path, monkeypatch):
    import lib.tables.run

    monkeypatch.setattr(lib.tables.run.Shared, "bridge", lambda *a: pytest.fail("the model was loaded"))
    with pytest.raises(ConfigError, match="larger than the text provides"):
        Session.from_options(_values(make_model(), text_file, tmp_path, n_tokens=10**9))


def test_an_unreadable_baseline_is_a_session_error(make_model, text_file, tmp_path):
    with pytest.raises(ConfigError, match="^--claims-baseline: claims JSON .* cannot be read"):
        Session.from_options(_values(make_model(), text_file, tmp_path), baseline=str(tmp_path / "none.json"))


def _pytest_flags() -> dict[str, str]:
    class Group:
        options: dict[str, str] = {}

        def getgroup(self, *a: object, **k: object) -> Group:
            return self

        def addoption(self, name: str, **kw: object) -> None:
            self.options[name] = str(kw.get("help"))

    group = Group()
    lib.plugin.pytest_addoption(group)  # type: ignore[arg-type]
    return group.options


def _cli_flags() -> dict[str, str]:
    sub = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction)).choices["tables"]
    return {a.option_strings[0]: str(a.help) for a in sub._actions if a.option_strings}


def test_session_options_are_declared_once_for_both_front_ends():
    """Every option of the table, flags included, reaches pytest and `python -m lib tables` with the
    same help, with its default, escaped for argparse (tests/test_help.py runs it)."""
    pytest_flags, cli_flags = _pytest_flags(), _cli_flags()
    for o in OPTIONS:
        assert cli_flags[f"--{o.name}"] == pytest_flags[f"--{o.name}"] == o.argparse_help
        assert o.argparse_help.startswith(o.help.replace("%", "%%"))
    assert {"--refresh", "--follow-ups", "--fragility"} <= {f"--{o.name}" for o in OPTIONS if o.flag}


def test_rank_zero_is_known_before_the_process_group(monkeypatch):
    for name, value in {"WORLD_SIZE": "2", "LOCAL_RANK": "1", "RANK": "1"}.items():
        monkeypatch.setenv(name, value)
    assert not distributed.is_writer()
    monkeypatch.setenv("RANK", "0")
    assert distributed.is_writer()


def test_the_plugin_keeps_no_state_in_module_globals():
    """The session object holds the plugin's state (rows, tables, fragility): no mutable module global."""
    mutable = {
        name
        for name, value in vars(lib.plugin).items()
        if isinstance(value, dict | list | set) and not name.startswith("__") and not inspect.ismodule(value)
    }
    assert mutable == set()


def test_the_root_conftest_only_registers_the_plugin():
    text = (ROOT / "conftest.py").read_text()
    assert len(text.splitlines()) < 40 and 'pytest_plugins = ["lib.plugin"]' in text


@pytest.mark.parametrize("o", [o for o in OPTIONS if o.choices or o.check], ids=lambda o: o.name)
def test_every_declared_constraint_is_checked_once_at_the_boundary(o, tmp_path):
    """Each option's constraint is declared in its entry (choices, check) and one loop applies it: a bad
    value is one ConfigError naming the option and the value, before any run is built."""
    from lib.setup.options import validate

    bad = "nonsense" if o.choices else -5
    with pytest.raises(ConfigError, match=rf"^--{o.name} '?{bad}'?"):
        validate({o.key: bad})
    with pytest.raises(ConfigError, match=rf"^--{o.name} '?{bad}'?"):
        Session.from_options({o.key: bad, "cache_dir": str(tmp_path)})
    assert validate({o.key: o.default})[o.key] is not None or o.default is None

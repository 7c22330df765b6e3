"""A write-up: its document (set-up, sections, tables, cells: write-up.toml), its claims (claims.toml:
predicates by name or `check` expressions, [constants]) and, where it has one, its own predicates.py,
from one directory. exp7 (lib/writeup/exp7/) is the default; `--write-up DIR` points the suite at another
(docs/adding-a-claim.md)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from lib.writeup.claims import CLAIMS, Claim, load_claims
from lib.writeup.document import DOCUMENT, EXP7, Cell, Document, Tables, load_document
from lib.writeup.registry import load_predicates

FILES = ("write-up.toml", "claims.toml", "predicates.py")
"""A write-up's files (predicates.py optional): their bytes are its digest."""


@dataclass(frozen=True)
class WriteUp:
    """What one write-up says: the numbers of its tables and its sentences."""

    directory: Path
    document: Document
    claims: tuple[Claim, ...]

    @property
    def tables(self) -> Tables:
        """The write-up's own tables, in the shape of the measured ones (a predicate runs on either)."""
        return self.document.tables

    @property
    def cells(self) -> tuple[Cell, ...]:
        return self.document.cells

    @property
    def sections(self) -> tuple[tuple[str, str], ...]:
        """(id, title) of each section, in order: its [sections], else the sections its cells and claims
        name, in the order they first appear, each its own title."""
        if self.document.sections:
            return self.document.sections
        named = dict.fromkeys([c.section for c in self.cells] + [c.section for c in self.claims])
        return tuple((s, s) for s in named)

    @property
    def section_ids(self) -> tuple[str, ...]:
        return tuple(s for s, _ in self.sections)

    def section_title(self, section: str) -> str:
        return dict(self.sections).get(section, section)

    def cells_in(self, *sections: str) -> list[Cell]:
        return self.document.cells_in(*sections)

    def claims_in(self, *sections: str) -> list[Claim]:
        return [c for c in self.claims if c.section in sections]

    @property
    def title(self) -> str:
        """The write-up's title (write-up.toml's `title`; its directory's name where it gives none)."""
        return self.document.title or self.directory.name

    @property
    def section_titles(self) -> dict[str, str]:
        """section id -> title, in the write-up's order: its [sections], then any other section its cells
        and claims name (titled by its id)."""
        titles = dict(self.document.sections)
        for section in [*(c.section for c in self.cells), *(c.section for c in self.claims)]:
            titles.setdefault(section, section)
        return titles

    @property
    def original(self) -> str:
        """The report's column for the original phrases: "original (exp7.ja.md)"; "" where no claim quotes one."""
        if not any(c.ja for c in self.claims):
            return ""
        return f"original ({self.document.original})" if self.document.original else "original"

    @property
    def is_default(self) -> bool:
        return self.directory == EXP7

    @property
    def digest(self) -> str:
        """sha256 of its files (write-up.toml, claims.toml, predicates.py): every cache entry whose content
        depends on verdicts keys on it, so that an edited check, constant or predicate recomputes it."""
        h = hashlib.sha256()
        for name in FILES:
            path = self.directory / name
            if path.is_file():
                h.update(name.encode() + b"\0" + path.read_bytes())
        return h.hexdigest()[:16]


def load_write_up(directory: str | Path | None = None) -> WriteUp:
    """The write-up in `directory` (write-up.toml, claims.toml, predicates.py if any), exp7 when None;
    ValueError naming the file and what is wrong, before any model work."""
    if directory is None or Path(directory).resolve() == EXP7.resolve():
        return EXP7_WRITE_UP
    path = Path(directory).expanduser().resolve()
    if not path.is_dir():
        raise ValueError(
            f"--write-up {str(directory)!r}: no such directory; expected one with write-up.toml and claims.toml"
        )
    claims = path / "claims.toml"
    if not claims.is_file():
        raise ValueError(f"--write-up {str(directory)!r}: no claims.toml in it")
    if (path / "predicates.py").is_file():
        load_predicates(path / "predicates.py")
    document = load_document(path)
    return WriteUp(path, document, load_claims(claims, document, document.section_ids))


EXP7_WRITE_UP = WriteUp(EXP7, DOCUMENT, CLAIMS)
"""The default write-up: Experiment 7 (lib/writeup/exp7/)."""

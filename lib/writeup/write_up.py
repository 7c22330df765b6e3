"""A write-up: its document (set-up, tables, cells: write-up.toml) and its claims (claims.toml), from one
directory. exp7 (lib/writeup/exp7/) is the default; `--write-up DIR` points the suite at another one, whose
sentences name predicates of lib/writeup/predicates/ (docs/adding-a-claim.md)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lib.writeup.claims import CLAIMS, Claim, load_claims
from lib.writeup.document import DOCUMENT, EXP7, Cell, Document, Tables, load_document


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


def load_write_up(directory: str | Path | None = None) -> WriteUp:
    """The write-up in `directory` (write-up.toml and claims.toml), exp7 when None; ValueError naming the
    file and what is wrong."""
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
    return WriteUp(path, load_document(path), load_claims(claims))


EXP7_WRITE_UP = WriteUp(EXP7, DOCUMENT, CLAIMS)
"""The default write-up: Experiment 7 (lib/writeup/exp7/)."""

"""Files cut into units (line, paragraph, document) that remember where they came from, streamed.

    for p in passages(["notes/"], "paragraph"):
        p.file, p.line, p.offset, p.data      # 1-based line of its first byte, byte offset, the bytes

Files are read line by line, so a corpus larger than memory streams through (a `document` is held whole).
Blank lines (only whitespace) separate paragraphs and are never a line passage.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..data.corpus import resolve_paths
from ..errors import SeqlabError

UNITS = ("word", "line", "paragraph", "document")
PASSAGE_UNITS = UNITS[1:]
TEXT_KEPT = 1000  # bytes of a passage's text kept in its metadata (the vector covers all of it)


@dataclass
class Passage:
    file: str
    line: int
    offset: int
    data: bytes

    def meta(self) -> dict:
        text = self.data[:TEXT_KEPT].decode("utf-8", errors="replace")
        return {"text": text, "file": self.file, "line": self.line, "offset": self.offset, "bytes": len(self.data)}


def check_unit(unit: str, allowed=UNITS) -> str:
    if unit not in allowed:
        raise SeqlabError(f"unknown unit {unit!r}; choose one of: {', '.join(allowed)}")
    return unit


def corpus_files(paths: list[str]) -> list[Path]:
    """Files, directories (recursive) and globs -> files, checked before any work."""
    if not paths:
        raise SeqlabError("give at least one file or directory")
    files = resolve_paths(list(paths))
    for f in files:
        if not f.is_file():
            raise SeqlabError(f"not a regular file: {f}")
    return files


def passages(files, unit: str) -> Iterator[Passage]:
    for path in files:
        try:
            yield from _file_passages(Path(path), unit)
        except OSError as e:
            raise SeqlabError(f"cannot read {path}: {e.strerror}") from None


def _file_passages(path: Path, unit: str) -> Iterator[Passage]:
    name = str(path)
    if unit == "document":
        data = path.read_bytes()
        if data.strip():
            yield Passage(name, 1, 0, data)
        return
    offset, block, block_line, block_offset = 0, [], 0, 0
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            blank = not raw.strip()
            if unit == "line":
                if not blank:
                    yield Passage(name, number, offset, raw.rstrip(b"\r\n"))
            elif blank:
                if block:
                    yield Passage(name, block_line, block_offset, b"".join(block).rstrip(b"\r\n"))
                    block = []
            else:
                if not block:
                    block_line, block_offset = number, offset
                block.append(raw)
            offset += len(raw)
    if block:
        yield Passage(name, block_line, block_offset, b"".join(block).rstrip(b"\r\n"))


def count_passages(files, unit: str) -> int:
    """How many passages `passages` will yield (a cheap first pass: no model)."""
    return sum(1 for _ in passages(files, unit))

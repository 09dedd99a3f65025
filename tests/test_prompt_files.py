"""Prompt files: named for what their KV depends on, put in place whole, trimmed by last use."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from serving import prompt_files
from serving.prompt_files import PromptFiles

SETTINGS = {"kv": "q8_0", "slots": 13, "context": 6656}


@pytest.fixture
def model_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("POLYGLOT_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "model.gguf"
    path.write_bytes(b"weights")
    return path


def _files(model_file: Path, build: str = "2026.10", **settings) -> PromptFiles:
    found = PromptFiles.in_cache(model_file, build, {**SETTINGS, **settings})
    assert found is not None
    return found


def test_a_name_changes_with_the_prompt_the_model_file_the_build_and_the_cache(model_file: Path):
    files = _files(model_file)
    assert files.folder == model_file.parent / "cache" / "llama-prompts"
    name = files.name([1, 2, 3])
    assert name == _files(model_file).name([1, 2, 3])  # the next start finds it
    others = {
        files.name([1, 2, 4]),
        _files(model_file, build="2026.11").name([1, 2, 3]),
        _files(model_file, slots=8).name([1, 2, 3]),
        _files(model_file, kv="f16").name([1, 2, 3]),
    }
    model_file.write_bytes(b"other weights")  # a model replaced in place
    others.add(_files(model_file).name([1, 2, 3]))
    assert name not in others and len(others) == 5


def _write(files: PromptFiles, prompt: list[int], size: int) -> str:
    draft = files.draft(prompt)
    (files.folder / draft).write_bytes(b"k" * size)  # as llama.cpp writes a slot
    return files.keep(draft, prompt)


def test_a_kept_file_is_found_and_one_not_kept_is_not(model_file: Path):
    files = _files(model_file)
    assert files.find([7]) is None
    name = _write(files, [7], 10)
    assert files.find([7]) == name
    assert [path.name for path in files.folder.iterdir()] == [name]  # the draft was moved
    files.forget(name)
    assert files.find([7]) is None


def test_the_folder_keeps_the_files_used_last_within_its_limit(
    model_file: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(prompt_files, "LIMIT_BYTES", 250)
    files = _files(model_file)
    names = [_write(files, [number], 100) for number in range(2)]
    os.utime(files.folder / names[0], ns=(1, 1))
    os.utime(files.folder / names[1], ns=(2, 2))
    assert files.find([0]) == names[0]  # used again: now the most recent
    _write(files, [2], 100)  # 300 bytes: the least recently used goes
    assert files.find([1]) is None
    assert files.find([0]) and files.find([2])


def test_a_draft_left_by_a_replica_that_died_is_removed_and_one_being_written_stays(
    model_file: Path,
):
    files = _files(model_file)
    left, writing = files.folder / "prompt-left-1.part", files.folder / "prompt-new-2.part"
    left.write_bytes(b"x")
    writing.write_bytes(b"x")
    hours_ago = time.time_ns() - 2 * 3600 * 10**9
    os.utime(left, ns=(hours_ago, hours_ago))
    _write(files, [1], 10)
    assert not left.exists() and writing.exists()


def test_a_cache_folder_that_cannot_be_written_keeps_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("POLYGLOT_CACHE", str(tmp_path / "a-file" / "cache"))
    assert PromptFiles.in_cache(tmp_path / "a-file", "2026.10", SETTINGS) is None

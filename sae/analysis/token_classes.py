"""Coarse, rule-based token classes, for a label-based specificity score.

The classes are deliberately simple and cover every token (each token gets exactly one class):
whitespace/newline, digits, punctuation, function words, capitalised words, word starts (a
lowercase word with a leading space), word pieces (letters glued to the previous token), other.
"""
from __future__ import annotations

import string

import torch
from torch import Tensor

CLASSES = ("whitespace", "digit", "punctuation", "function_word", "capitalised", "word_start", "word_piece", "other")

# English function words, plus the Early Modern forms that dominate the default (Shakespeare) corpus.
FUNCTION_WORDS = frozenset("""
a an the and or but nor so yet for of in on at by to from with without within into onto upon about above
below under over after before since until till than as if then else when where while though although
because whether that this these those which who whom whose what i me my mine we us our ours you your yours
he him his she her hers it its they them their theirs is am are was were be been being have has had do does
did will would shall should can could may might must not no all any some each every both either neither
there here how why very too also just only more most such own same other
thou thee thy thine ye art hast hath dost doth shalt wilt wast ere o oh ay nay tis 'tis
""".split())

PUNCTUATION = set(string.punctuation) | set("“”‘’—–…«»¡¿")


def token_class(text: str) -> str:
    stripped = text.strip()
    if not stripped:
        return "whitespace"
    if stripped.isdigit():
        return "digit"
    if all(ch in PUNCTUATION for ch in stripped):
        return "punctuation"
    if stripped.lower() in FUNCTION_WORDS:
        return "function_word"
    if stripped.isalpha():
        if stripped[0].isupper():
            return "capitalised"
        return "word_start" if text[:1].isspace() else "word_piece"
    return "other"


def vocab_classes(tokenizer, vocab_size: int | None = None) -> Tensor:
    """[vocab] class index (into CLASSES) of every token id, decoded one id at a time so leading
    spaces are kept (decode of a single id keeps the 'Ġ' space)."""
    n = vocab_size or len(tokenizer)
    texts = tokenizer.batch_decode([[i] for i in range(n)])
    index = {c: i for i, c in enumerate(CLASSES)}
    return torch.tensor([index[token_class(t)] for t in texts], dtype=torch.long)

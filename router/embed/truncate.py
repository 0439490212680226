"""Cut long prompts by characters before tokenising, without changing the tokens the model sees.

A transformer embedder keeps only the first ``max_seq_length`` tokens, but a tokenizer still
normalises, pre-tokenises and aligns the whole string first: a 50 MB prompt took a minute and
7 GB of RAM to be truncated to 128 tokens. ``PromptTruncator`` hands the tokenizer a prefix that is
provably long enough instead:

- prompts shorter than ``max_tokens * CHARS_PER_TOKEN`` characters pass through untouched;
- a longer prompt is tokenised on a prefix that grows 4x at a time until the tokens kept from it
  all belong to words that end before the cut (so the cut cannot change them);
- no prefix ever exceeds ``max_tokens * CAP_CHARS_PER_TOKEN`` characters: a prompt whose first
  ``max_tokens`` tokens span more than that (megabytes of whitespace, or one enormous word) is cut there.
  That is the one case where the vector can differ from the untruncated tokenisation, and it
  bounds the time and memory any single prompt can cost.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

CHARS_PER_TOKEN = 16  # first prefix: ~3x the longest average token length of English, code or CJK text
CAP_CHARS_PER_TOKEN = 1024  # 128 tokens -> at most 131,072 characters tokenised per prompt
_GROWTH = 4
_LEADING_SPACE = re.compile(r"\s*")


class PromptTruncator:
    """``truncator(texts)`` -> the same texts, each cut to a prefix that tokenises to the same kept tokens.

    ``tokenizer`` is a ``tokenizers.Tokenizer`` (the one the model encodes with; a private copy
    without truncation or padding is made for counting), ``max_tokens`` the model's sequence
    length including its special tokens. Stateless after construction: safe to share across threads.
    """

    def __init__(self, tokenizer, max_tokens: int) -> None:
        from tokenizers import Tokenizer

        counter = Tokenizer.from_str(tokenizer.to_str())
        counter.no_truncation()
        counter.no_padding()
        self._counter = counter
        specials = tokenizer.post_processor.num_special_tokens_to_add(False) if tokenizer.post_processor else 0
        self.keep = max(int(max_tokens) - specials, 1)  # content tokens the model sees
        self.start = int(max_tokens) * CHARS_PER_TOKEN
        self.cap = int(max_tokens) * CAP_CHARS_PER_TOKEN

    def __call__(self, texts: Sequence[str]) -> list[str]:
        return [t if len(t) <= self.start else self._cut(t) for t in texts]

    def head(self, text: str) -> str:
        """``text.strip()`` cut to ``cap`` characters, without copying a huge text whole first."""
        start = _LEADING_SPACE.match(text).end()
        return text[start : start + self.cap].rstrip()

    def _cut(self, text: str) -> str:
        text = text[: self.cap]
        length = self.start
        while length < len(text):
            if self._enough(text[:length]):
                return text[:length]
            length *= _GROWTH
        return text

    def _enough(self, prefix: str) -> bool:
        """Do the first ``keep`` tokens of this prefix equal those of any longer text it starts?

        Only the last word of the prefix can be cut, so the kept tokens are safe when they end before it.
        """
        enc = self._counter.encode(prefix, add_special_tokens=False)
        words = enc.word_ids
        if len(words) <= self.keep:
            return False
        last_kept, last = words[self.keep - 1], words[-1]
        if last_kept is None or last is None:
            return False
        return last_kept != last

"""Huge prompts (issue 12, item 2): cut by characters without changing the tokens; no request waits for another."""

import threading

import numpy as np
import pytest
from tokenizers import Tokenizer

from router.embed import Embedder
from router.embed.truncate import PromptTruncator

MAX_SEQ = 128


@pytest.fixture(scope="module")
def tokenizer(embedder) -> Tokenizer:
    return embedder.load().tokenizer


@pytest.fixture(scope="module")
def full(tokenizer) -> Tokenizer:
    """The model's tokenizer as it runs on untruncated text: whole string, then the first 128 tokens."""
    tok = Tokenizer.from_str(tokenizer.to_str())
    tok.no_padding()
    tok.enable_truncation(MAX_SEQ)
    return tok


def _texts(seed: int, n: int) -> list[str]:
    """Long prompts built to put cuts in awkward places: long words, CJK, accents, whitespace runs, punctuation."""
    rng = np.random.default_rng(seed)
    pieces = ["hello", "unbelievable", "x" * 150, "你好", "   ", "\n\n", ",", "café", "a" * 99, "ÉCOLE",
              "\t", "don't", "3.14159", "def f(x): return x**2", "é" * 40, " " * 700]
    out = []
    for _ in range(n):
        words = int(rng.integers(200, 5000))
        out.append("".join(str(rng.choice(pieces)) + (" " if rng.random() < 0.7 else "") for _ in range(words)))
    return out


def test_cut_prompts_tokenise_to_exactly_the_tokens_of_the_whole_prompt(tokenizer, full):
    truncate = PromptTruncator(tokenizer, MAX_SEQ)
    texts = _texts(0, 200)
    cut = truncate(texts)
    assert all(len(c) <= len(t) for c, t in zip(cut, texts))
    assert sum(len(c) < len(t) for c, t in zip(cut, texts)) > 150  # the cut really happens
    for whole, prefix in zip(texts, cut):
        assert full.encode(prefix).ids == full.encode(whole).ids


def test_short_prompts_pass_through_untouched(tokenizer):
    truncate = PromptTruncator(tokenizer, MAX_SEQ)
    texts = ["who wrote hamlet", "", "x" * truncate.start]
    assert truncate(texts) == texts
    assert all(a is b for a, b in zip(truncate(texts), texts))


def test_no_prompt_hands_the_tokenizer_more_than_the_cap(tokenizer, full):
    """Megabytes of whitespace or one enormous word: cut at the cap, which bounds time and memory."""
    truncate = PromptTruncator(tokenizer, MAX_SEQ)
    spaces = "start" + " " * 5_000_000 + "end"
    blob = "QUJD" * 2_000_000  # one 8 MB word (e.g. base64): a single [UNK] however long
    cut_spaces, cut_blob = truncate([spaces, blob])
    assert len(cut_spaces) == len(cut_blob) == truncate.cap == MAX_SEQ * 1024
    assert full.encode(cut_blob).ids == full.encode(blob[:200]).ids  # [CLS] [UNK] [SEP] either way


def test_a_50_mb_prompt_embeds_as_its_prefix(embedder):
    huge = "the quick brown fox jumps over the lazy dog. " * 1_200_000  # 54 MB
    head = huge[:4000]  # far more than 128 tokens
    np.testing.assert_array_equal(embedder.encode([huge]), embedder.encode([head]))


@pytest.mark.exact_vectors  # equal to 1e-6, not to the bit: compared unperturbed
def test_torch_backend_truncates_the_same_way():
    torch_embedder = Embedder(backend="torch", threads=1)
    huge = "routing queries to language models " * 400_000  # 14 MB
    np.testing.assert_allclose(torch_embedder.encode([huge]), torch_embedder.encode([huge[:3000]]), atol=1e-6)


def test_a_request_never_waits_for_another_requests_embedding(embedder, nq, nq_X):
    """The ONNX service embeds without its lock: a request completes while the lock is held elsewhere."""
    from router.routers import KNNRouter
    from router.serve.service import RouterMeta, RouterService

    head = KNNRouter().fit(nq_X, nq.scores)
    meta = RouterMeta(models=list(nq.models), model_costs=[0.0] * len(nq.models),
                      embedder=embedder.settings(), router="knn")
    service = RouterService(embedder, head, meta)
    answers = []
    with service._lock:  # as if another request were embedding
        worker = threading.Thread(target=lambda: answers.append(service.route(["hi"])))
        worker.start()
        worker.join(timeout=30)
    assert answers and answers[0][0] in nq.models


def test_head_strips_like_str_strip_and_cuts_at_the_cap(tokenizer):
    truncate = PromptTruncator(tokenizer, MAX_SEQ)
    for text in ["  who wrote hamlet \n", "\u3000\u00a0x\x1c", "", " \t\n", "plain"]:
        assert truncate.head(text) == text.strip()
    huge = "\n  " + "word " * 1_000_000
    assert truncate.head(huge) == huge.strip()[: truncate.cap].rstrip()

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seqlab.data.tokenizer import BPETokenizer, ByteTokenizer, parse_tokenizer_spec
from seqlab.errors import SeqlabError

from conftest import structured_text


@pytest.fixture(scope="module")
def bpe():
    sample = structured_text(200).encode() + "naïve café — 東京\n".encode() * 20 + bytes(range(256))
    return BPETokenizer.train([sample], 300)


@given(st.binary(max_size=300))
def test_bytes_round_trip(data):
    tok = ByteTokenizer()
    ids = tok.encode(data)
    assert len(ids) == len(data) and tok.decode(ids) == data
    assert tok.bos_id not in set(ids.tolist())


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=300))
def test_bpe_round_trips_any_bytes(bpe, data):
    ids = bpe.encode(data)
    assert bpe.decode(ids) == data
    assert all(0 <= i < bpe.bos_id for i in ids)


def test_bpe_token_bytes_concatenate_to_text(bpe):
    text = "anna sees the cat.\nnaïve café\n".encode()
    ids = bpe.encode(text)
    assert len(ids) < len(text)  # merges were learned and used
    assert b"".join(bpe.token_bytes[i] for i in ids) == text


def test_bpe_never_produces_bos_from_text(bpe):
    assert bpe.bos_id not in bpe.encode(b"<|doc|> <|endoftext|>").tolist()


def test_bpe_save_load_identical(bpe, tmp_path):
    from seqlab.data.tokenizer import load_tokenizer, save_tokenizer

    save_tokenizer(bpe, tmp_path)
    again = load_tokenizer(tmp_path)
    text = structured_text(20, seed=3).encode()
    assert np.array_equal(again.encode(text), bpe.encode(text)) and again.vocab_size == bpe.vocab_size


@pytest.mark.parametrize("spec", ["bpe", "bpe:abc", "wordpiece", "bpe:10"])
def test_bad_tokenizer_spec(spec):
    with pytest.raises(SeqlabError):
        if parse_tokenizer_spec(spec)[0] == "bpe":
            BPETokenizer.train([b"abc"], parse_tokenizer_spec(spec)[1])

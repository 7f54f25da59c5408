"""`seqlab novelty`: exact matching statistics, where copies come from, the cache, the CLI."""

import json
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pytest

from seqlab.__main__ import main
from seqlab.data.corpus import split_document
from seqlab.novelty import novelty, open_index, run_index


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, corpus_file):
    """A run whose weights do not matter here (novelty reads only its corpus): three steps."""
    from conftest import tiny_config
    from seqlab.train import train

    return train(tiny_config(corpus_file, "lstm", steps=3), tmp_path_factory.mktemp("run"), log=lambda *a: None)


def brute_force(docs: list[bytes], text: bytes) -> list[int]:
    """Longest prefix of text[i:] found inside any single document, by trying every length."""
    out = []
    for i in range(len(text)):
        best = 0
        for doc in docs:
            m = 0
            while i + m < len(text) and text[i : i + m + 1] in doc:
                m += 1
            best = max(best, m)
        out.append(best)
    return out


def write_corpus(directory, docs: list[bytes]):
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.iterdir():
        old.unlink()
    for k, doc in enumerate(docs):
        (directory / f"doc{k}.txt").write_bytes(doc)
    return directory


small_alphabet = st.sampled_from([b"ab", b"abc", b"a\x00b", bytes(range(256))])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), alphabet=small_alphabet)
def test_matching_statistics_equal_brute_force(tmp_path, data, alphabet):
    """Exact on random corpora, including ones where every byte value occurs (no free separator)."""
    chars = st.sampled_from(list(alphabet))
    doc = st.lists(chars, max_size=40).map(bytes)
    docs = data.draw(st.lists(doc, min_size=1, max_size=3).filter(any))
    if data.draw(st.booleans()):
        docs[0] = bytes(range(256)) + docs[0]  # every byte occurs: separator matches must be checked
    text = data.draw(st.lists(st.sampled_from(list(alphabet) + [0]), max_size=30).map(bytes))
    if len(docs) > 1 and data.draw(st.booleans()):
        text = docs[0][-4:] + docs[1][:4] + text  # spans a document boundary: must not count as one copy
    index = open_index([str(write_corpus(tmp_path / "c", docs))], tmp_path / "index")
    lengths, offsets = index.matching_statistics(text)
    assert lengths.tolist() == brute_force(docs, text)
    for i, (n, at) in enumerate(zip(lengths.tolist(), offsets.tolist())):
        if n:
            assert bytes(index.corpus[at : at + n]) == text[i : i + n]


def test_longest_copy_location_on_multi_file_corpus(tmp_path):
    lines_a = [f"alpha line {k} of the first file\n".encode() for k in range(30)]
    lines_b = [f"beta {k}: something else entirely\n".encode() for k in range(30)]
    copied = b"THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG 0123456789\n"
    lines_b.insert(17, copied)  # line 18 of b.txt
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "a.txt").write_bytes(b"".join(lines_a))
    (tmp_path / "c" / "b.txt").write_bytes(b"".join(lines_b))
    index = open_index([str(tmp_path / "c")], tmp_path / "index")
    text = b"zz novel words qq " + copied[:-1] + b" qq more novel stuff"
    report = novelty(index, text, min_len=10)
    assert report["longest_copy"] == len(copied) - 1
    assert report["longest_copy_at"] == len(b"zz novel words qq ")
    assert report["longest_copy_text"] == copied[:-1].decode()
    offset = sum(map(len, lines_b[:17]))
    assert report["longest_copy_source"] == {"file": str((tmp_path / "c" / "b.txt").resolve()), "line": 18,
                                             "offset": offset}
    (span,) = report["spans"]
    assert (span["start"], span["end"]) == (18, 18 + len(copied) - 1)
    assert report["copied_fraction"] == (len(copied) - 1) / len(text)


def test_run_corpus_is_the_training_split(tmp_path, corpus_file, run_dir):
    """A run's index holds exactly the train part of each document: held-out text is not 'copied'."""
    index = run_index(run_dir)
    train_part, val_part = split_document(corpus_file.read_bytes(), 0.1)
    assert bytes(index.corpus) == train_part
    assert index.manifest["val_fraction"] == 0.1
    tail = val_part[-200:]
    assert novelty(index, train_part[-300:], 20)["longest_copy"] == 300
    # The grammar repeats, so held-out lines occur in the train part too; but never the whole held-out tail.
    assert novelty(index, tail, 20)["longest_copy"] < len(tail)


def test_cache_reused_then_rebuilt_when_the_corpus_changes(tmp_path):
    corpus = write_corpus(tmp_path / "c", [b"hello world, this is a corpus\n", b"second file\n"])
    first = open_index([str(corpus)], tmp_path / "index")
    assert first.built_now
    again = open_index([str(corpus)], tmp_path / "index")
    assert not again.built_now
    os.utime(corpus / "doc0.txt", ns=(1, 1))  # touched, same bytes: still reused
    assert not open_index([str(corpus)], tmp_path / "index").built_now
    (corpus / "doc1.txt").write_bytes(b"second file, now changed\n")
    changed = open_index([str(corpus)], tmp_path / "index")
    assert changed.built_now
    assert novelty(changed, b"now changed", 5)["longest_copy"] == len(b"now changed")
    (corpus / "doc2.txt").write_bytes(b"a new file\n")
    assert open_index([str(corpus)], tmp_path / "index").built_now


def test_cli_json_keys(tmp_path, capsys):
    corpus = write_corpus(tmp_path / "c", [b"the rain in spain stays mainly in the plain\n"])
    text = tmp_path / "t.txt"
    text.write_bytes(b"I said: the rain in spain stays mainly. Yes.")
    html = tmp_path / "out.html"
    assert main(["novelty", "--corpus", str(corpus), str(text), "--min-len", "8", "--json", "--html", str(html)]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("longest_copy", "longest_copy_source", "longest_copy_text", "copied_fraction", "min_len", "spans"):
        assert key in out
    assert out["longest_copy"] == len("the rain in spain stays mainly")
    assert out["longest_copy_source"]["line"] == 1 and out["longest_copy_source"]["file"].endswith("doc0.txt")
    assert out["min_len"] == 8
    assert out["copied_fraction"] == out["longest_copy"] / len(text.read_bytes())
    assert "<mark" in html.read_text()


def test_cli_text_view_marks_copies_when_not_a_tty(tmp_path, capsys, run_dir):
    text = tmp_path / "t.txt"
    text.write_bytes(b"QQQ anna sees the cat.\nbob takes it.\nZZZ")
    assert main(["novelty", str(run_dir), str(text), "--min-len", "10"]) == 0
    out = capsys.readouterr().out
    assert "«" in out and "\x1b[" not in out
    assert "longest copy:" in out and "copied:" in out


def test_bad_input_is_one_line_exit_2(tmp_path, capsys):
    corpus = write_corpus(tmp_path / "c", [b"some corpus text\n"])
    text = tmp_path / "t.txt"
    text.write_bytes(b"x")
    cases = [
        (["novelty", str(text)], "seqlab novelty RUN TEXT_FILE"),  # neither a run nor --corpus
        (["novelty", "--corpus", str(corpus), str(tmp_path / "missing.txt")], "no such file"),
        (["novelty", "--corpus", str(tmp_path / "nope"), str(text)], "no such file"),
        (["novelty", str(tmp_path), str(text)], "not a seqlab run"),
        (["novelty", "--corpus", str(corpus), str(text), "--min-len", "0"], "--min-len"),
    ]
    for argv, needle in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], (argv, err)


def test_generate_check_novelty(run_dir, capsys):
    assert main(["generate", str(run_dir), "--n", "2", "--max-tokens", "80", "--seed", "1", "--check-novelty"]) == 0
    err = capsys.readouterr().err
    notes = [line for line in err.splitlines() if line.startswith("[novelty of sample")]
    assert len(notes) == 2 and all("longest copy" in n and "% of bytes" in n for n in notes)

"""`seqlab tune --holdout` keeps a validation share of the training paragraphs out of tuning, the retrieval
benchmark's `--split validation` asks exactly those, and `--hard-negatives` puts each sampled paragraph's
nearest other paragraph into its batch."""

import json
import random
import sys
from pathlib import Path

from vectors_data import write_corpus

from seqlab.__main__ import main
from seqlab.vectors.tune import Neighbours, batch_indices, is_validation, training_paragraphs, tuning_paragraphs

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))


def test_the_validation_share_is_fixed_by_the_bytes_and_about_the_share_asked():
    paragraphs = [f"paragraph number {i} says something.".encode() for i in range(4000)]
    chosen = [p for p in paragraphs if is_validation(p, 0.2)]
    assert 0.17 < len(chosen) / len(paragraphs) < 0.23
    assert all(is_validation(b"\n  " + p + b"  \n", 0.2) for p in chosen)  # however the paragraph was cut
    assert not any(is_validation(p, 0.0) for p in paragraphs)
    assert set(chosen) >= {p for p in paragraphs if is_validation(p, 0.1)}  # a smaller share is inside it


def test_tuning_leaves_the_validation_share_out(tmp_path):
    files = write_corpus(tmp_path / "docs", n_files=2, n_lines=400)
    every = training_paragraphs(files, 0.1)
    kept = tuning_paragraphs(files, 0.1, 0.3)
    left = [p for p in every if is_validation(p, 0.3)]
    assert left and kept and not any(is_validation(p, 0.3) for p in kept)
    assert sorted(kept + left) == sorted(every)


def test_hard_negative_batches_pair_each_paragraph_with_its_nearest():
    # paragraphs 2k and 2k + 1 share a word no other paragraph has
    paragraphs = [f"the common words here and {k:c}{k:c}tok{k} again".encode()
                  for k in range(97, 123) for _ in range(2)]
    neighbours = Neighbours(paragraphs)
    rng = random.Random(0)
    for _ in range(20):
        batch = batch_indices(len(paragraphs), 8, rng, neighbours)
        assert len(batch) == len(set(batch)) == 8
        assert all(i ^ 1 in batch for i in batch[:4])  # the sampled half's partners are all there
    plain = [batch_indices(len(paragraphs), 8, random.Random(seed), None) for seed in range(20)]
    assert len(set(plain[0])) == 8 and not all(all(i ^ 1 in b for i in b[:4]) for b in plain)


def test_tune_with_holdout_and_hard_negatives_records_them(tmp_path, trained_runs, capsys):
    files = write_corpus(tmp_path / "docs", n_files=2, n_lines=200)
    out = tmp_path / "tuned"
    code = main(["tune", str(trained_runs["lstm"]), str(tmp_path / "docs"), "--out", str(out), "--max-steps", "2",
                 "--batch-size", "4", "--holdout", "0.3", "--hard-negatives"])
    assert code == 0, capsys.readouterr().err
    record = json.loads((out / "tune.json").read_text())
    assert record["holdout"] == 0.3 and record["hard_negatives"] is True
    assert record["paragraphs"] == len(tuning_paragraphs(files, 0.1, 0.3)) < len(training_paragraphs(files, 0.1))
    capsys.readouterr()
    assert main(["info", str(out)]) == 0  # says what made the run
    assert (f"tuned:      from {trained_runs['lstm'].resolve()}: contrastive, mean pooling, 2 steps on "
            f"{record['paragraphs']:,} paragraphs") in capsys.readouterr().out.splitlines()


def test_the_benchmark_validation_split_asks_only_the_paragraphs_tuning_left_out(tmp_path, trained_runs):
    from vectors_retrieval import held_out_pairs

    from seqlab.data.corpus import split_document
    from seqlab.run import read_config

    lines = [f"Sentence {i} of paragraph {k} is about thing {k * 7 + i}." for k in range(300) for i in range(4)]
    text = "\n\n".join(" ".join(lines[4 * k : 4 * k + 4]) for k in range(300)) + "\n"
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text(text)
    config = read_config(trained_runs["lstm"])
    train, held = split_document(text.encode(), config.data.val_fraction)
    pairs = held_out_pairs(trained_runs["lstm"], [str(tmp_path / "docs")], 10**6, holdout=0.3)
    assert 0.2 * 270 < len(pairs) < 0.4 * 270
    for first, second in pairs:
        para = first + b" " + second
        assert para in train and is_validation(para, 0.3)
    held_pairs = held_out_pairs(trained_runs["lstm"], [str(tmp_path / "docs")], 10**6)
    assert held_pairs and all(first in held for first, _ in held_pairs)

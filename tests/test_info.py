"""`seqlab info RUN`: what the run is, each figure checked against the corpus and the run's own files."""

import json
import math

from seqlab.__main__ import main
from seqlab.run import read_metrics


def test_info_prints_corpus_model_training_and_held_out_figures(trained_runs, corpus_file, capsys):
    run = trained_runs["lstm"]
    corpus = corpus_file.read_bytes()
    held_out = math.ceil(0.1 * len(corpus))
    final = [r for r in read_metrics(run) if r["event"] == "final"][-1]
    best = min(r["val_bpb"] for r in read_metrics(run) if r["event"] == "eval")
    assert main(["info", str(run)]) == 0
    lines = capsys.readouterr().out.splitlines()
    field = {line.split(":", 1)[0]: line.split(":", 1)[1].strip() for line in lines}
    assert list(field) == ["run", "corpus", "tokenizer", "arch", "params", "trained", "held-out", "best eval"]
    assert field["run"] == str(run)
    assert field["corpus"] == f"{corpus_file} (1 files, {len(corpus) - held_out:,} train + {held_out:,} held-out bytes)"
    assert field["tokenizer"] == "byte (257 tokens), reads left to right"
    assert field["arch"].startswith("lstm (n_layer=1, n_hidden=48, ")
    # 1 layer of 48: embedding 257x48 (tied with the output), LSTM 4x48x(48+48) + 2x4x48 biases, output bias 257
    lstm_params = 257 * 48 + 4 * 48 * (48 + 48) + 2 * 4 * 48 + 257
    assert field["params"].split(";")[0] == f"{lstm_params:,}", field["params"]
    assert field["trained"].startswith("400 steps, ") and field["trained"].endswith(", finished")
    assert f"{400 * (8 + 1) * 32:,} tokens" in field["trained"]  # steps x (8 rows + 1 starting a document) x 32
    assert field["held-out"] == f"{final['val_bpb']:.4f} bits per byte (full split)"
    assert field["best eval"] == f"{best:.4f} bits per byte (fixed subset during training)"


def test_info_json_holds_the_same_facts(trained_runs, capsys):
    assert main(["info", str(trained_runs["lstm"]), "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["arch"] == "lstm" and facts["steps"] == 400 and facts["finished"] is True
    assert facts["reads"] == "left to right" and facts["vocab_size"] == 257 and facts["files"] == 1

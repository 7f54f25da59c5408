"""The vector verbs from the command line: what they print, and every bad input as one line with exit 2."""

import json
import shutil

import pytest
from vectors_data import train_tiny, write_corpus

from seqlab.__main__ import main


@pytest.fixture(scope="module")
def made(tmp_path_factory, trained_runs, corpus_file):
    root = tmp_path_factory.mktemp("cli")
    files = write_corpus(root / "docs", n_files=2, n_lines=200)
    index = root / "idx"
    assert main(["index", str(trained_runs["lstm"]), str(root / "docs"), "--out", str(index), "--json"]) == 0
    return {"root": root, "files": files, "index": index, "lstm": trained_runs["lstm"],
            "other": trained_runs["transformer"], "backward": train_tiny(corpus_file, root / "bwd", steps=20,
                                                                         backward=True)}


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_search_prints_ranked_passages_with_file_and_line(made, capsys):
    code, out, _ = run_cli(capsys, "search", made["index"], "the cat sat on the mat.", "--k", 3, "--json")
    assert code == 0
    results = json.loads(out)["results"]
    assert len(results) == 3 and set(results[0]) >= {"text", "file", "line", "score"}
    assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)
    code, out, _ = run_cli(capsys, "search", made["index"], "a royal queen came.", "--k", 2)
    assert code == 0 and len(out.splitlines()) == 2 and "part" in out.splitlines()[0]


def test_similar_prints_the_interface_json(made, capsys):
    code, out, _ = run_cli(capsys, "similar", made["lstm"], "anna", "--min-count", 1, "--k", 3, "--json")
    reply = json.loads(out)
    assert code == 0 and reply["word"] == "anna" and len(reply["neighbours"]) == 3
    assert set(reply["neighbours"][0]) == {"word", "score"}


def test_similar_exports_without_a_word(made, capsys, tmp_path):
    code, out, _ = run_cli(capsys, "similar", made["lstm"], "--min-count", 1, "--word2vec", tmp_path / "w.txt",
                           "--projector", tmp_path / "p", "--map", tmp_path / "m.png")
    assert code == 0, out
    assert (tmp_path / "w.txt").read_text().split()[1] == "48"  # V D header: the LSTM's 48 hidden units
    assert (tmp_path / "p" / "metadata.tsv").exists() and (tmp_path / "m.html").exists()


def test_tune_saves_an_ordinary_run(made, capsys, tmp_path):
    from seqlab.generate import generate
    from seqlab.run import load

    out = tmp_path / "tuned"
    code, text, err = run_cli(capsys, "tune", made["lstm"], made["root"] / "docs", "--out", out, "--max-steps", 3,
                              "--batch-size", 4)
    assert code == 0, err
    assert json.loads((out / "tune.json").read_text())["steps"] == 3
    run = load(out)
    assert generate(run, "anna", max_tokens=5, seed=0)[0].tokens == 5
    code, _, _ = run_cli(capsys, "index", out, made["files"][0], "--out", tmp_path / "tidx")
    assert code == 0


@pytest.mark.parametrize("pooling", ["surprisal", "words"])
def test_tune_and_index_with_the_bag_poolings(made, capsys, tmp_path, pooling):
    """`tune --pooling P --crops halves` trains the pooling `index --pooling P` uses, whose vectors have a bag
    (of surprising tokens: a vocabulary's dims; of words: WORD_BITS' sparse dims) and the expected next tokens."""
    from safetensors.torch import load_file

    from seqlab.run import load
    from seqlab.vectors.bag import WORD_BITS

    out = tmp_path / "tuned"
    code, _, err = run_cli(capsys, "tune", made["lstm"], made["root"] / "docs", "--out", out, "--max-steps", 2,
                           "--batch-size", 4, "--pooling", pooling, "--crops", "halves", "--lr", "0.01")
    assert code == 0, err
    record = json.loads((out / "tune.json").read_text())
    assert (record["pooling"], record["crops"]) == (pooling, "halves")
    before = load_file(str(made["lstm"] / "checkpoint.safetensors"))
    after = load_file(str(out / "checkpoint.safetensors"))
    assert any(not before[k].equal(after[k]) for k in before)  # the loss reached the weights
    code, text, err = run_cli(capsys, "index", out, made["files"][0], "--out", tmp_path / "idx", "--pooling",
                              pooling, "--json")
    assert code == 0, err
    vocab = len(load(out).tokenizer.token_bytes)
    assert json.loads(text)["dim"] == {"surprisal": 2 * vocab, "words": (1 << WORD_BITS) + vocab}[pooling]
    code, text, _ = run_cli(capsys, "search", tmp_path / "idx", "a royal queen came.", "--k", 1, "--json")
    assert code == 0 and json.loads(text)["results"][0]["text"]


def test_halves_cut_at_the_sentence_end_nearest_the_middle():
    from seqlab.vectors.tune import halves

    assert halves(b"One two three. Four five six! Seven eight nine ten eleven.", 1) == (
        b"One two three. Four five six!", b"Seven eight nine ten eleven.")
    assert halves(b"no sentence end in here at all", 1) is None
    assert halves(b"Short. This second part is longer than thirty bytes.") is None  # a half under 30 bytes


def one_line_error(capsys, *argv, match: str) -> str:
    code, out, err = run_cli(capsys, *argv)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert match in lines[0], lines[0]
    return lines[0]


def test_an_empty_query_is_refused(made, capsys):
    one_line_error(capsys, "search", made["index"], "  ", match="query is empty")


def test_an_unknown_word_suggests_the_nearest_spellings(made, capsys):
    line = one_line_error(capsys, "similar", made["lstm"], "anan", "--min-count", 1, match="'anan' is not among")
    assert "nearest spellings: anna" in line
    one_line_error(capsys, "similar", made["lstm"], "anna", "--plus", "zzzz", "--min-count", 1, match="'zzzz'")


def test_a_backward_run_is_refused_where_a_forward_one_is_needed(made, capsys, tmp_path):
    for verb in (["embed", made["backward"], made["files"][0], "--out", tmp_path / "e"],
                 ["similar", made["backward"], "anna"],
                 ["index", made["backward"], made["files"][0], "--out", tmp_path / "i"],
                 ["tune", made["backward"], made["files"][0], "--out", tmp_path / "t"]):
        one_line_error(capsys, *verb, match="reads text right to left")
    one_line_error(capsys, "similar", made["lstm"], "anna", "--backward", made["lstm"],
                   match="reads text left to right")


def test_an_index_from_another_run_is_refused(made, capsys, tmp_path):
    one_line_error(capsys, "search", made["index"], "cat", "--run", made["other"], match="built from another run")
    one_line_error(capsys, "serve", made["other"], "--index", made["index"], match="built from another run")
    one_line_error(capsys, "index", made["other"], made["files"][0], "--out", made["index"], "--add",
                   match="built from another run")


def test_other_bad_inputs(made, capsys, tmp_path):
    one_line_error(capsys, "search", made["index"], "cat", "--k", 0, match="--k: must be >= 1")
    one_line_error(capsys, "search", tmp_path, "cat", match="is not a seqlab index")
    one_line_error(capsys, "embed", made["lstm"], tmp_path / "missing.txt", "--out", tmp_path / "e",
                   match="no such file")
    one_line_error(capsys, "embed", made["lstm"], made["files"][0], "--out", made["root"], match="already exists")
    one_line_error(capsys, "embed", made["lstm"], made["files"][0], "--out", tmp_path / "e3", "--pooling", "words",
                   "--format", "npy", match="safetensors only")
    assert not (tmp_path / "e3").exists()
    one_line_error(capsys, "index", made["lstm"], made["files"][0], "--out", made["index"], "--add",
                   match="already in")
    one_line_error(capsys, "index", made["lstm"], made["files"][0], "--out", tmp_path / "none", "--add",
                   match="does not exist")
    one_line_error(capsys, "similar", made["lstm"], match="give a WORD")
    one_line_error(capsys, "similar", made["lstm"], "anna", "--min-count", 0, match="--min-count: must be >= 1")
    one_line_error(capsys, "tune", made["lstm"], made["files"][0], "--out", tmp_path / "t", "--batch-size", 1,
                   match="--batch-size: must be >= 2")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    one_line_error(capsys, "index", made["lstm"], empty, "--out", tmp_path / "e2", match="no paragraph passages")
    assert not (tmp_path / "e2").exists()  # nothing half-written


def test_an_index_whose_run_moved_names_the_run_and_takes_run(made, capsys, tmp_path):
    moved = tmp_path / "moved"
    shutil.copytree(made["index"], moved)
    info = json.loads((moved / "index.json").read_text())
    (moved / "index.json").write_text(json.dumps({**info, "run": str(tmp_path / "gone")}))
    line = one_line_error(capsys, "search", moved, "cat", match="not there any more")
    assert "--run" in line
    code, out, err = run_cli(capsys, "search", moved, "cat", "--run", made["lstm"], "--k", 2, "--json")
    assert code == 0 and len(json.loads(out)["results"]) == 2, err


def test_an_interrupted_add_is_reported_not_served(made, capsys, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(made["index"], broken)
    info = json.loads((broken / "index.json").read_text())
    (broken / "index.json").write_text(json.dumps({**info, "count": info["count"] + 5}))
    one_line_error(capsys, "search", broken, "cat", match="inconsistent")

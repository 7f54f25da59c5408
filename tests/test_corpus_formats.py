"""Corpora given as JSONL, CSV or Parquet: with --text-field, every record is one document."""

import csv
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import structured_text, tiny_config

from seqlab.__main__ import main
from seqlab.data.corpus import read_documents
from seqlab.errors import SeqlabError

RECORDS = [{"id": i, "text": line, "who": line.split()[0]}
           for i, line in enumerate(structured_text(300).splitlines(keepends=True))]


def write_all(folder) -> dict:
    """The same records as data.jsonl, data.csv and data.parquet (the CSV's ids are text that looks numeric)."""
    paths = {kind: folder / f"data.{kind}" for kind in ("jsonl", "csv", "parquet")}
    paths["jsonl"].write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    with open(paths["csv"], "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["id", "text", "who"])
        writer.writeheader()
        writer.writerows(RECORDS)
    pq.write_table(pa.Table.from_pylist(RECORDS), paths["parquet"])
    return paths


def test_every_record_is_a_document_in_every_format(tmp_path):
    for kind, path in write_all(tmp_path).items():
        docs = read_documents([str(path)], "text")
        assert [d.data.decode() for d in docs] == [r["text"] for r in RECORDS], kind
        assert {d.name for d in docs} == {str(path)}  # named after the file: --style-by file/dir group them
    assert len(read_documents([str(tmp_path / "data.jsonl")])) == 1  # without --text-field: the file's bytes


@pytest.mark.parametrize("kind", ["jsonl", "csv", "parquet"])
def test_a_missing_field_lists_the_fields_there_are(tmp_path, kind):
    path = write_all(tmp_path)[kind]
    with pytest.raises(SeqlabError, match=r"has no field 'body'; its fields: id, text, who"):
        read_documents([str(path)], "body")


def test_a_field_that_is_not_text_and_a_parquet_file_without_a_field(tmp_path):
    paths = write_all(tmp_path)
    with pytest.raises(SeqlabError, match=r"field 'id' of .* holds int64, not text"):
        read_documents([str(paths["jsonl"])], "id")
    assert read_documents([str(paths["csv"])], "id")[3].data == b"3"  # CSV: the field is read as text
    with pytest.raises(SeqlabError, match=r"Parquet table; name the column .* --text-field \(its fields: id, text"):
        read_documents([str(paths["parquet"])])
    (tmp_path / "bad.jsonl").write_text('{"text": "a"}\n{"text": \n')
    with pytest.raises(SeqlabError, match=r"cannot read .*bad.jsonl as JSON lines"):
        read_documents([str(tmp_path / "bad.jsonl")], "text")


def test_cli_error_is_one_line_before_any_work(tmp_path, capsys):
    path = write_all(tmp_path)["jsonl"]
    out = tmp_path / "run"
    code = main(["train", str(path), "--text-field", "body", "--max-steps", "2", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "its fields: id, text, who" in err
    assert not out.exists()


def test_a_run_on_records_evaluates_and_finds_copies_in_them(tmp_path):
    from seqlab.evaluate import evaluate
    from seqlab.novelty import novelty, run_index
    from seqlab.run import load
    from seqlab.train import train

    path = write_all(tmp_path)["jsonl"]
    cfg = tiny_config(path, "transformer", steps=20)
    cfg.data.text_field = "text"
    run = train(cfg, tmp_path / "run", log=lambda *a: None)
    result = evaluate(load(run))
    n_held_out = sum(len(r["text"]) - int(len(r["text"]) * 0.9) for r in RECORDS)  # the last 10% of each record
    assert result["bytes"] == n_held_out
    index = run_index(run)
    first = RECORDS[0]["text"][:12].encode()  # the start of a record: in the training split
    assert novelty(index, first, min_len=12)["longest_copy"] == 12
    assert b'"text"' not in bytes(index.corpus)  # the records' text, not the file's bytes

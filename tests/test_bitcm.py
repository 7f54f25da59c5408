"""The bitwise context-mixing expert (countmodel/bitcm.py): distributions, learning, causality, determinism."""

import numpy as np
import pytest

from conftest import bitcm_copy, structured_text
from seqlab.countmodel.bitcm import MIN_TABLE_BITS, BitCM

TEXT = structured_text(200, seed=3).encode()


def bits(model: BitCM, data: bytes) -> np.ndarray:
    values = np.frombuffer(data, dtype=np.uint8)
    return -model.score(data)[np.arange(len(values)), values] / np.log(2)


def test_every_row_is_a_distribution_over_the_256_bytes():
    model = BitCM(table_bits=12, match_bits=10)
    model.learn(TEXT[:500])
    logp = model.score(TEXT[500:800])
    assert logp.shape == (300, 256)
    np.testing.assert_allclose(np.exp(logp).sum(axis=1), 1.0, atol=1e-9)


def test_a_repeated_text_becomes_cheap():
    model = BitCM(table_bits=MIN_TABLE_BITS, match_bits=10)  # the smallest table it is given: in 2^12
    # slots the 21 contexts' 33,600 claims (two a byte each, the text read twice) evict what the second read needs
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, 400).astype(np.uint8).tobytes()  # nothing to learn within it
    first, second = bits(model, noise), bits(model, noise)
    assert first.mean() > 7.0  # random bytes cost about 8 bits when first seen
    assert second[50:].mean() < 0.5  # the match model and the long contexts know them the second time


def test_scoring_a_text_and_its_first_half_agree_on_the_half():
    def fresh():
        model = BitCM(table_bits=12, match_bits=10)
        model.learn(TEXT[:1000])
        return model

    text = TEXT[1000:1600]
    whole, half = fresh().score(text), fresh().score(text[:300])
    np.testing.assert_array_equal(whole[:300], half)


def test_the_same_bytes_give_the_same_bits():
    runs = []
    for _ in range(2):
        model = BitCM(table_bits=12, match_bits=10)
        model.learn(TEXT[:800])
        runs.append(model.score(TEXT[800:1200]))
    np.testing.assert_array_equal(*runs)


def test_learning_the_training_split_first_makes_its_grammar_cheaper():
    cold, warm = BitCM(table_bits=14, match_bits=12), BitCM(table_bits=14, match_bits=12)
    warm.learn(TEXT[:2000])
    text = TEXT[2000:2600]
    assert bits(warm, text).mean() < 0.7 * bits(cold, text).mean()


def test_the_indirect_contexts_read_what_followed_the_last_bytes_before():
    """paq8's indirect contexts: registers 7 and 8 hold the bytes that followed the last byte's last occurrences (3),
    and the last two bytes' (2), the latest lowest."""
    model = BitCM(table_bits=12, match_bits=10)
    model.learn(b"qa1 qa2 wa3 qa")
    assert model.regs[7] == int.from_bytes(b"123", "big")
    assert model.regs[8] == int.from_bytes(b"12", "big")  # "wa" is another pair


def test_a_bytes_row_does_not_depend_on_that_byte():
    rows = []
    for last in (b"x", b"y"):
        model = BitCM(table_bits=12, match_bits=10)
        model.learn(TEXT[:1000])
        rows.append(model.score(TEXT[1000:1200] + last))
    np.testing.assert_array_equal(*rows)


def test_a_bytes_cost_alone_is_its_rows_entry_with_nothing_pruned():
    """Eval's path (BitCM.costs: the byte's 8 nodes) against the full rows (score: all 255 nodes), another model's
    distribution given at every node: with a prune that leaves nothing out, the same log-probability and the same
    learning (the later bytes agree too). With the prune (1e-4), a row gives a subtree below it uniform probability
    and its bytes there learn otherwise, where the path prunes nothing: its costs stay the unpruned rows'."""
    rng = np.random.default_rng(1)
    noisy = np.frombuffer(structured_text(400, seed=3).encode(), dtype=np.uint8).copy()
    odd = rng.random(len(noisy)) < 0.02  # bytes the grammar does not expect: some fall below the prune
    noisy[odd] = rng.integers(0, 256, odd.sum())
    history, text = noisy[:3000], noisy[3000:7000]
    given, network = (log_softmax(rng.normal(size=(len(text), 256)) * 3.0) for _ in range(2))

    def learnt(prune):
        model = BitCM(table_bits=MIN_TABLE_BITS, match_bits=12, prune=prune)
        model.learn(history)
        return model

    rows = learnt(1e-300).score(text, given, network)[np.arange(len(text)), text]
    np.testing.assert_allclose(learnt(1e-300).costs(text, given, network), rows, rtol=0, atol=1e-9)
    assert not np.allclose(learnt(1e-4).score(text, given, network)[np.arange(len(text)), text], rows, rtol=0,
                           atol=1e-9)
    np.testing.assert_allclose(learnt(1e-4).costs(text, given, network), rows, rtol=0, atol=1e-9)
    assert not np.allclose(learnt(1e-300).costs(text, given), rows, rtol=0, atol=1e-6)  # the network's is an input


def test_the_networks_distribution_is_an_input_its_mixers_learn_to_trust():
    """The network's own distribution, given beside the mix's (counts.bitcm's second input, weight 0 at first): a
    network that puts 0.9 on each next byte makes the bytes far cheaper once the mixers have learnt it, where the mix
    given knows nothing (uniform)."""
    rng = np.random.default_rng(2)
    text = rng.integers(0, 256, 6000).astype(np.uint8)  # nothing the contexts could learn
    uniform = np.full((len(text), 256), -np.log(256))
    knowing = np.full((len(text), 256), np.log(0.1 / 255))
    knowing[np.arange(len(text)), text] = np.log(0.9)
    without, with_it = (-BitCM(table_bits=MIN_TABLE_BITS, match_bits=10).costs(text, uniform, network)[3000:]
                        / np.log(2) for network in (None, knowing))
    assert without.mean() > 7.5 and with_it.mean() < 2.0


def log_softmax(z: np.ndarray) -> np.ndarray:
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def test_eval_with_counts_bitcm_mixes_it_in_and_stays_causal(trained_runs, tmp_path):
    import torch

    from seqlab.evaluate import evaluate
    from seqlab.run import load
    from seqlab.scoring import score_run

    plain = load(bitcm_copy(trained_runs["lstm"], tmp_path / "off", on=False))
    run = load(bitcm_copy(trained_runs["lstm"], tmp_path / "on"))
    assert run.tokenizer.kind == "byte" and run.count_model.config.bitcm and not plain.count_model.config.bitcm
    result, before = evaluate(run), evaluate(plain)
    assert result["bpb"] != before["bpb"] and abs(result["bpb"] - before["bpb"]) < 0.5 * before["bpb"]
    assert "bitwise context-mixing" in result["context"]
    text = np.frombuffer(TEXT[:600], dtype=np.uint8).astype(np.int64)

    def mixed(tokens):
        return torch.cat([lp for _, lp, _, _ in score_run(run, tokens, 1, run.count_model.session(run.device))])

    whole, half = mixed(text), mixed(text[:301])
    torch.testing.assert_close(whole[:300], half)
    torch.testing.assert_close(torch.logsumexp(whole, dim=1), torch.zeros(len(whole), dtype=whole.dtype))


def test_evals_costs_are_the_mixed_rows_entries_with_nothing_pruned(trained_runs, tmp_path):
    """run_token_bits (eval's: the bitwise model's costs, its byte's path) against score_run's rows (surprise's: all
    the nodes), sessions of the run's kept state with the prune off: the same bits."""
    import torch

    from seqlab.run import load
    from seqlab.scoring import run_token_bits, score_run

    run = load(bitcm_copy(trained_runs["lstm"], tmp_path / "run"))
    text = np.frombuffer(TEXT[:600], dtype=np.uint8).astype(np.int64)

    def unpruned():
        session = run.count_model.session(run.device)
        session.bitcm.prune = -np.inf
        return session

    rows = torch.cat([lp.gather(1, t[:, None])[:, 0] for _, lp, t, _ in score_run(run, text, 1, unpruned())])
    np.testing.assert_allclose(run_token_bits(run, text, 1, unpruned())[0], -rows.numpy() / np.log(2), rtol=1e-6)


def test_serves_scores_are_evals_with_the_bitwise_model_on(trained_runs, tmp_path):
    """/v1/score's scorer (a fresh session per text) gives eval's bits with the bitwise model on: each byte's cost
    from its path, as eval takes it, not the full row's entry (rows prune improbable subtrees and learn otherwise
    there: 0.03 bits a byte apart on this text)."""
    from seqlab.evaluate import evaluate
    from seqlab.run import load
    from seqlab.serve.scorer import score_texts

    run = load(bitcm_copy(trained_runs["lstm"], tmp_path / "run"))
    text = "anna sees the cat.\nbob likes a red box.\n" * 3 + "carl qxzv it.\n"
    path = tmp_path / "text.txt"
    path.write_text(text)
    tokens = np.concatenate([[run.tokenizer.bos_id], run.tokenizer.encode(text.encode())]).astype(np.int64)
    bits, _ = score_texts(run.model, [tokens], run.device, run.count_model)[0]
    assert bits.sum() / len(text) == pytest.approx(evaluate(run, [str(path)])["bpb"], abs=1e-6)


def test_a_texts_first_bytes_after_bos_cost_what_the_mix_gave_them(trained_runs, tmp_path):
    """The bitwise model goes on from the training bytes' end, so a text read from BOS has its first MIX_FIRST bytes
    cost what the mix gave them (the run without the bitwise model's bits), the rest the bitwise model's; a text read
    on from a context of bytes has none of them so."""
    from seqlab.countmodel.session import MIX_FIRST
    from seqlab.run import load
    from seqlab.scoring import run_token_bits

    off = load(bitcm_copy(trained_runs["lstm"], tmp_path / "off", on=False))
    on = load(bitcm_copy(trained_runs["lstm"], tmp_path / "on"))
    text = np.frombuffer(TEXT[:300], dtype=np.uint8).astype(np.int64)

    def bits(run, tokens):
        return run_token_bits(run, tokens, 1, run.count_model.session(run.device))[0]

    from_bos = np.concatenate([[on.tokenizer.bos_id], text])
    a, b = bits(on, from_bos), bits(off, from_bos)
    np.testing.assert_allclose(a[: max(MIX_FIRST, 1)], b[: max(MIX_FIRST, 1)], rtol=1e-6)  # the first byte at least
    assert not np.allclose(a[MIX_FIRST:], b[MIX_FIRST:], rtol=1e-3)
    assert not np.isclose(bits(on, text)[0], bits(off, text)[0], rtol=1e-3)  # read on from its first byte


def test_the_slot_table_is_sized_from_the_history_read(trained_runs, tmp_path):
    """About four slots per byte read, up to 2^22 (a 1 MB history's, where fewer lose bits): a small corpus's kept
    state is tens of megabytes, not the 454 MB of 2^22 slots."""
    from seqlab.countmodel.bitcm import table_bits_for
    from seqlab.evaluate import evaluate
    from seqlab.run import load

    assert [table_bits_for(n) for n in (0, 50_000, 200_000, 1_003_854, 16 << 20)] == [16, 18, 20, 22, 22]
    path = bitcm_copy(trained_runs["lstm"], tmp_path / "run")
    evaluate(load(path))
    state = sorted((path / "counts" / "bitcm").iterdir())
    assert state and sum(f.stat().st_size for f in state) < 100 << 20


def test_every_file_with_numba_code_imports_nothing_from_seqlab_but_a_file_whose_digest_it_holds():
    """numba keys a cached function (cache=True) on its own file only, but its machine code holds the jitted functions
    it calls and the globals it reads: jitted code in a second file (compress's lockstep loops were, calling bitcm's
    kernels) ran the old model after a change to the first. So a file of seqlab that uses numba imports no other, but
    bitkernel.py imports bitcontexts.py and bitmath.py and holds their SHA-256 (checked at import): a change there
    changes bitkernel."""
    import hashlib
    import re
    from pathlib import Path

    import seqlab
    from seqlab.countmodel import bitkernel

    root = Path(seqlab.__file__).parent
    imports_numba = re.compile(r"^\s*(from|import) numba\b", re.MULTILINE)
    with_numba = sorted(p for p in root.rglob("*.py") if imports_numba.search(p.read_text()))
    assert {"bitkernel.py", "bitcontexts.py", "bitmath.py"} <= {p.name for p in with_numba}
    for path in with_numba:
        kernel = path.read_text()
        if path.name == "bitkernel.py":
            kernel = kernel.replace("from .bitcontexts import", "", 1).replace("from .bitmath import", "", 1)
        assert "from ." not in kernel and "import seqlab" not in kernel and "from seqlab" not in kernel, path.name
    for name, digest in (("bitcontexts.py", bitkernel.CONTEXTS_SHA256), ("bitmath.py", bitkernel.MATH_SHA256)):
        assert digest == hashlib.sha256(Path(bitkernel.__file__).with_name(name).read_bytes()).hexdigest()


def test_the_models_kernels_count_no_references():
    """Every jitted function of the bitwise model is compiled without numba's runtime: with it, each array passed
    between them (thousands a byte, most in tuples) was reference-counted by an atomic instruction, a third of the
    model's time (docs/quality.md, 2026-12-06, "the learning profiled")."""
    from numba.core.registry import CPUDispatcher

    from seqlab.countmodel import bitcontexts, bitkernel, bitmath

    kernels = [f for module in (bitkernel, bitcontexts, bitmath) for f in vars(module).values()
               if isinstance(f, CPUDispatcher)]
    assert len(kernels) > 20
    assert [f.__name__ for f in kernels if f.targetoptions.get("_nrt") is not False] == []


def test_a_changed_contexts_file_is_refused_until_the_kernel_holds_its_digest(tmp_path):
    """A copy of the model's files whose bitcontexts.py changed does not import (numba would run bitkernel's old
    cached code); with bitkernel.py's digest set to the new file's, it does."""
    import hashlib
    import importlib
    import shutil
    import sys
    from pathlib import Path

    import pytest
    from seqlab.countmodel import bitkernel

    package = tmp_path / "bitcopy"
    package.mkdir()
    (package / "__init__.py").write_text("")
    source = Path(bitkernel.__file__).parent
    for name in ("bitcontexts.py", "bitmath.py", "bitkernel.py"):
        shutil.copy(source / name, package / name)
    changed = (source / "bitcontexts.py").read_text().replace("MATCH_MIN = 6", "MATCH_MIN = 7")
    (package / "bitcontexts.py").write_text(changed)
    sys.path.insert(0, str(tmp_path))
    try:
        with pytest.raises(ImportError, match="bitcontexts.py changed"):
            importlib.import_module("bitcopy.bitkernel")
        kernel = (package / "bitkernel.py").read_text()
        digest = hashlib.sha256(changed.encode()).hexdigest()
        (package / "bitkernel.py").write_text(kernel.replace(bitkernel.CONTEXTS_SHA256, digest))
        assert importlib.import_module("bitcopy.bitkernel").CONTEXTS_SHA256 == digest
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m.startswith("bitcopy")]:
            del sys.modules[name]


def test_the_model_lets_other_threads_run_while_it_reads():
    """Eval scores the bitwise model in its main thread while torch's threads compute the network's next windows:
    holding Python's lock for a chunk stalled them (wall time nearly doubled, docs/quality.md)."""
    import sys
    import threading

    model = BitCM(table_bits=16, match_bits=12)
    model.learn(TEXT[:100])  # compiled (or loaded from numba's cache) before the count
    ticks, stop = [0], threading.Event()

    def tick():
        while not stop.is_set():
            ticks[0] += 1

    interval = sys.getswitchinterval()
    sys.setswitchinterval(5.0)  # the main thread keeps the lock between its statements: only a release lets it run
    counter = threading.Thread(target=tick)
    try:
        counter.start()
        before = ticks[0]
        model.learn(TEXT * 4)
        during = ticks[0] - before
    finally:
        stop.set()
        counter.join()
        sys.setswitchinterval(interval)
    assert during > 1000


def test_a_mixers_dot_sums_its_lanes_in_one_order():
    """bitkernel._dot (LLVM's vector operations): lane k sums inputs k, k + LANES, ... in order, then the lanes
    pairwise; any other order (the compiler's own, another CPU's) would give other floats, and compress's files
    would decode only where they were made."""
    from numba import njit

    from seqlab.countmodel.bitkernel import LANES, N_IN, _dot

    rng = np.random.default_rng(6)
    w = rng.normal(size=(3, N_IN)).astype(np.float32)
    x = (rng.normal(size=N_IN) * 10.0 ** rng.uniform(-3, 3, N_IN)).astype(np.float32)  # orders sum differently
    lanes, in_order = [np.float32(0.0)] * LANES, np.float32(0.0)
    for i in range(N_IN):
        lanes[i % LANES] = np.float32(lanes[i % LANES] + w[2, i] * x[i])
        in_order = np.float32(in_order + w[2, i] * x[i])
    lanes_in_order = np.float32(sum(lanes[1:], lanes[0]))
    while len(lanes) > 1:
        lanes = [np.float32(lanes[k] + lanes[k + 1]) for k in range(0, len(lanes), 2)]
    assert lanes[0] != in_order and lanes[0] != lanes_in_order
    assert njit(lambda w, row, x: _dot(w, row, x))(w, 2, x) == lanes[0]


def test_squash_and_stretch_by_tables_stay_near_the_functions():
    from numba import njit

    from seqlab.countmodel.bitmath import _squash, _stretch

    x = np.linspace(-8, 8, 10001)
    squash = njit(lambda xs: np.array([_squash(v) for v in xs]))
    assert np.abs(squash(x) - 1 / (1 + np.exp(-x))).max() < 3e-7
    p = np.linspace(0.01, 0.99, 999)
    stretch = njit(lambda ps: np.array([_stretch(v) for v in ps]))
    assert np.abs(stretch(p) - np.log(p / (1 - p))).max() < 0.03


def test_the_weights_learnt_without_a_given_shrink_once_at_the_first_given():
    """The training bytes are read without a given distribution, so the mixers' weights learnt there had the prediction
    to themselves: before the first byte scored with one they shrink (SHRINK_AT_THE_GIVEN), once, and mixers 3 and 4's
    sets for each confidence of the given start as the ones learnt without it."""
    from seqlab.countmodel.bitcm import GIVEN_PRIOR, SHRINK_AT_THE_GIVEN
    from seqlab.countmodel.bitkernel import BIAS_IN, BY_CONFIDENCE, GIVEN_IN

    model = BitCM(table_bits=12, match_bits=10)
    model.learn(TEXT[:800])
    learnt = model.w.copy()
    model.meet_the_given()
    model.meet_the_given()
    expected = learnt.copy()
    expected[:, :GIVEN_IN] *= SHRINK_AT_THE_GIVEN
    expected[:, BIAS_IN] *= SHRINK_AT_THE_GIVEN
    for sets in map(confidence_sets, BY_CONFIDENCE):
        for rows in sets[1:]:
            expected[rows] = expected[sets[0]]
        assert not np.array_equal(learnt[sets[0]], learnt[sets[3]])  # the copy is seen: learning moved bucket 0's
    np.testing.assert_allclose(model.w, expected)
    assert np.all(model.w[:, GIVEN_IN] == np.float32(GIVEN_PRIOR))
    other = BitCM(table_bits=12, match_bits=10)
    other.learn(TEXT[:800])
    other.score(TEXT[800:810], np.full((10, 256), -np.log(256)))  # scoring with a given meets it first
    assert other.given_yet and not np.array_equal(other.w, learnt)


def confidence_sets(mixer: int) -> list[slice]:
    """A mixer's weight sets for each confidence of the given (bitkernel.GIVEN_BUCKETS), as rows of BitCM.w: mixer
    2 (the third: the last bytes' classes) or 3 (the fourth: the partial byte)."""
    from seqlab.countmodel.bitkernel import GIVEN_BUCKETS, MIXER_FROM, MIXER_SETS

    n = MIXER_SETS[mixer] // GIVEN_BUCKETS
    return [slice(MIXER_FROM[mixer] + k * n, MIXER_FROM[mixer] + (k + 1) * n) for k in range(GIVEN_BUCKETS)]


def test_mixers_3_and_4_learn_the_sets_of_the_givens_confidence_only():
    """Mixers 3 and 4 keep weight sets per confidence of the given at the node: a given sure of every byte (its stretch
    past 4 at each node of the byte's path, where the model learns) moves the sets of the surest bucket and no
    other; one that knows nothing (stretch about 0) moves those of the least sure, not those of none (the training
    bytes')."""
    from seqlab.countmodel.bitkernel import BY_CONFIDENCE

    text = np.frombuffer(TEXT[800:830], dtype=np.uint8)
    sure = np.full((len(text), 256), np.log(1e-9))
    sure[np.arange(len(text)), text] = 0.0
    for given, moving in ((sure, 3), (np.full((len(text), 256), -np.log(256)), 1)):
        model = BitCM(table_bits=12, match_bits=10)
        model.learn(TEXT[:800])
        model.meet_the_given()
        before = model.w.copy()
        model.score(text, given)
        for mixer in BY_CONFIDENCE:
            moved = [not np.array_equal(model.w[rows], before[rows]) for rows in confidence_sets(mixer)]
            assert moved == [k == moving for k in range(4)]


def test_surprise_lets_the_bitwise_model_go_once_its_scoring_is_done(trained_runs, tmp_path, monkeypatch):
    """Surprise's scoring pass mixes the bitwise model in; its fixes are judged by the mix (fix.Judge), in forked
    workers that would otherwise inherit the model's state: the session lets it go after the pass, and the fixes are
    what they were with it kept."""
    from seqlab.countmodel.session import CountSession
    from seqlab.run import load
    from seqlab.surprise.anomalies import read

    run = load(bitcm_copy(trained_runs["lstm"], tmp_path / "run"))
    data = b"anna sees the cat.\nbob likes a red box.\n" * 3 + b"carl sees teh cat.\n"
    scores, reading = read(run, data, top=2, fixes=True, mixed=True)
    assert reading.session.bitcm is None
    monkeypatch.setattr(CountSession, "release_bitwise", lambda self: None)
    scores_kept, reading_kept = read(run, data, top=2, fixes=True, mixed=True)
    assert reading_kept.session.bitcm is not None
    np.testing.assert_array_equal(scores[0], scores_kept[0])
    assert reading.suggested == reading_kept.suggested and any(fix for _, fix in reading.suggested)

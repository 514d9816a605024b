"""Untrusted files, mutated: every kind of file modelpower reads (result, peak, claim, spec,
config.json, safetensors index) is taken valid, then damaged by hypothesis (a field of the wrong
type, a field gone, deep nesting, UTF-16 or binary text, markup and escape sequences). The
command that reads it must end in exit 0, or exit 2 with ONE `modelpower: error:` line (or a listed
skip under --skip-bad): never a traceback."""

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FEW = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
CLAIMS = Path(__file__).resolve().parent.parent / "claims" / "public-claims.toml"

# JSON values of every type, including the awkward ones
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.sampled_from(["", "[/b]", "[link=http://x]y[/link]", "\x1b[31mred", "=cmd|' /C calc'!A0", "<script>"])
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


def assert_clean(r, skip_bad: bool = False):
    """exit 0, or exit 2 with one error line; never an exception escaping."""
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert "Traceback" not in r.output
    assert r.exit_code in (0, 2), r.output
    if r.exit_code == 2:
        lines = [ln for ln in r.stderr.splitlines() if ln.strip() and not ln.startswith("skipped:")]
        assert len(lines) == 1 and lines[0].startswith("modelpower: error:"), r.stderr
    if skip_bad and r.exit_code == 0:
        assert "Traceback" not in r.stderr


@pytest.fixture(scope="module")
def valid(invoke, tmp_path_factory) -> dict:
    """One real result file and one real peak file, made once."""
    folder = tmp_path_factory.mktemp("valid")
    fast = ["--min-duration", "0", "--min-iters", "2", "--warmup", "1", "--image-size", "96x64", "--num-images", "1"]
    r = invoke("run", "steel-defect-mobilenetv3", "--device", "cpu", "--out", folder, *fast)
    assert r.exit_code == 0, r.output
    result = json.loads(next(folder.glob("2*.json")).read_text())
    peak = {
        "kind": "modelpower-peak",
        "version": 1,
        "device": "cpu",
        "device_name": "CPU",
        "nameplate_source": "x",
        "copy_gbs": 10.0,
        "copy_nameplate_gbs": None,
        "copy_ratio": None,
        "gemm": [
            {
                "precision": "fp32",
                "best_n": 512,
                "measured_tflops": 0.1,
                "nameplate_tflops": 0.2,
                "ratio": 0.5,
                "note": "",
            }
        ],
        "provenance": {},
    }
    return {"result": result, "peak": peak}


def paths(doc, prefix=()):
    """Every (path) to a value inside a JSON document."""
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from paths(v, (*prefix, i))


@st.composite
def mutated(draw, doc):
    """`doc` with one value replaced or removed, as text; or the whole text re-encoded or nested."""
    how = draw(st.sampled_from(["replace", "replace", "replace", "delete", "utf16", "binary", "nested", "nan"]))
    if how == "utf16":
        return json.dumps(doc).encode("utf-16")
    if how == "binary":
        return draw(st.binary(min_size=1, max_size=64))
    if how == "nested":
        return ("[" * 100_000 + "]" * 100_000).encode()
    doc = json.loads(json.dumps(doc))
    path = draw(st.sampled_from([p for p in paths(doc) if p]))
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    if how == "delete" and isinstance(parent, dict):
        del parent[path[-1]]
    elif how == "nan":
        parent[path[-1]] = float("nan")
    else:
        parent[path[-1]] = draw(json_values)
    return json.dumps(doc).encode()


@FEW
@given(data=st.data())
def test_mutated_result_files(invoke, tmp_path_factory, valid, data):
    folder = tmp_path_factory.mktemp("res")
    f = folder / "r.json"
    f.write_bytes(data.draw(mutated(valid["result"])))
    assert_clean(invoke("compare", f, f))
    assert_clean(invoke("compare", f, f, "--skip-bad"), skip_bad=True)
    assert_clean(invoke("claim", CLAIMS, f))


@FEW
@given(data=st.data())
def test_mutated_peak_files(invoke, tmp_path_factory, valid, data):
    folder = tmp_path_factory.mktemp("peak")
    f = folder / "peak.json"
    f.write_bytes(data.draw(mutated(valid["peak"])))
    assert_clean(invoke("claim", CLAIMS, "--peak", f))


def test_reports_from_damaged_files(invoke, tmp_path, valid):
    """The report itself (slow: plots) on a few damaged files, with and without --skip-bad."""
    good = tmp_path / "good.json"
    good.write_text(json.dumps(valid["result"]))
    bad = tmp_path / "bad.json"
    doc = json.loads(json.dumps(valid["result"]))
    doc["points"][0]["energy"] = {"method": ["not", "text"], "scope": 3}
    bad.write_text(json.dumps(doc))
    assert_clean(invoke("report", good, bad, "-o", tmp_path / "rep"))
    r = invoke("report", good, bad, "-o", tmp_path / "rep", "--skip-bad")
    assert r.exit_code == 0 and "skipped:" in r.stderr, r.output


def toml_value(v) -> str | None:
    """A TOML literal for a JSON-like value (None has no TOML form)."""
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v) if isinstance(v, int) or v == v else "nan"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        items = [toml_value(x) for x in v]
        return None if None in items else "[" + ", ".join(items) + "]"
    items = [f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()]
    return None if any(i.endswith("None") for i in items) else "{" + ", ".join(items) + "}"


toml_values = json_values | st.sampled_from([float("inf"), float("nan"), True, -1, 0, 1e308])
CLAIM = {
    "id": "c",
    "kind": "capacity",
    "text": "t",
    "p": 11000,
    "precision": "fp16",
    "sparsity": "dense",
    "devices": ["NVIDIA H100 SXM5 80GB"],
}
SPEC = {"name": "Fake GPU", "match": ["Fake"], "source": "s", "power_w": 300, "bandwidth_gbs": 1000}


def table(header: str, fields: dict, extra: str = "") -> str:
    lines = [f"{k} = {toml_value(v)}" for k, v in fields.items() if toml_value(v) is not None]
    return "\n".join([header, *lines, extra]) + "\n"


@FEW
@given(key=st.sampled_from([*CLAIM, "computers", "version"]), value=toml_values)
def test_mutated_claim_files(invoke, tmp_path_factory, key, value):
    f = tmp_path_factory.mktemp("claim") / "c.toml"
    if key == "version":
        f.write_text(f"version = {toml_value(value) or 1}\n" + table("[[claim]]", CLAIM))
    else:
        f.write_text("version = 1\n" + table("[[claim]]", {**CLAIM, key: value}))
    assert_clean(invoke("claim", f))


@FEW
@given(key=st.sampled_from([*SPEC, "peaks", "unconfirmed", "sparse_factor"]), value=toml_values)
def test_mutated_spec_files(invoke, tmp_path_factory, key, value):
    f = tmp_path_factory.mktemp("spec") / "s.toml"
    fields = {**SPEC, key: value}
    peaks = "" if key == "peaks" else "peaks = { fp16 = 100.0 }"
    f.write_text(table("[[device]]", fields, peaks))
    assert_clean(invoke("claim", CLAIMS, "--spec", f))


LLAMA = {
    "architectures": ["LlamaForCausalLM"],
    "vocab_size": 64,
    "hidden_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 64,
}


@FEW
@given(data=st.data())
def test_mutated_checkpoint_configs(invoke, tmp_path_factory, data):
    """config.json and the shard index of an LLM checkpoint folder (no weights: run-llm must stop at
    the first bad file with one line, before any model is built)."""
    folder = tmp_path_factory.mktemp("ckpt")
    (folder / "config.json").write_bytes(data.draw(mutated(LLAMA)))
    index = {"weight_map": {"model.embed_tokens.weight": "model.safetensors"}}
    (folder / "model.safetensors.index.json").write_bytes(data.draw(mutated(index)))
    r = invoke(
        "run-llm",
        folder,
        "--device",
        "cpu",
        "--prompt-len",
        "4",
        "--output-len",
        "2",
        "--min-duration",
        "0",
        "--min-iters",
        "1",
        "--out",
        folder / "out",
    )
    assert_clean(r)


def test_escape_bytes_in_names_reach_no_plot_and_no_terminal(invoke, tmp_path, valid, capsys):
    """A model name with ESC and BEL bytes: the report's plots and every line printed are clean, and
    a library warning goes through our console cleaned, on one line."""
    import warnings

    from harness.cli import _show_warning

    doc = json.loads(json.dumps(valid["result"]))
    for p in doc["points"]:
        p["model"] = "evil\x1b[31mred\x07name $\\frac$"  # an escape, a bell and a broken math formula
    f = tmp_path / "r.json"
    f.write_text(json.dumps(doc))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = invoke("report", f, "-o", tmp_path / "rep")
    assert r.exit_code == 0, r.output
    assert "\x1b" not in r.output and "\x1b" not in r.stderr
    assert not [w for w in caught if "Glyph" in str(w.message)]  # the labels reached matplotlib clean
    _show_warning("Glyph 27 (\x1b) missing\nfrom font", UserWarning, "x.py", 1)
    line = capsys.readouterr().err
    assert "\x1b" not in line and line.count("\n") == 1 and "modelpower: warning: Glyph 27" in line

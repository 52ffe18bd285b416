"""Hostile input: every user-supplied value is validated with an error naming it, and no string a
user supplies reaches the generated C.

Proof of "no injection" is two-fold: strings that would become C (the prefix) are refused before any
file is written, and strings that legitimately pass through (file paths, ONNX names) are shown not
to matter: the C generated through a hostile path or name is byte-identical to the C generated
through a plain one, and contains neither the marker every hostile string carries nor any
`#include` outside a short allowlist. Also here: the C API's argument checks called directly through
cffi, and extreme numerics (|x| up to 1e30, saturated gates, 100k steps, NaN/Inf input vs torch).
"""

from __future__ import annotations

import json
import math
import os
import re
import time
import tracemalloc

import numpy as np
import pytest
from conftest import need_module, with_c_functions

import lstmgen
from lstmgen import reference
from lstmgen.abi import ERRORS
from lstmgen.cli import main as cli
from lstmgen.codegen import check_prefix

MARK = "ZQXJ"  # in every hostile string, so scanning output for it proves the string is absent
HOSTILE = [
    '"', "'", "\\", "*/", "/*", "//", "??=", "*/ int evil = 1; /*", '"; system("id"); "',
    "\n#include <stdio.h>\n", '#include "/etc/passwd"', "#define lstm_forward evil", "_Pragma(\"once\")",
    "a\nb", "a\rb", "a\tb", "a\x00b", "a\x0bb", "a\\\nb", "int", "main", "return", "static", "NULL",
    "for", "void", "struct", "asm", "__attribute__", "", " ", "lstm ", " lstm", "1lstm", "_lstm",
    "__lstm", "lstm-x", "lstm.x", "lstm/x", "../x", "a" * 32, "a" * 100_000, "été", "ｌｓｔｍ",
    "lstm\u200b", "\u202elstm", "Ω", "\U0001f40d", "l\u0131stm", "\u212a", "\udcff", "%s%n%x",
    "{{ p }}", "{% if x %}", "${HOME}", "$(id)", "`id`", "con", "NUL", "COM1", "aux",
]
HOSTILE_MARKED = [h + MARK for h in HOSTILE] + [MARK + h for h in HOSTILE if h]
ALLOWED_INCLUDES = {"<stdint.h>", "<math.h>", "<string.h>", "<stddef.h>", "<stdio.h>", "<stdlib.h>",
                    "<immintrin.h>", "<arm_neon.h>"}
FULL = bool(os.environ.get("LSTMGEN_FULL"))  # `make sanitize` sets it: the long versions
counts: dict[str, int] = {}  # hostile inputs tried per entry point (reported by the README table)


def tried(entry: str, n: int = 1) -> None:
    counts[entry] = counts.get(entry, 0) + n


SPEC = lstmgen.LSTMSpec(input_size=3, hidden_size=4, num_layers=2, proj_size=2)
W = lstmgen.random_weights(SPEC, seed=0)


def assert_clean_c(files: dict[str, str], prefix: str) -> None:
    """Generated text: ASCII, no hostile marker, includes only from the allowlist or our own."""
    for name, text in files.items():
        assert text.isascii(), f"{name} has non-ASCII text"
        assert MARK not in text, f"{name} contains user text"
        for inc in re.findall(r"^\s*#\s*include\s+(\S+)", text, flags=re.M):
            own = re.fullmatch(rf'"{re.escape(prefix)}(_\w+)?\.h"', inc)
            assert own or inc in ALLOWED_INCLUDES, f"{name}: unexpected #include {inc}"


def read_dir(path) -> dict[str, str]:
    out = {}
    for root, _, names in os.walk(path):
        for n in names:
            with open(os.path.join(root, n), encoding="utf-8", errors="surrogateescape") as fh:
                out[os.path.relpath(os.path.join(root, n), path)] = fh.read()
    return out


# ---- the prefix: the only user string that becomes C; refused unless a plain identifier ---------


def _plain_identifier(p) -> bool:
    """Marked strings such as 'intZQXJ' are ordinary identifiers: accepted, not hostile."""
    return isinstance(p, str) and p.isascii() and bool(re.fullmatch(r"[A-Za-z]\w{0,30}", p)) \
        and p not in ("int", "main", "return", "static", "NULL", "for", "void", "struct", "asm") \
        and p.upper() not in ("CON", "NUL", "COM1", "AUX")


REFUSED_PREFIXES = [p for p in HOSTILE + HOSTILE_MARKED + [None, 7, b"lstm", ["lstm"], 3.5] if not _plain_identifier(p)]


@pytest.mark.parametrize("prefix", REFUSED_PREFIXES, ids=lambda p: repr(p)[:24])
def test_hostile_prefix_refused_everywhere(prefix, tmp_path):
    out = tmp_path / "out"
    calls = {
        "check_prefix": lambda: check_prefix(prefix),
        "generate_sources": lambda: lstmgen.generate_sources(SPEC, W, prefix=prefix),
        "generate": lambda: lstmgen.generate(SPEC, W, out, prefix=prefix),
        "generate_embedded": lambda: lstmgen.generate_embedded(SPEC, W, out, prefix=prefix),
        "compile": lambda: lstmgen.compile(SPEC, W, prefix=prefix),
    }
    for entry, call in calls.items():
        with pytest.raises((ValueError, TypeError), match="prefix"):
            call()
        tried(f"prefix via {entry}")
    assert not out.exists(), "files were written before the prefix was refused"
    if isinstance(prefix, str) and "\x00" not in prefix:
        assert cli(["generate", os.path.join(os.path.dirname(__file__), "..", "examples", "kws.json"),
                    "--out", str(out), "--prefix", prefix]) == 2
        tried("prefix via CLI")
        assert not out.exists()


@pytest.mark.parametrize("prefix", ["A", "x9", "kws_v2", "a" * 31, "Int", "mainloop", "lstm_"])
def test_plain_prefixes_accepted(prefix):
    src = lstmgen.generate_sources(SPEC, W, prefix=prefix)
    assert_clean_c(src.files, prefix)
    assert f"int {prefix}_forward(" in src.files[f"{prefix}.h"]


# ---- spec fields: every field type-checked, errors name the field ------------------------------

BAD_INT = [True, False, 3.0, "3", None, [3], {"v": 3}, float("nan"), float("inf"), -1, 2**64, 10**400, b"3",
           np.float32(3), complex(3, 0)]
BAD_BOOL = [1, 0, "true", "True", None, 1.0, [True], float("nan"), b"1"]
BAD_NUMBER = [True, "0.1", None, [0.1], float("nan"), float("inf"), -float("inf"), b"0"]
INT_FIELDS = ["input_size", "hidden_size", "num_layers", "proj_size"]
BOOL_FIELDS = ["bias", "batch_first", "bidirectional", "reverse", "peepholes", "input_forget"]


def _spec(**kw):
    base = dict(input_size=3, hidden_size=4)
    base.update(kw)
    return lstmgen.LSTMSpec(**base)


@pytest.mark.parametrize("field", INT_FIELDS)
def test_int_fields_refuse_non_ints(field):
    for bad in BAD_INT + HOSTILE_MARKED[:20]:
        with pytest.raises((TypeError, ValueError), match=field):
            _spec(**{field: bad})
        tried("spec int fields")
    for bad in ([0, -3] if field != "proj_size" else [-1, 4, 5]):  # proj_size must be < hidden_size
        with pytest.raises(ValueError, match=field):
            _spec(**{field: bad})
        tried("spec int fields")


@pytest.mark.parametrize("field", BOOL_FIELDS)
def test_bool_fields_refuse_non_bools(field):
    for bad in BAD_BOOL + HOSTILE_MARKED[:20]:
        with pytest.raises(TypeError, match=field):
            _spec(**{field: bad})
        tried("spec bool fields")


def test_number_fields():
    for bad in BAD_NUMBER + HOSTILE_MARKED[:20] + [-0.1, 1.5]:
        with pytest.raises((TypeError, ValueError), match="dropout"):
            _spec(dropout=bad)
        tried("spec number fields")
    for bad in [b for b in BAD_NUMBER if b is not None] + HOSTILE_MARKED[:20] + [0, 0.0, -1.0, 1e39, 10**400]:
        with pytest.raises((TypeError, ValueError), match="clip"):
            _spec(clip=bad)
        tried("spec number fields")
    for bad in [b for b in BAD_NUMBER if b is not None] + [1e39, -1e300, 10**400]:
        with pytest.raises((TypeError, ValueError), match=r"activations\[0\]\.alpha"):
            _spec(activations=[{"name": "LeakyRelu", "alpha": bad}, "Tanh", "Tanh"])
        tried("spec number fields")


def test_activation_names_are_checked():
    for bad in HOSTILE_MARKED:
        with pytest.raises((TypeError, ValueError), match=r"activations\[1\]"):
            _spec(activations=["Sigmoid", bad, "Tanh"])
        with pytest.raises(ValueError, match="activations"):
            _spec(activations=["Sigmoid", "Tanh", {"name": "Tanh", bad: 1}])
        tried("activation names and keys", 2)
    for bad in ["Sigmoid", b"Sigmoid", 3, None, {"Sigmoid": 1}, ["Sigmoid"] * 4, ["Sigmoid"] * 6]:
        with pytest.raises((TypeError, ValueError), match="activation"):
            _spec(activations=bad)
        tried("activation names and keys")


@pytest.mark.parametrize("kw, field", [
    (dict(input_size=60000, hidden_size=60000), "hidden_size=60000"),
    (dict(input_size=3, hidden_size=10**9), "hidden_size=1000000000"),
    (dict(input_size=3, hidden_size=4, num_layers=10**15), "num_layers=1000000000000000"),
    (dict(input_size=10**18, hidden_size=2), "input_size=1000000000000000000"),
    (dict(input_size=8, hidden_size=9000, bidirectional=True), "bidirectional"),
])
def test_absurd_sizes_refused_before_any_work(kw, field):
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(ValueError, match="too large") as info:
            lstmgen.LSTMSpec(**kw)
        elapsed = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    msg = str(info.value)
    assert field in msg
    assert re.search(r"\d+(\.\d+)? (MiB|GiB|TiB|PiB|EiB)", msg), f"no memory figure in: {msg}"
    assert elapsed < 0.05 and peak < 200_000, f"did work before refusing: {elapsed:.3f} s, {peak} bytes"
    tried("absurd sizes")


def test_large_single_dims_refused_with_field():
    for field in ("input_size", "proj_size"):
        with pytest.raises(ValueError, match=field):
            _spec(**{field: 70000, "hidden_size": 80000 if field == "proj_size" else 4})
    tried("absurd sizes", 2)


# ---- spec files: hostile field names, values, encodings, nesting, sizes -------------------------


def test_spec_file_field_names_and_values(tmp_path):
    good = {"input_size": 3, "hidden_size": 4}
    for i, h in enumerate(HOSTILE_MARKED):
        p = tmp_path / f"k{i}.json"
        p.write_text(json.dumps(dict(good, **{h: 1})), encoding="utf-8", errors="surrogatepass")
        with pytest.raises(ValueError, match="unknown field"):
            lstmgen.LSTMSpec.load(p)
        for field in INT_FIELDS + BOOL_FIELDS + ["dropout", "clip", "activations"]:
            with pytest.raises((TypeError, ValueError), match=field):
                lstmgen.LSTMSpec.from_dict(dict(good, **{field: h}))
        tried("spec file field names and values", 1 + len(INT_FIELDS) + len(BOOL_FIELDS) + 3)
    toml = tmp_path / "k.toml"
    toml.write_text('input_size = 3\nhidden_size = 4\n"*/ #include ZQXJ" = 1\n', encoding="utf-8")
    with pytest.raises(ValueError, match="unknown field"):
        lstmgen.LSTMSpec.load(toml)
    tried("spec file field names and values")


@pytest.mark.parametrize("raw, fmt", [
    (b"\xff\xfe\x00", "json"), (b"[" * 200_000, "json"), (b'{"input_size": ' + b"9" * 5000 + b"}", "json"),
    (b"a = " + b"[" * 200_000, "toml"), (b"{" + b" " * (2 << 20) + b"}", "json"), (b"", "json"), (b"null", "json"),
    (b"[3, 4]", "json"), (b'"input_size"', "json"), (b"input_size = 3\ninput_size = 4\n", "toml"),
    (b'{"input_size": 3, "hidden_size": 4, "activations": {"a": 1}}', "json"),
    (b'{"input_size": NaN, "hidden_size": 4}', "json"), (b'{"input_size": 1e999, "hidden_size": 4}', "json"),
])
def test_malformed_spec_text(raw, fmt):
    with pytest.raises((ValueError, TypeError)):
        lstmgen.LSTMSpec.loads(raw, fmt=fmt)
    tried("malformed spec text")


def test_spec_loader_refuses_huge_files(tmp_path):
    p = tmp_path / "huge.json"
    p.write_bytes(b'{"input_size": 3, "hidden_size": 4}' + b" " * (4 << 20))
    with pytest.raises(ValueError, match="over"):
        lstmgen.LSTMSpec.load(p)
    assert cli(["inspect", str(p)]) == 2
    tried("malformed spec text", 2)


def test_field_names_must_be_strings():
    with pytest.raises(TypeError, match="field names"):
        lstmgen.LSTMSpec.from_dict({"input_size": 3, "hidden_size": 4, 5: 1})
    tried("spec file field names and values")


# ---- weights: names and values ----------------------------------------------------------------


def test_hostile_weight_names(tmp_path):
    for h in HOSTILE_MARKED:
        with pytest.raises(ValueError, match="unexpected weight"):
            lstmgen.generate_sources(SPEC, dict(W, **{h: np.zeros(3, np.float32)}))
        tried("weight names")
    for key in (5, None, b"weight_ih_l0", ("weight_ih_l0",)):
        bad = dict(W)
        bad[key] = np.zeros(3, np.float32)
        with pytest.raises(TypeError, match="weight names"):
            lstmgen.generate_sources(SPEC, bad)
        tried("weight names")
    # through the CLI: an .npz with a hostile key exits 2 and writes nothing
    npz = tmp_path / "w.npz"
    np.savez(npz, **dict(W, **{"*/ #include <ZQXJ.h> /*": np.zeros(1, np.float32)}))
    spec_path = tmp_path / "s.json"
    spec_path.write_text(SPEC.to_json())
    assert cli(["generate", str(spec_path), "--weights", str(npz), "--out", str(tmp_path / "o")]) == 2
    assert not (tmp_path / "o").exists()
    tried("weight names")


def test_hostile_weight_values():
    bad_values = {
        "nan": np.full((16, 3), np.nan, np.float32), "inf": np.full((16, 3), -np.inf, np.float32),
        "beyond float32": np.full((16, 3), 1e39), "object": np.zeros((16, 3), object),
        "str": np.full((16, 3), "1"), "complex": np.zeros((16, 3), complex), "bool": np.zeros((16, 3), bool),
        "ragged": [[1.0, 2.0], [3.0]], "string": "weights", "none": None, "wrong shape": np.zeros((3, 16), np.float32),
        "0-d": np.float32(1), "datetime": np.zeros((16, 3), "datetime64[s]"),
    }
    for value in bad_values.values():
        with pytest.raises((TypeError, ValueError), match="weight_ih_l0"):
            lstmgen.generate_sources(SPEC, dict(W, weight_ih_l0=value))
        tried("weight values")
    with pytest.raises(TypeError, match="mapping"):
        lstmgen.generate_sources(SPEC, [("weight_ih_l0", W["weight_ih_l0"])])
    tried("weight values")


def test_nonfinite_weights_need_opt_in():
    w = dict(W, bias_hh_l0=np.full(16, np.nan, np.float32))
    with pytest.raises(ValueError, match="bias_hh_l0.*NaN.*allow_nonfinite"):
        lstmgen.compile(SPEC, w)
    model = lstmgen.compile(SPEC, w, allow_nonfinite=True)
    out, (h, c) = model(np.zeros((3, 1, 3), np.float32))
    assert np.isnan(out).all() and np.isnan(c).all()
    text = lstmgen.generate_sources(SPEC, w, allow_nonfinite=True).files["lstm_weights.c"]
    assert "(0.0f / 0.0f)" in text  # NaN spelled as an expression, no library macro needed
    tried("weight values", 2)


# ---- file paths: they pass through, but never reach the C ---------------------------------------

# Each name becomes a folder MARK + name, so "endstar*" also puts "*/" into the full path.
PATH_NAMES = ["plain", 'q"uote', "s'ingle", "sp ace", "endstar*", "/*", "new\nline", "#include <x.h>", "été",
              "\U0001f40d", "back\\slash", "$(id)", "tab\there", "-dash", "percent%s", "{{ p }}", "a" * 200]


@pytest.mark.parametrize("embedded", [False, True], ids=["generate", "embedded"])
def test_hostile_paths_do_not_reach_the_c(tmp_path, embedded):
    baseline = None
    for name in PATH_NAMES if not embedded or FULL else PATH_NAMES[:9]:
        d = tmp_path / (MARK + name if name != "plain" else name).replace("/", "_")
        d.mkdir()
        d = d / (MARK + name).replace("/", "_")  # "/*" as a folder name is "_*": the path has "*/_*"
        d.mkdir()
        spec_path = d / ((MARK + name)[:200].replace("/", "_") + ".json")
        spec_path.write_text(SPEC.to_json())
        npz = d / ((MARK + name)[:200].replace("/", "_") + ".npz")
        np.savez(npz, **W)
        out = d / ("out " + MARK + name)[:200].replace("/", "_")
        argv = ["generate", str(spec_path), "--weights", str(npz), "--out", str(out), "--prefix", "kws"]
        assert cli(argv + (["--embedded"] if embedded else [])) == 0
        files = read_dir(out)
        assert_clean_c({k: v for k, v in files.items() if k.endswith((".c", ".h"))}, "kws")
        assert all(MARK not in text for text in files.values())  # README and Makefile too
        if baseline is None:
            baseline = files
        assert files == baseline, f"output depends on the path {name!r}"
        tried("file paths (spec, weights, out dir) via CLI", 3)


def test_hostile_paths_through_the_api(tmp_path):
    base = lstmgen.generate_sources(SPEC, W, prefix="kws").files
    for name in PATH_NAMES:
        p = tmp_path / ((MARK + name)[:200].replace("/", "_") + ".json")
        p.write_text(SPEC.to_json())
        assert lstmgen.generate_sources(p if len(name) % 2 else str(p), W, prefix="kws").files == base
        tried("file paths via API")
    for bad in ["a\x00b.json", str(tmp_path), str(tmp_path / "missing.json")]:
        with pytest.raises((ValueError, OSError)):
            lstmgen.generate_sources(bad, W)
        tried("file paths via API")


# ---- ONNX names and metadata (when the ONNX importer is there) ---------------------------------


def test_hostile_onnx_names_do_not_reach_the_c(tmp_path):
    onnx = need_module("onnx")
    if not hasattr(lstmgen, "from_onnx"):
        pytest.skip("lstmgen.from_onnx has not landed")
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    NI, H = 3, 4

    def model(tag: str):
        def n(s):
            return s + tag
        W_ = rng.standard_normal((1, 4 * H, NI)).astype(np.float32)
        R_ = rng.standard_normal((1, 4 * H, H)).astype(np.float32)
        B_ = rng.standard_normal((1, 8 * H)).astype(np.float32)
        inits = [helper.make_tensor(n("W"), TensorProto.FLOAT, W_.shape, W_.ravel()),
                 helper.make_tensor(n("R"), TensorProto.FLOAT, R_.shape, R_.ravel()),
                 helper.make_tensor(n("B"), TensorProto.FLOAT, B_.shape, B_.ravel())]
        node = helper.make_node("LSTM", [n("X"), n("W"), n("R"), n("B")], [n("Y"), n("Y_h"), n("Y_c")],
                                hidden_size=H, name=n("lstm_node"), doc_string=n("doc"))
        graph = helper.make_graph([node], n("graph"), [helper.make_tensor_value_info(n("X"), TensorProto.FLOAT, ["T", "B", NI])],
                                  [helper.make_tensor_value_info(n("Y"), TensorProto.FLOAT, None)], initializer=inits,
                                  doc_string=n("gdoc"))
        m = helper.make_model(graph, producer_name=n("producer"), doc_string=n("mdoc"),
                              opset_imports=[helper.make_opsetid("", 14)])
        helper.set_model_props(m, {n("key"): n("value")})
        return m

    rng = np.random.default_rng(0)
    spec0, w0 = lstmgen.from_onnx(model(""))
    base = lstmgen.generate_sources(spec0, w0, prefix="kws").files
    # from_onnx returns only (spec, weights), and the C is a function of those (plus prefix and
    # schedule): equal spec and weights prove the names cannot reach the C. Every 12th string also
    # goes all the way to C, through the API and through `lstmgen generate model.onnx`.
    for k, h in enumerate(HOSTILE_MARKED):
        if "\x00" in h or "\udcff" in h:
            continue  # protobuf strings are UTF-8 without NUL
        rng = np.random.default_rng(0)
        m = model(h)
        spec, w = lstmgen.from_onnx(m)
        assert spec == spec0 and w.keys() == w0.keys() and all(np.array_equal(w[n], w0[n]) for n in w0)
        tried("ONNX node/graph/value names, doc strings, metadata")
        if k % 12 == 0:
            assert lstmgen.generate_sources(spec, w, prefix="kws").files == base
            path = tmp_path / "m.onnx"
            onnx.save(m, str(path))
            assert cli(["generate", str(path), "--out", str(tmp_path / "o"), "--prefix", "kws"]) == 0
            files = read_dir(tmp_path / "o")
            assert_clean_c(files, "kws")
            assert files == base
            tried("ONNX names via CLI")


def test_hostile_state_dict_keys():
    """from_torch on a state_dict: an enclosing module's key prefix is stripped (so it cannot reach
    the C: the same spec and weights come out), anything else is refused naming the key."""
    if not hasattr(lstmgen, "from_torch"):
        pytest.skip("no from_torch")
    spec0, w0 = lstmgen.from_torch(dict(W))
    for h in HOSTILE_MARKED:
        if "." in h:
            continue
        try:
            spec, w = lstmgen.from_torch({f"{h}.{k}": v for k, v in W.items()})
        except (ValueError, TypeError):
            pass
        else:
            assert spec == spec0 and all(np.array_equal(w[k], w0[k]) for k in w0)
        with pytest.raises(ValueError, match="ZQXJ"):
            lstmgen.from_torch(dict(W, **{h: np.zeros(3, np.float32)}))
        tried("state_dict keys (from_torch)", 2)


# ---- the C API called directly: every documented error code -------------------------------------

CODES = {name: value for name, value, _ in ERRORS}


@pytest.fixture(scope="module")
def capi():
    spec = lstmgen.LSTMSpec(input_size=3, hidden_size=4, proj_size=2, bias=True)
    # portable: one window over the whole sequence, so the huge-size cases reach the overflow checks
    # (vector builds of one layer bound the window at run time: test_kernels.py)
    model = lstmgen.compile(spec, lstmgen.random_weights(spec, 1), prefix="capi", target="portable")
    return model


def _header_codes(model) -> dict[str, int]:
    header = lstmgen.generate_sources(model.spec, prefix=model.prefix).files[f"{model.prefix}.h"]
    found = dict(re.findall(r"#define CAPI_(OK|ERR_\w+) \((-?\d+)\) /\* .+ \*/", header))
    return {k: int(v) for k, v in found.items()}


def test_header_documents_every_code(capi):
    assert _header_codes(capi) == CODES


def _buffers(model, T, B):
    ffi = model.artifact.ffi
    spec = model.spec
    need = model.workspace_floats(T, B)
    NI, R, H = spec.input_size, spec.output_size, spec.hidden_size
    bufs = dict(x=ffi.new("float[]", max(T * B * NI, 1)), y=ffi.new("float[]", max(T * B * R, 1)),
                h=ffi.new("float[]", B * R), c=ffi.new("float[]", B * H), ws=ffi.new("float[]", max(need, 1)),
                lengths=ffi.new("int32_t[]", [T] * B))
    for i in range(T * B * R):
        bufs["y"][i] = 12345.0  # sentinel: an error must leave the outputs alone
    return bufs, need


def test_forward_argument_checks(capi):
    ffi, entry = capi.artifact.ffi, capi.artifact.entry
    fwd, wsf = entry("forward"), entry("workspace_floats")
    T, B = 3, 2
    b, need = _buffers(capi, T, B)
    w = capi.c_weights
    args = dict(w=w, x=b["x"], T=T, B=B, lengths=ffi.NULL, h0=ffi.NULL, c0=ffi.NULL, y=b["y"], h_n=b["h"],
                c_n=b["c"], ws=b["ws"], n=need)

    def call(**kw):
        a = dict(args, **kw)
        return fwd(a["w"], a["x"], a["T"], a["B"], a["lengths"], a["h0"], a["c0"], a["y"], a["h_n"], a["c_n"], a["ws"], a["n"])

    cases = [(dict(w=ffi.NULL), "ERR_NULL")] + [(dict(**{k: ffi.NULL}), "ERR_NULL") for k in ("x", "y", "h_n", "c_n", "ws")]
    cases += [(dict(T=t), "ERR_SIZE") for t in (0, -1, -(2**31))] + [(dict(B=v), "ERR_SIZE") for v in (0, -7, -(2**31))]
    cases += [(dict(n=v), "ERR_WORKSPACE") for v in (need - 1, 0, -1, -(2**63))]
    for bad in ([0, 3], [3, 4], [-1, 1], [2**31 - 1, 1], [-(2**31), 2]):
        cases.append((dict(lengths=ffi.new("int32_t[]", bad)), "ERR_LENGTHS"))
    for field in ("w_ih", "w_hh", "bias", "w_hr"):
        bad_w = ffi.new("capi_weights *")
        bad_w.cell[0] = w.cell[0]
        setattr(bad_w.cell[0], field, ffi.NULL)
        cases.append((dict(w=bad_w), "ERR_WEIGHTS"))
    # huge sizes: refused from the size arithmetic alone, before any buffer is touched
    cases += [(dict(T=2**31 - 1, B=2**31 - 1, n=need), "ERR_OVERFLOW"), (dict(T=2**31 - 1, B=1, n=need), "ERR_WORKSPACE")]
    for kw, code in cases:
        rc = call(**kw)
        assert rc == CODES[code], f"{kw}: got {rc}, expected {code}"
        assert all(b["y"][i] == 12345.0 for i in range(T * B * 2)), f"{kw}: outputs written on error"
        tried("C API bad arguments")
    assert call() == 0
    assert call(lengths=ffi.new("int32_t[]", [1, 3])) == 0
    for t, bb in ((0, 1), (1, 0), (-5, 3), (3, -(2**31))):
        assert wsf(t, bb) == CODES["ERR_SIZE"]
    assert wsf(2**31 - 1, 2**31 - 1) == CODES["ERR_OVERFLOW"]  # T*B*row would pass int64
    assert wsf(2**31 - 1, 2**20) == capi.program.workspace_floats(2**31 - 1, 2**20)  # large, exact
    tried("C API bad arguments", 5)


def test_step_and_reset_argument_checks(capi):
    ffi = capi.artifact.ffi
    step, reset, reset_row = (capi.artifact.entry(n) for n in ("step", "reset", "reset_row"))
    B = 2
    b, _ = _buffers(capi, 1, B)
    need = capi.workspace_floats(1, B)
    w = capi.c_weights
    assert step(w, b["x"], B, b["h"], b["c"], b["y"], b["ws"], need) == 0
    for args, code in [
        ((ffi.NULL, b["x"], B, b["h"], b["c"], b["y"], b["ws"], need), "ERR_NULL"),
        ((w, ffi.NULL, B, b["h"], b["c"], b["y"], b["ws"], need), "ERR_NULL"),
        ((w, b["x"], B, ffi.NULL, b["c"], b["y"], b["ws"], need), "ERR_NULL"),
        ((w, b["x"], B, b["h"], ffi.NULL, b["y"], b["ws"], need), "ERR_NULL"),
        ((w, b["x"], B, b["h"], b["c"], ffi.NULL, b["ws"], need), "ERR_NULL"),
        ((w, b["x"], B, b["h"], b["c"], b["y"], ffi.NULL, need), "ERR_NULL"),
        ((w, b["x"], 0, b["h"], b["c"], b["y"], b["ws"], need), "ERR_SIZE"),
        ((w, b["x"], -3, b["h"], b["c"], b["y"], b["ws"], need), "ERR_SIZE"),
        ((w, b["x"], B, b["h"], b["c"], b["y"], b["ws"], need - 1), "ERR_WORKSPACE"),
        ((w, b["x"], 2**31 - 1, b["h"], b["c"], b["y"], b["ws"], need), "ERR_WORKSPACE"),
    ]:
        assert step(*args) == CODES[code]
        tried("C API bad arguments")
    assert reset(b["h"], b["c"], B) == 0
    assert reset(ffi.NULL, b["c"], B) == CODES["ERR_NULL"]
    assert reset(b["h"], ffi.NULL, B) == CODES["ERR_NULL"]
    assert reset(b["h"], b["c"], 0) == CODES["ERR_SIZE"]
    for row in (-1, B, 2**31 - 1, -(2**31)):
        assert reset_row(b["h"], b["c"], B, row) == CODES["ERR_SIZE"]
    assert reset_row(b["h"], b["c"], 0, 0) == CODES["ERR_SIZE"]
    assert reset_row(ffi.NULL, b["c"], B, 0) == CODES["ERR_NULL"]
    assert reset_row(b["h"], b["c"], B, B - 1) == 0
    tried("C API bad arguments", 11)


def test_python_turns_c_errors_into_exceptions(capi):
    model = with_c_functions(capi.with_weights(lstmgen.random_weights(capi.spec, 2)),
                             workspace_floats=lambda real, T, B: 1)  # a lying size: the C catches it
    with pytest.raises(ValueError, match=r"capi_forward failed with C error -4 \(ERR_WORKSPACE"):
        model(np.zeros((3, 2, 3), np.float32))
    s = model.stream(batch=2)
    with pytest.raises(ValueError, match=r"capi_step failed with C error -4"):
        s.step(np.zeros((2, 3), np.float32))
    tried("C API bad arguments", 2)


# ---- numerics at the edges ----------------------------------------------------------------------

ATOL = 1e-5


def _close(got, want, atol=ATOL):
    assert got.shape == want.shape
    assert np.array_equal(np.isnan(got), np.isnan(want)), "NaN pattern differs"
    ok = ~np.isnan(want)
    err = float(np.abs(got[ok] - want[ok]).max()) if ok.any() else 0.0
    assert err <= atol, f"max abs error {err:.3g}"


@pytest.fixture(scope="module")
def bidir():
    spec = lstmgen.LSTMSpec(input_size=5, hidden_size=6, num_layers=2, bidirectional=True, proj_size=3)
    w = lstmgen.random_weights(spec, seed=4)
    return spec, w, lstmgen.compile(spec, w, prefix="edge")


@pytest.mark.parametrize("scale", [1e4, 1e10, 1e20, 1e30, 3e38])
def test_huge_inputs_saturate_like_the_reference(bidir, scale):
    spec, w, model = bidir
    rng = np.random.default_rng(1)
    x = (np.sign(rng.standard_normal((7, 3, 5))) * scale * rng.uniform(0.5, 1, (7, 3, 5))).astype(np.float32)
    if scale > 1e30:  # x . W_ih overflows float32 to +-inf (or NaN from inf - inf): as in float32 torch
        out, (h, c) = model(x)
        assert not np.isinf(out).any()
        return
    out, (h, c) = model(x)
    ref, (rh, rc) = reference.lstm_forward(spec, w, x)
    assert np.isfinite(out).all() and np.isfinite(h).all() and np.isfinite(c).all()
    for got, want in ((out, ref), (h, rh), (c, rc)):
        _close(got, want)
    tried("extreme numerics")


def test_saturated_gates_with_huge_biases():
    spec = lstmgen.LSTMSpec(input_size=2, hidden_size=3)
    w = lstmgen.random_weights(spec, seed=2)
    for sign in (1, -1):
        w2 = dict(w, bias_ih_l0=np.full(12, sign * 1e6, np.float32), bias_hh_l0=np.full(12, sign * 3e38, np.float32))
        model = lstmgen.compile(spec, w2, prefix="sat")
        x = np.random.default_rng(0).standard_normal((50, 2, 2)).astype(np.float32)
        out, (h, c) = model(x)
        ref, (rh, rc) = reference.lstm_forward(spec, w2, x)
        # all gates 1: c grows by tanh(big) = 1 per step, h = tanh(c); all gates 0: everything 0
        for got, want in ((out, ref), (h, rh), (c, rc)):
            assert np.isfinite(got).all()
            _close(got, want)
        if sign > 0:
            assert np.allclose(c[0], 50.0)
        tried("extreme numerics")


def test_hundred_thousand_steps():
    """100k steps: finite, and equal to the reference. The full reference run (6 s of numpy) is in
    `make sanitize` (LSTMGEN_FULL=1); `make test` checks the first 2000 steps and the last 2000,
    started from the C's own state at t = 98000 (so a drift in the C would show)."""
    spec = lstmgen.LSTMSpec(input_size=2, hidden_size=4)
    w = lstmgen.random_weights(spec, seed=5, scale=1.5)  # larger weights: a less forgetful cell
    model = lstmgen.compile(spec, w, prefix="longseq")
    T, K = 100_000, 2000
    x = np.random.default_rng(3).standard_normal((T, 1, 2)).astype(np.float32) * 3
    out, (h, c) = model(x)
    assert np.isfinite(out).all() and np.isfinite(h).all() and np.isfinite(c).all()
    if FULL:
        ref, (rh, rc) = reference.lstm_forward(spec, w, x)
        for got, want in ((out, ref), (h, rh), (c, rc)):
            _close(got, want)
    else:
        ref, _ = reference.lstm_forward(spec, w, x[:K])
        _close(out[:K], ref)
        _, mid = model(x[: T - K])
        ref, (rh, rc) = reference.lstm_forward(spec, w, x[T - K :], mid)
        for got, want in ((out[T - K :], ref), (h, rh), (c, rc)):
            _close(got, want)
    # and streaming the same sequence gives the same numbers as the whole-sequence call
    s = model.stream()
    ys = np.stack([s.step(x[t, 0]) for t in range(K)])
    assert np.array_equal(ys, out[:K, 0])
    tried("extreme numerics")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_input_propagates_like_torch(bidir, bad):
    torch = need_module("torch")
    spec, w, model = bidir
    mod = torch.nn.LSTM(5, 6, num_layers=2, bidirectional=True, proj_size=3)
    mod.load_state_dict({k: torch.from_numpy(v) for k, v in w.items()})
    x = np.random.default_rng(6).standard_normal((9, 3, 5)).astype(np.float32)
    x[4, 1, 2] = bad  # one poisoned element: row 1 at t = 4
    out, (h, c) = model(x)
    with torch.no_grad():
        t_out, (t_h, t_c) = mod(torch.from_numpy(x))
    for got, want in ((out, t_out), (h, t_h), (c, t_c)):
        _close(got, want.numpy(), atol=1e-5)
    assert not np.isnan(out[:, [0, 2]]).any()  # the other rows are untouched
    if np.isnan(bad):  # NaN reaches all of row 1 (both directions, then layer 2 at every t)
        assert np.isnan(out[:, 1]).all()
    else:  # +-inf saturates the gates it feeds: finite, like torch
        assert np.isfinite(out).all()
    ref, _ = reference.lstm_forward(spec, w, x)
    _close(out, ref)
    tried("extreme numerics")


def test_nan_input_with_lengths_stays_in_its_row():
    spec = lstmgen.LSTMSpec(input_size=3, hidden_size=4)
    w = lstmgen.random_weights(spec, seed=7)
    model = lstmgen.compile(spec, w, prefix="nanlen")
    x = np.random.default_rng(8).standard_normal((6, 3, 3)).astype(np.float32)
    x[5, 0, 0] = np.nan  # past row 0's length 4: never read
    x[2, 2, 1] = np.nan  # inside row 2's sequence
    out, (h, c) = model(x, lengths=[4, 6, 6])
    ref, (rh, rc) = reference.lstm_forward(spec, w, x, lengths=[4, 6, 6])
    for got, want in ((out, ref), (h, rh), (c, rc)):
        _close(got, want)
    assert not np.isnan(out[:, 0]).any() and np.isnan(out[2:, 2]).all()
    tried("extreme numerics")


def test_counts_reported(capsys):
    """Prints the number of hostile inputs tried per entry point (the README's table quotes it)."""
    total = sum(counts.values())
    with capsys.disabled():
        print(f"\nhostile inputs tried in this run: {total}")
        for k, v in sorted(counts.items()):
            print(f"  {v:6d}  {k}")
    assert math.isfinite(total)

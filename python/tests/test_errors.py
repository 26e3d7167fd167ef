"""Errors: NpairsError subclasses with the status and a message naming the argument."""

import ctypes
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

import npairs
from npairs import _core, _lib

LABELS = np.array([0, 0, 1, 1])
S = np.eye(4)


def raises(cls, *words):
    """pytest.raises that also checks the message names each of `words`."""

    class _Check:
        def __enter__(self):
            self.ctx = pytest.raises(cls)
            self.info = self.ctx.__enter__()
            return self.info

        def __exit__(self, *exc):
            result = self.ctx.__exit__(*exc)
            if not result:  # another exception: let it propagate unchanged
                return result
            err = self.info.value
            assert isinstance(err, npairs.NpairsError)
            for w in words:
                assert w in str(err), f"{w!r} not in {str(err)!r}"
            return result

    return _Check()


def test_error_classes_map_statuses():
    assert issubclass(npairs.InvalidArgumentError, ValueError)
    assert issubclass(npairs.InvalidValueError, ValueError)
    assert issubclass(npairs.InvalidDTypeError, TypeError)
    assert issubclass(npairs.UnsupportedError, NotImplementedError)
    assert issubclass(npairs.BackendUnavailableError, RuntimeError)
    assert issubclass(npairs.DeviceError, RuntimeError)
    assert issubclass(npairs.OutOfMemoryError, MemoryError)
    assert issubclass(npairs.LibraryNotFoundError, OSError)
    for status, cls in [(1, npairs.InvalidArgumentError), (2, npairs.InvalidValueError), (3, npairs.UnsupportedError),
                        (4, npairs.OutOfMemoryError), (5, npairs.BackendUnavailableError), (6, npairs.DeviceError),
                        (7, npairs.InternalError)]:
        err = npairs.errors.error_for_status(status, "msg")
        assert type(err) is cls and err.status == status and str(err) == "msg"
        again = pickle.loads(pickle.dumps(err))
        assert type(again) is cls and again.status == status and again.message == "msg"
    assert type(npairs.errors.error_for_status(99, "x")) is npairs.NpairsError


def test_y_pred_not_2d():
    with raises(npairs.InvalidArgumentError, "y_pred", "2-D") as info:
        npairs.npairs_loss(LABELS, np.ones(4))
    assert info.value.status == 1


def test_label_count_mismatch():
    with raises(npairs.InvalidArgumentError, "y_true", "3 labels", "4 rows"):
        npairs.npairs_loss(LABELS[:3], S)


def test_labels_not_1d():
    with raises(npairs.InvalidArgumentError, "y_true", "1-D"):
        npairs.npairs_loss(np.zeros((4, 2), np.int64), S)


def test_columns_without_column_labels():
    with raises(npairs.InvalidArgumentError, "column_labels"):
        npairs.npairs_loss(LABELS, np.ones((4, 5)))


def test_column_labels_count():
    with raises(npairs.InvalidArgumentError, "column_labels", "5 columns"):
        npairs.npairs_loss(LABELS, np.ones((4, 5)), column_labels=[0, 1, 0])


def test_row_without_positive_is_invalid_value():
    with raises(npairs.InvalidValueError, "y_true", "row 2") as info:
        npairs.npairs_loss(LABELS, np.ones((4, 3)), column_labels=[0, 0, 5])
    assert info.value.status == 2 and isinstance(info.value, ValueError)


def test_negative_multilabel_is_invalid_value():
    Y = np.eye(4)
    Y[1, 2] = -1
    with raises(npairs.InvalidValueError, "y_true", "row 1"):
        npairs.npairs_multilabel_loss(Y, S)


def test_multilabel_row_without_positive():
    Y = np.eye(4)
    Y[3] = 0
    with raises(npairs.InvalidValueError, "y_true", "row 3"):
        npairs.npairs_multilabel_loss(Y, S)


POISON = 0xA5


def _output_spans(call):
    """(pointer, bytes) of each output of a recorded npairs_loss call."""
    p = call.problem
    item = {_lib.F32: 4, _lib.F64: 8}[p.dtype]
    R, M = p.rows, p.cols or p.rows
    spans = []
    if call.loss:
        none = call.options is not None and call.options.reduction == _lib.REDUCTION_NONE
        spans.append((call.loss, item * (R if none else 1)))
    if call.grads is not None:
        for name, n in (("similarity", R * M), ("anchors", R * p.dim), ("positives", M * p.dim)):
            if getattr(call.grads, name):
                spans.append((getattr(call.grads, name), item * n))
    return spans


def poisoning_spy(monkeypatch, write_first=False):
    """Wraps npairs_loss: fills every output with POISON before the call and records, for each failed
    call, whether every output byte is still POISON. write_first plants a bug: one byte written first."""
    lib = _lib.load()
    real = lib.npairs_loss
    failed = []

    def spy(ctx, options, problem, grad_loss, loss, grads):
        from conftest import LibraryCall

        call = LibraryCall(options, problem, grad_loss, loss, grads)
        spans = _output_spans(call)
        for ptr, n in spans:
            ctypes.memset(ptr, POISON, n)
        if write_first and spans:
            ctypes.memset(spans[0][0], 0, 1)
        status = real(ctx, options, problem, grad_loss, loss, grads)
        if status:
            failed.append(all(ctypes.string_at(ptr, n) == bytes([POISON]) * n for ptr, n in spans))
        return status

    monkeypatch.setattr(lib, "npairs_loss", spy)
    return failed


def _library_detected_errors():
    """Bad inputs that only the library can see (the targets' values), with every output asked for."""
    Y = np.eye(4)
    Y[1, 2] = -1
    return [
        lambda: npairs.npairs_loss(LABELS, np.ones((4, 3)), column_labels=[0, 0, 5], return_grad=True),
        lambda: npairs.npairs_loss(LABELS, np.ones((4, 3)), column_labels=[0, 0, 5], reduction="none",
                                   return_grad=True),
        lambda: npairs.npairs_multilabel_loss(Y, S, return_grad=True),
        lambda: npairs.npairs_embeddings_loss(LABELS, np.ones((4, 2)), np.ones((3, 2)), column_labels=[0, 0, 5],
                                              return_grads=True),
    ]


def test_outputs_untouched_on_library_errors(monkeypatch):
    failed = poisoning_spy(monkeypatch)
    cases = _library_detected_errors()
    for case in cases:
        with pytest.raises(npairs.InvalidValueError):
            case()
    assert failed == [True] * len(cases)  # every failed call left every output byte as it was


def test_outputs_untouched_check_catches_a_planted_write(monkeypatch):
    failed = poisoning_spy(monkeypatch, write_first=True)
    with pytest.raises(npairs.InvalidValueError):
        _library_detected_errors()[0]()
    assert failed == [False]


@pytest.mark.parametrize("case", [
    lambda: npairs.npairs_loss(LABELS[:3], S),
    lambda: npairs.npairs_loss(LABELS, np.ones((4, 5))),
    lambda: npairs.npairs_loss(LABELS, S, np.ones(3)),
    lambda: npairs.npairs_loss(LABELS, S, temperature=0),
    lambda: npairs.npairs_loss(LABELS, S.astype(np.float16)),
    lambda: npairs.npairs_embeddings_loss(LABELS, S, S, reg_lambda=0.1, reduction="none"),
    lambda: npairs.npairs_multilabel_loss(np.eye(4), np.ones((4, 3)), column_labels=np.ones((3, 5))),
])
def test_python_checked_errors_never_call_the_library(library_calls, case):
    with pytest.raises(npairs.NpairsError):
        case()
    assert library_calls == []


@pytest.mark.parametrize("value", [0, -1.0, float("nan"), float("inf"), "x"])
def test_bad_temperature(value):
    with raises(npairs.InvalidArgumentError, "temperature"):
        npairs.npairs_loss(LABELS, S, temperature=value)


@pytest.mark.parametrize("value", [-0.1, float("nan"), float("inf")])
def test_bad_reg_lambda(value):
    with raises(npairs.InvalidArgumentError, "reg_lambda"):
        npairs.npairs_embeddings_loss(LABELS, S, S, reg_lambda=value)


def test_reg_lambda_with_none_reduction():
    with raises(npairs.InvalidArgumentError, "reg_lambda", "none"):
        npairs.npairs_embeddings_loss(LABELS, S, S, reg_lambda=0.002, reduction="none")
    with raises(npairs.InvalidArgumentError, "reg_lambda", "none"):
        npairs.NpairsEmbeddingsLoss(reg_lambda=0.002, reduction="none")


def test_bad_reduction():
    with raises(npairs.InvalidArgumentError, "reduction", "mean_squared"):
        npairs.npairs_loss(LABELS, S, reduction="mean_squared")


def test_reduction_aliases():
    base = npairs.npairs_loss(LABELS, S)
    assert npairs.npairs_loss(LABELS, S, reduction="AUTO") == base
    assert npairs.npairs_loss(LABELS, S, reduction="mean") == base
    assert npairs.npairs_loss(LABELS, S, reduction="Sum_Over_Batch_Size") == base
    assert abs(npairs.npairs_loss(LABELS, S, reduction="sum") - 4 * base) <= 1e-15 * 4 * base


@pytest.mark.parametrize("code", [0, 1, 2, True])
def test_reduction_integers_are_refused(code):
    with raises(npairs.InvalidArgumentError, "reduction", repr(code)):
        npairs.npairs_loss(LABELS, S, reduction=code)
    with raises(npairs.InvalidArgumentError, "reduction"):
        npairs.NpairsLoss(reduction=code)


def test_non_square_similarity_without_column_labels():
    with raises(npairs.InvalidArgumentError, "y_pred is not square (4 rows, 6 columns)", "column_labels"):
        npairs.npairs_loss(LABELS, np.ones((4, 6)))
    with raises(npairs.InvalidArgumentError, "positives has 5 rows but anchors has 4", "column_labels"):
        npairs.npairs_embeddings_loss(LABELS, np.ones((4, 2)), np.ones((5, 2)))


@pytest.mark.parametrize("call,name", [
    (lambda: npairs.npairs_loss(None, S), "y_true"),
    (lambda: npairs.npairs_loss(LABELS, None), "y_pred"),
    (lambda: npairs.npairs_multilabel_loss(None, S), "y_true"),
    (lambda: npairs.npairs_embeddings_loss(None, S, S), "labels"),
    (lambda: npairs.npairs_embeddings_loss(LABELS, S, None), "positives"),
    (lambda: npairs.NpairsLoss()(None, S), "y_true"),
])
def test_missing_inputs_are_named(call, name):
    with raises(npairs.InvalidArgumentError, f"{name} is None"):
        call()


@pytest.mark.parametrize("value", [-1, 1.5, "2", True])
def test_bad_threads(value):
    with raises(npairs.InvalidArgumentError, "threads"):
        npairs.npairs_loss(LABELS, S, threads=value)
    with raises(npairs.InvalidArgumentError, "threads"):
        npairs.set_num_threads(value)


def test_bad_backend():
    with raises(npairs.InvalidArgumentError, "backend", "tpu"):
        npairs.npairs_loss(LABELS, S, backend="tpu")


@pytest.mark.skipif(npairs.backend_available("cuda"), reason="a CUDA device is present")
def test_cuda_backend_unavailable():
    with raises(npairs.BackendUnavailableError, "CUDA") as info:
        npairs.npairs_loss(LABELS, S, backend="cuda")
    assert info.value.status == 5 and isinstance(info.value, RuntimeError)


def test_complex_y_pred():
    with raises(npairs.InvalidDTypeError, "y_pred", "complex") as info:
        npairs.npairs_loss(LABELS, S.astype(np.complex128))
    assert isinstance(info.value, TypeError) and isinstance(info.value, ValueError)


def test_non_integer_labels():
    with raises(npairs.InvalidDTypeError, "y_true", "integer"):
        npairs.npairs_loss(np.array([0.5, 0, 1, 1]), S)


def test_string_labels():
    with raises(npairs.InvalidDTypeError, "y_true"):
        npairs.npairs_loss(np.array(["a", "a", "b", "b"]), S)


def test_ragged_input():
    with raises(npairs.InvalidArgumentError, "y_pred"):
        npairs.npairs_loss(LABELS, [[1, 2], [3]])


def test_bad_sample_weight_shape():
    with raises(npairs.InvalidArgumentError, "sample_weight", "[4]"):
        npairs.npairs_loss(LABELS, S, np.ones(3))


def test_bad_grad_loss_shape():
    with raises(npairs.InvalidArgumentError, "grad_loss"):
        npairs.npairs_loss(LABELS, S, grad_loss=np.ones(4), return_grad=True)
    with raises(npairs.InvalidArgumentError, "grad_loss"):
        npairs.npairs_loss(LABELS, S, reduction="none", grad_loss=np.ones(3), return_grad=True)


def test_embedding_width_mismatch():
    with raises(npairs.InvalidArgumentError, "anchors", "positives", "width"):
        npairs.npairs_embeddings_loss(LABELS, np.ones((4, 3)), np.ones((4, 2)))


def test_embeddings_without_columns():
    with raises(npairs.InvalidArgumentError, "dim"):
        npairs.npairs_embeddings_loss(LABELS, np.ones((4, 0)), np.ones((4, 0)))


def test_multilabel_classes_mismatch():
    with raises(npairs.InvalidArgumentError, "column_labels"):
        npairs.npairs_multilabel_loss(np.eye(4), np.ones((4, 3)), column_labels=np.ones((3, 5)))


def test_rows_without_columns():
    with raises(npairs.InvalidArgumentError, "y_pred", "no columns"):
        npairs.npairs_loss(LABELS, np.ones((4, 0)), column_labels=np.zeros(0, np.int64))


# ---------------------------------------------------------------------------
# The C layer through ctypes: struct layouts and statuses


def test_struct_layouts_match_the_library():
    lib = _lib.load()
    for cls, init in [(_lib.Options, lib.npairs_options_init), (_lib.Problem, lib.npairs_problem_init),
                      (_lib.Gradients, lambda g: _lib.function("npairs_gradients_init_sized")(g, ctypes.sizeof(_lib.Gradients)))]:
        buf = ctypes.create_string_buffer(b"\xab" * 512)
        init(ctypes.cast(buf, ctypes.POINTER(cls)))
        written = ctypes.c_size_t.from_buffer(buf).value
        assert written == ctypes.sizeof(cls), f"sizeof({cls.__name__}): C {written}, ctypes {ctypes.sizeof(cls)}"
        # init writes exactly struct_size bytes: zero-fill (problem, gradients) reaches the end.
        assert buf.raw[written] == 0xAB
    assert (_lib.Options.reduction.offset, _lib.Options.temperature.offset, _lib.Options.reg_lambda.offset,
            _lib.Options.flags.offset) == (8, 16, 24, 32)
    if ctypes.sizeof(ctypes.c_void_p) == 8:
        assert ctypes.sizeof(_lib.Options) == 40
        assert ctypes.sizeof(_lib.Problem) == 120
        assert _lib.Problem.labels.offset == 32 and _lib.Problem.label_dtype.offset == 48
        assert _lib.Problem.sample_weight.offset == 112
        assert ctypes.sizeof(_lib.Gradients) == 40 and _lib.GRADIENTS_SIZE_1_0 == 32  # 1.1: temperature at the end
    # The exported npairs_gradients_init fills a 1.0 caller's struct and no byte more.
    buf = ctypes.create_string_buffer(b"\xab" * 64)
    lib.npairs_gradients_init(ctypes.cast(buf, ctypes.POINTER(_lib.Gradients)))
    assert ctypes.c_size_t.from_buffer(buf).value == _lib.GRADIENTS_SIZE_1_0
    assert buf.raw[_lib.GRADIENTS_SIZE_1_0] == 0xAB
    opts = _lib.Options()
    lib.npairs_options_init(ctypes.byref(opts))
    assert (opts.reduction, opts.temperature, opts.reg_lambda, opts.flags) == (2, 1.0, 0.0, 0)


def _raw_problem():
    lib = _lib.load()
    prob = _lib.Problem()
    lib.npairs_problem_init(ctypes.byref(prob))
    return lib, prob


def test_raw_status_and_message():
    lib, prob = _raw_problem()
    S32 = np.eye(4, dtype=np.float32)
    prob.rows, prob.dtype, prob.similarity = 4, _lib.F32, S32.ctypes.data
    ctx = _core.context(_lib.BACKEND_CPU, 0)
    out = ctypes.c_float(-1.0)
    status = lib.npairs_loss(ctx.handle, None, ctypes.byref(prob), None, ctypes.byref(out), None)
    assert status == _lib.ERROR_INVALID_ARGUMENT
    assert "problem.labels" in _lib.last_error()
    assert out.value == -1.0
    with raises(npairs.InvalidArgumentError, "problem.labels"):
        _core.check(status)


def test_raw_struct_size_rules():
    lib, prob = _raw_problem()
    labels = np.array([0, 0, 1, 1], np.int64)
    S64 = np.eye(4)
    prob.rows, prob.dtype, prob.similarity = 4, _lib.F64, S64.ctypes.data
    prob.labels, prob.label_dtype = labels.ctypes.data, _lib.I64
    ctx = _core.context(_lib.BACKEND_CPU, 0)
    out = ctypes.c_double()
    assert lib.npairs_loss(ctx.handle, None, ctypes.byref(prob), None, ctypes.byref(out), None) == 0
    assert out.value == npairs.npairs_loss(labels, S64)  # the same call through the package

    class Bigger(ctypes.Structure):
        _fields_ = [("problem", _lib.Problem), ("extra", ctypes.c_uint64)]

    big = Bigger(prob, 7)
    big.problem.struct_size = ctypes.sizeof(Bigger)
    status = lib.npairs_loss(ctx.handle, None, ctypes.cast(ctypes.byref(big), ctypes.POINTER(_lib.Problem)), None,
                             ctypes.byref(out), None)
    with raises(npairs.UnsupportedError, "struct_size"):
        _core.check(status)
    big.extra = 0
    assert lib.npairs_loss(ctx.handle, None, ctypes.cast(ctypes.byref(big), ctypes.POINTER(_lib.Problem)), None,
                           ctypes.byref(out), None) == 0
    prob.struct_size = 8
    with raises(npairs.InvalidArgumentError, "struct_size"):
        _core.check(lib.npairs_loss(ctx.handle, None, ctypes.byref(prob), None, ctypes.byref(out), None))


def test_cpu_context_rejects_streams():
    ctx = _core.Context(_lib.BACKEND_CPU, 0)
    ctx.set_stream(None)
    with raises(npairs.UnsupportedError, "stream"):
        ctx.set_stream(0x1234)
    ctx.synchronize()
    ctx.close()
    ctx.close()  # idempotent


def test_version():
    v = npairs.library_version()
    assert v.split(".")[0] == "1"
    assert _lib.load().npairs_version_number() // 10000 == 1


def test_library_not_found_is_lazy_and_clear(tmp_path):
    code = (
        "import npairs\n"
        "try:\n"
        "    npairs.npairs_loss([0, 1], [[1.0, 0.0], [0.0, 1.0]])\n"
        "except npairs.LibraryNotFoundError as e:\n"
        "    assert isinstance(e, OSError) and e.status is None\n"
        "    print(e)\n"
        "else:\n"
        "    raise SystemExit('no error')\n"
    )
    env = dict(os.environ, NPAIRS_LIBRARY=str(tmp_path / "missing" / "libnpairs.so"),
               PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "NPAIRS_LIBRARY" in out.stdout and "missing" in out.stdout

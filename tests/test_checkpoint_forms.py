"""The authors' checkpoint in every pickle form their code could have written, 2020-2023.

`tests/data/old_checkpoints/` holds files written by real old dill / NumPy / Python
versions; `helpers.pickle_forms` writes the same forms without dill (every form x NumPy
module path x protocol 2-5). Each must load to exactly the arrays it was written from,
and nothing but NumPy's array and scalar rebuilders and `_codecs.encode` may be reached
through dill's `_import_module` / `_get_attr` pair. No jax, Haiku or dill needed.
"""

import pathlib
import re
import sys

import numpy as np
import pytest

from byol_tf.deepmind_checkpoint import reader
from helpers import old_checkpoints, pickle_forms

FIXTURES = sorted((pathlib.Path(__file__).parent / "data" / "old_checkpoints").glob("*.pkl"))
_NAME = re.compile(r"dill(?P<dill>[\d.]+)-numpy(?P<numpy>[\d.]+)-py(?P<python>[\d.]+)-p(?P<protocol>\d)")


def _assert_reads_expected(checkpoint, step=old_checkpoints.STEP, rng=old_checkpoints.RNG):
    actual = (checkpoint.online_params, checkpoint.online_state, checkpoint.target_params,
              checkpoint.target_state)
    for got, want in zip(actual, old_checkpoints.expected()):
        assert type(got) is dict and sorted(got) == sorted(want)
        for module, leaves in want.items():
            assert type(got[module]) is dict and sorted(got[module]) == sorted(leaves)
            for name, value in leaves.items():
                assert got[module][name].dtype == value.dtype, (module, name)
                np.testing.assert_array_equal(got[module][name], value)
    assert checkpoint.step == step and type(checkpoint.step) is int
    np.testing.assert_array_equal(checkpoint.rng, np.array(rng, np.uint32))


def _form_of(versions):
    dill = tuple(int(p) for p in versions["dill"].split(".")[:3])
    form = "dill-0.3.1" if dill < (0, 3, 5) else "dill-0.3.5" if dill < (0, 3, 6) else "dill-0.3.6"
    return form, "numpy._core" if versions["numpy"].startswith("2") else "numpy.core"


def test_the_recorded_files_cover_every_form():
    assert len(FIXTURES) >= 14
    forms = {_form_of(_NAME.match(f.stem).groupdict()) for f in FIXTURES}
    assert forms == {(f, c) for f in pickle_forms.FORMS for c in pickle_forms.NUMPY_CORES} - {
        ("dill-0.3.5", "numpy._core")}  # dill 0.3.5 predates NumPy 2
    assert {_NAME.match(f.stem)["protocol"] for f in FIXTURES} == {"2", "3", "4", "5"}


@pytest.mark.parametrize("path", FIXTURES, ids=[f.stem for f in FIXTURES])
def test_files_written_by_old_dill_versions_load_exactly(path):
    data = path.read_bytes()
    if _NAME.match(path.stem)["dill"] < "0.3.5":
        assert b"_get_attr" in data and b"_import_module" in data  # the form once refused
    _assert_reads_expected(reader.load(str(path)))


@pytest.mark.parametrize("path", FIXTURES, ids=[f.stem for f in FIXTURES])
def test_the_writer_reproduces_the_recorded_bytes(path):
    versions = _NAME.match(path.stem).groupdict()
    if versions["python"] != "%d.%d" % sys.version_info[:2]:
        pytest.skip(f"written by Python {versions['python']}, whose pickler lays out some opcodes differently")
    form, numpy_core = _form_of(versions)
    written = pickle_forms.dumps(old_checkpoints.checkpoint_data(), form, int(versions["protocol"]), numpy_core)
    assert written == path.read_bytes()


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
@pytest.mark.parametrize("numpy_core", pickle_forms.NUMPY_CORES)
@pytest.mark.parametrize("form", pickle_forms.FORMS)
def test_every_form_loads_exactly(form, numpy_core, protocol):
    data = pickle_forms.dumps(old_checkpoints.checkpoint_data(step=7, rng=(3, 9)), form, protocol, numpy_core)
    _assert_reads_expected(reader.loads(data), step=7, rng=(3, 9))


@pytest.mark.parametrize("module, name, refused", [
    ("os", "system", "refused to import the module 'os'"),
    ("subprocess", "call", "refused to import the module 'subprocess'"),
    ("builtins", "eval", "refused to import the module 'builtins'"),
    ("posix", "system", "refused to import the module 'posix'"),
    ("numpy.core._multiarray_umath", "fromfile", "refused the attribute 'fromfile' of numpy multiarray"),
    ("numpy._core._multiarray_umath", "_vec_string", "refused the attribute '_vec_string'"),
    ("_codecs", "decode", "refused the attribute 'decode' of _codecs"),
    ("_codecs", "lookup", "refused the attribute 'lookup' of _codecs"),
])
def test_dill_attribute_lookups_reach_only_the_array_rebuilders(tmp_path, module, name, refused):
    marker = tmp_path / "executed"
    hostile = pickle_forms.dill_attribute_call(module, name, (f"touch {marker}",))
    for form in ("dill-0.3.1", "dill-0.3.6"):
        data = pickle_forms.dumps(
            dict(experiment_state=hostile, step=1, rng=np.zeros(2, np.uint32)), form)
        with pytest.raises(reader.CheckpointError, match=re.escape(refused)) as info:
            reader.loads(data, "evil.pkl")
        assert "\n" not in str(info.value) and "nothing was executed" in str(info.value)
    assert not marker.exists()


def test_get_attr_of_anything_but_a_named_module_is_refused():
    # _get_attr(numpy.ndarray, "tofile"): the first argument is a class, not _import_module's result.
    call = pickle_forms._Call(pickle_forms._Global("dill._dill", "_get_attr"),
                              (pickle_forms._Global("numpy", "ndarray"), "tofile"))
    with pytest.raises(reader.CheckpointError, match="refused the attribute 'tofile' of type"):
        reader.loads(pickle_forms.dumps(dict(experiment_state=call, step=1), "dill-0.3.1"))

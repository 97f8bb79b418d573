"""nnctl/npz.py: the .npz bytes nnctl writes read back (with np.load and nnctl's own reader) to the arrays
given, exactly as np.savez's do."""

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from nnctl.data.files import read_npz_arrays
from nnctl.npz import npz_bytes

SAVEZ_ARGUMENTS = {"file", "allow_pickle"}  # names np.savez cannot take as array names
DTYPES = st.sampled_from(["<f4", "<f8", ">f8", "<i8", "<u4", "|b1", "<i2", "<c16", "<U7", "|S5"])


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=12).filter(lambda s: "/" not in s and "\x00" not in s and s not in SAVEZ_ARGUMENTS),
                       DTYPES.flatmap(lambda dtype: hnp.arrays(dtype, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5))),
                       min_size=1, max_size=4))  # fmt: skip
def test_npz_reads_back_as_savez_would(tmp_path_factory, arrays):
    data = npz_bytes(arrays)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path = tmp_path_factory.mktemp("npz") / "a.npz"
    path.write_bytes(data)
    ours, names = read_npz_arrays(path)
    with np.load(io.BytesIO(data)) as loaded, np.load(io.BytesIO(buffer.getvalue())) as theirs:
        assert names == list(arrays) == loaded.files == theirs.files
        for name, array in arrays.items():
            for back in (loaded[name], ours[name]):
                assert back.dtype == theirs[name].dtype == array.dtype and back.shape == array.shape
                assert back.tobytes() == array.tobytes()  # bit for bit, NaN payloads and signed zeros too


def test_views_and_fortran_order_are_written_in_c_order():
    base = np.arange(24.0).reshape(4, 6)
    arrays = {"strided": base[:, ::2], "fortran": np.asfortranarray(base), "scalar": np.array("méta"), "empty": np.zeros((0, 3))}
    with np.load(io.BytesIO(npz_bytes(arrays))) as loaded:
        for name, array in arrays.items():
            assert np.array_equal(loaded[name], array) and loaded[name].dtype == array.dtype


def test_equal_arrays_give_equal_bytes_and_data_starts_aligned():
    arrays = {"w": np.linspace(0, 1, 7, dtype=np.float32), "meta.json": np.array('{"format": 1}')}
    first = npz_bytes(arrays)
    assert first == npz_bytes({name: array.copy() for name, array in arrays.items()})
    header_end = first.index(b"\n", first.index(b"\x93NUMPY")) + 1
    assert (header_end - first.index(b"\x93NUMPY")) % 64 == 0


def test_object_arrays_are_refused():
    with pytest.raises(ValueError, match="pickles"):
        npz_bytes({"o": np.array([{"a": 1}], dtype=object)})


def test_the_zip64_form_for_huge_archives_reads_back_the_same(monkeypatch):
    import nnctl.npz

    arrays = {"w": np.arange(10.0), "meta.json": np.array("{}")}
    monkeypatch.setattr(nnctl.npz, "_ZIP_LIMIT", 0)  # every archive is "huge"
    huge = npz_bytes(arrays)
    assert huge[18:26] == b"\xff" * 8 and huge[30 + 5 : 30 + 7] == b"\x01\x00"  # the sizes in a zip64 extra field
    with np.load(io.BytesIO(huge)) as loaded:
        assert loaded.files == list(arrays) and all(np.array_equal(loaded[name], array) for name, array in arrays.items())
    with pytest.raises(ValueError, match="pickles"):
        npz_bytes({"o": np.array([None], dtype=object)})


def test_what_plain_zip_and_npy_1_0_cannot_describe_is_written_as_savez_would():
    import zipfile

    many_fields = np.zeros(2, dtype=[(f"f{i}", "<f4") for i in range(5000)])  # an .npy header past 64 KiB
    beyond_latin1 = np.zeros(3, dtype=[("名前", "<i4")])  # a field name only .npy 3.0 can hold
    for arrays in ({"a": many_fields}, {"b": beyond_latin1, "plain": np.arange(3)}):
        with np.load(io.BytesIO(npz_bytes(arrays)), max_header_size=200_000) as loaded:
            for name, array in arrays.items():
                assert loaded[name].dtype == array.dtype and loaded[name].tobytes() == array.tobytes()
    with zipfile.ZipFile(io.BytesIO(npz_bytes({"é": np.arange(2)}))) as archive:
        (info,) = archive.infolist()
        assert info.filename == "é.npy" and info.create_system == 3  # made on Unix: unzip trusts the UTF-8 name

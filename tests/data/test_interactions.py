"""Tests of matfact.data.interactions: the Interactions data model and IdIndex.

Each test pins one documented behaviour against an independent reference (a dense
matrix built by hand, a pandas groupby, sorted Python lists). Known bugs are kept
as strict xfails so that a fix makes them fail loudly until the marker is removed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from matfact.data import readers
from matfact.data.interactions import MAX_TIMESTAMP, IdIndex, Interactions
from matfact.exceptions import DataError, MatfactError, ParameterError

FAST = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# ------------------------------------------------------------------------------ helpers


def dense_by_hand(users, items, values, user_vocab, item_vocab) -> np.ndarray:
    """A users × items float32 matrix filled with a Python loop (no scipy involved)."""
    row = {raw: i for i, raw in enumerate(user_vocab)}
    col = {raw: j for j, raw in enumerate(item_vocab)}
    dense = np.zeros((len(user_vocab), len(item_vocab)), dtype=np.float32)
    for u, i, v in zip(users, items, values, strict=True):
        dense[row[u], col[i]] = v
    return dense


def explicit_frame() -> pd.DataFrame:
    """Eight distinct (user, item) pairs in a deliberately unsorted order."""
    return pd.DataFrame({
        "user": [30, 10, 20, 10, 30, -5, 20, 10],
        "item": ["b", "a", "c", "c", "a", "b", "b", "b"],
        "rating": [4.5, 3.0, 1.0, 5.0, 2.5, 0.5, 4.0, 3.5],
        "weight": [1.0, 0.0, 2.0, 0.5, 1.5, 3.0, 1.0, 0.25],
        "timestamp": [100, 50, 75, 10, 300, 0, 20, 99],
    })


def explicit_data() -> Interactions:
    return Interactions.from_pandas(explicit_frame(), rating="rating", weight="weight",
                                    timestamp="timestamp")


def pairs(data: Interactions) -> list[tuple]:
    return list(zip(data.users.tolist(), data.items.tolist(), strict=True))


# ------------------------------------------------------------------------------ round trips


def test_from_pandas_to_pandas_roundtrip_keeps_order_and_dtypes():
    df = explicit_frame()
    data = Interactions.from_pandas(df, rating="rating", weight="weight", timestamp="timestamp")
    out = data.to_pandas()
    assert list(out.columns) == ["user", "item", "rating", "weight", "timestamp"]
    assert out["user"].dtype == np.int64
    assert out["rating"].dtype == np.float32
    assert out["weight"].dtype == np.float32
    assert out["timestamp"].dtype == np.int64
    assert pd.api.types.is_string_dtype(out["item"].dtype)
    expected = df.astype({"rating": np.float32, "weight": np.float32})
    pd.testing.assert_frame_equal(out, expected, check_dtype=False)
    assert out["item"].tolist() == df["item"].tolist()
    assert data.nnz == len(data) == 8
    assert data.shape == (4, 3)
    assert not data.is_implicit and data.has_weights


def test_to_pandas_of_implicit_data_has_weight_column_of_ones_by_default():
    df = pd.DataFrame({"user": ["u2", "u1", "u2"], "item": [7, 7, 3]})
    data = Interactions.from_pandas(df)
    assert data.is_implicit and data.ratings is None and not data.has_weights
    out = data.to_pandas()
    assert list(out.columns) == ["user", "item", "weight"]
    assert out["user"].tolist() == ["u2", "u1", "u2"]
    assert out["item"].tolist() == [7, 7, 3]
    assert out["weight"].tolist() == [1.0, 1.0, 1.0]
    assert data.rating_scale is None


def test_to_pandas_of_implicit_data_with_confidence_weights():
    df = pd.DataFrame({"user": [1, 2, 1], "item": [1, 1, 2], "plays": [3, 1, 12]})
    data = Interactions.from_pandas(df, weight="plays")
    assert data.to_pandas()["weight"].tolist() == [3.0, 1.0, 12.0]
    assert data.values.tolist() == [3.0, 1.0, 12.0]


@st.composite
def distinct_interactions(draw, string_ids: bool | None = None):
    """A frame of distinct (user, item) pairs in random order, with values."""
    n_users = draw(st.integers(1, 6))
    n_items = draw(st.integers(1, 6))
    cells = draw(st.lists(st.integers(0, n_users * n_items - 1), min_size=1,
                          max_size=n_users * n_items, unique=True))
    use_str = draw(st.booleans()) if string_ids is None else string_ids
    user_raw = draw(st.lists(st.integers(-10**12, 10**12), min_size=n_users,
                             max_size=n_users, unique=True))
    if use_str:
        user_raw = [f"u{x}" for x in user_raw]
    item_raw = draw(st.lists(st.text("abcxyz", min_size=1, max_size=3), min_size=n_items,
                             max_size=n_items, unique=True))
    n = len(cells)
    ratings = draw(st.lists(st.integers(-20, 20), min_size=n, max_size=n))
    stamps = draw(st.lists(st.integers(0, MAX_TIMESTAMP), min_size=n, max_size=n))
    return pd.DataFrame({
        "user": [user_raw[c // n_items] for c in cells],
        "item": [item_raw[c % n_items] for c in cells],
        "rating": [r / 2 for r in ratings],
        "timestamp": stamps,
    })


@FAST
@given(distinct_interactions())
def test_roundtrip_property_from_pandas_to_pandas(df):
    data = Interactions.from_pandas(df, rating="rating", timestamp="timestamp")
    out = data.to_pandas()
    assert out["user"].tolist() == df["user"].tolist()
    assert out["item"].tolist() == df["item"].tolist()
    assert out["rating"].tolist() == df["rating"].tolist()  # halves are exact in float32
    assert out["timestamp"].tolist() == df["timestamp"].tolist()
    # Vocabularies are the sorted distinct raw ids; codes index into them.
    assert data.user_ids.tolist() == sorted(set(df["user"]))
    assert data.item_ids.tolist() == sorted(set(df["item"]))
    assert data.user_ids[data.user_codes].tolist() == df["user"].tolist()
    assert data.item_ids[data.item_codes].tolist() == df["item"].tolist()
    assert data.rating_scale == (df["rating"].min(), df["rating"].max())
    dense = dense_by_hand(df["user"], df["item"], df["rating"], data.user_ids, data.item_ids)
    np.testing.assert_array_equal(data.to_scipy().toarray(), dense)


@FAST
@given(hnp.arrays(np.float64, hnp.array_shapes(min_dims=2, max_dims=2, max_side=6),
                  elements=st.sampled_from([0.0, 0.0, 0.0, 1.0, -2.5, 4.0, 0.125])))
def test_from_scipy_to_scipy_roundtrip_keeps_empty_rows_and_columns(dense):
    matrix = sp.csr_matrix(dense)
    if matrix.nnz == 0:
        with pytest.raises(DataError, match="no interactions"):
            Interactions.from_scipy(matrix)
        return
    data = Interactions.from_scipy(matrix)
    assert data.shape == dense.shape
    assert data.user_ids.tolist() == list(range(dense.shape[0]))
    assert data.item_ids.tolist() == list(range(dense.shape[1]))
    out = data.to_scipy()
    assert out.dtype == np.float32 and out.shape == dense.shape
    np.testing.assert_array_equal(out.toarray(), dense.astype(np.float32))
    # Stored entries become interactions in row-major order.
    rows, cols = np.nonzero(dense)
    assert data.users.tolist() == rows.tolist()
    assert data.items.tolist() == cols.tolist()
    # The dense ndarray path gives the same thing.
    np.testing.assert_array_equal(Interactions.from_scipy(dense).to_scipy().toarray(), dense)


def test_from_scipy_implicit_drops_explicit_zeros_and_uses_values_as_weights():
    matrix = sp.csr_matrix((np.array([0.0, 3.0, 2.0]), (np.array([0, 1, 2]), np.array([0, 1, 0]))),
                           shape=(4, 3))
    explicit = Interactions.from_scipy(matrix)
    assert explicit.nnz == 3 and explicit.ratings.tolist() == [0.0, 3.0, 2.0]
    assert explicit.shape == (4, 3)
    implicit = Interactions.from_scipy(matrix, implicit=True)
    assert implicit.is_implicit and implicit.nnz == 2
    assert implicit.weights.tolist() == [3.0, 2.0]
    assert implicit.shape == (4, 3)
    np.testing.assert_array_equal(implicit.to_scipy().toarray(), matrix.toarray())


def test_from_scipy_with_raw_ids_orders_rows_by_sorted_id():
    dense = np.array([[1.0, 0.0, 2.0], [0.0, 0.0, 0.0], [0.0, 3.0, 0.0]])
    data = Interactions.from_scipy(sp.csr_matrix(dense), user_ids=["c", "a", "b"],
                                   item_ids=[30, 10, 20])
    assert data.user_ids.tolist() == ["a", "b", "c"]
    assert data.item_ids.tolist() == [10, 20, 30]
    expected = dense[[1, 2, 0]][:, [1, 2, 0]]
    np.testing.assert_array_equal(data.to_scipy().toarray(), expected)
    assert pairs(data) == [("c", 30), ("c", 20), ("b", 10)]


def test_from_scipy_sums_duplicate_coo_entries_and_accepts_sparse_arrays():
    coo = sp.coo_matrix((np.array([1.0, 2.0, 5.0]), (np.array([0, 0, 1]), np.array([1, 1, 0]))),
                        shape=(2, 2))
    data = Interactions.from_scipy(coo)
    np.testing.assert_array_equal(data.to_scipy().toarray(), [[0, 3], [5, 0]])
    arr = Interactions.from_scipy(sp.csr_array(np.array([[0.0, 2.0]])))
    assert arr.shape == (1, 2) and arr.ratings.tolist() == [2.0]


def test_from_scipy_passes_rating_scale_and_features_through():
    features = pd.DataFrame({"title": ["A", "B"]}, index=[0, 1])
    data = Interactions.from_scipy(np.array([[1.0, 2.0]]), rating_scale=(0, 5),
                                   item_features=features)
    assert data.rating_scale == (0.0, 5.0)
    assert data.item_titles().tolist() == ["A", "B"]


@pytest.mark.parametrize(
    ("matrix", "kwargs", "phrase"),
    [
        (np.zeros((2, 2)), {}, "no interactions"),
        (np.ones(3), {}, "2-D"),
        (np.eye(2), {"user_ids": ["a"]}, "but got 1 user ids"),
        (np.eye(2), {"item_ids": [1, 2, 3]}, "3 item ids"),
        (np.eye(2), {"user_ids": ["a", "a"]}, "distinct"),
        (-np.eye(2), {"implicit": True}, "> 0"),
        (np.array([[np.nan, 1.0]]), {}, "NaN or infinite"),
    ],
)
def test_from_scipy_bad_input(matrix, kwargs, phrase):
    with pytest.raises(DataError, match=phrase):
        Interactions.from_scipy(matrix, **kwargs)


# ------------------------------------------------------------------------------ files


def assert_same_interactions(data: Interactions, df: pd.DataFrame, rating: bool = True):
    assert data.users.tolist() == df["user"].tolist()
    assert data.items.tolist() == df["item"].tolist()
    if rating:
        np.testing.assert_allclose(data.ratings, df["rating"].to_numpy(), rtol=1e-6)


def test_from_csv_with_header(tmp_path):
    df = explicit_frame()
    path = tmp_path / "ratings.csv"
    df.to_csv(path, index=False)
    data = Interactions.from_csv(path, rating="rating", weight="weight", timestamp="timestamp")
    assert_same_interactions(data, df)
    assert data.weights.tolist() == df["weight"].tolist()
    assert data.timestamps.tolist() == df["timestamp"].tolist()
    pd.testing.assert_frame_equal(
        data.to_pandas(),
        Interactions.from_pandas(df, rating="rating", weight="weight",
                                 timestamp="timestamp").to_pandas())


def test_from_csv_without_header_by_position_with_tab_separator(tmp_path):
    df = explicit_frame()[["timestamp", "item", "user", "rating"]]
    path = tmp_path / "ratings.tsv"
    df.to_csv(path, index=False, header=False, sep="\t")
    data = Interactions.from_csv(path, user=2, item=1, rating=3, timestamp=0, header=None,
                                 sep="\t")
    assert_same_interactions(data, df)
    assert data.timestamps.tolist() == df["timestamp"].tolist()
    implicit = Interactions.from_csv(path, user=2, item=1, header=None, sep="\t")
    assert implicit.is_implicit and implicit.nnz == len(df)


def test_from_csv_latin1_accented_ids(tmp_path):
    df = pd.DataFrame({"user": ["José", "Zoë", "Ana", "José"],
                       "item": ["crème", "brûlée", "crème", "façade"],
                       "rating": [4.0, 3.5, 1.0, 2.0]})
    path = tmp_path / "latin.csv"
    df.to_csv(path, index=False, encoding="latin-1")
    with pytest.raises(DataError, match="encoding=") as err:
        Interactions.from_csv(path, rating="rating")
    assert "utf-8" in str(err.value)
    data = Interactions.from_csv(path, rating="rating", encoding="latin-1")
    assert_same_interactions(data, df)
    assert data.user_ids.tolist() == ["Ana", "José", "Zoë"]


@pytest.mark.parametrize(
    ("content", "kwargs", "phrase"),
    [
        ("", {}, "cannot read it"),
        ("user,item\n", {}, "no interactions"),
        ("a,b\n1,2\n", {}, r"no column 'user' \(user=\); its columns are \['a', 'b'\]"),
        ("user,item,rating\n1,a,\n2,b,3\n", {"rating": "rating"}, "NaN or infinite ratings"),
        ("user,item,rating\n,a,1\n2,b,3\n", {"rating": "rating"}, "missing user ids"),
        ("user,item,rating\n1,a,x\n2,b,3\n", {"rating": "rating"}, "must be numbers"),
        ("user,item\n1,a\n1,a\n", {}, "repeated"),
    ],
)
def test_from_csv_garbage_raises_data_error(tmp_path, content, kwargs, phrase):
    path = tmp_path / "bad.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=phrase):
        Interactions.from_csv(path, **kwargs)


def test_from_csv_binary_garbage_raises_data_error(tmp_path):
    path = tmp_path / "noise.csv"
    path.write_bytes(bytes(range(256)) * 3)
    with pytest.raises(DataError):
        Interactions.from_csv(path)


def test_from_csv_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        Interactions.from_csv(tmp_path / "nope.csv")


def test_from_parquet_roundtrip(tmp_path):
    pytest.importorskip("pyarrow")
    df = explicit_frame()
    df["when"] = pd.to_datetime(df["timestamp"], unit="s", utc=True)
    path = tmp_path / "ratings.parquet"
    df.to_parquet(path)
    data = Interactions.from_parquet(path, rating="rating", weight="weight", timestamp="when")
    assert_same_interactions(data, df)
    assert data.timestamps.tolist() == df["timestamp"].tolist()
    assert data.weights.tolist() == df["weight"].tolist()
    implicit = Interactions.from_parquet(path, duplicates="sum")
    assert implicit.is_implicit and pairs(implicit) == pairs(data)


def test_from_parquet_errors(tmp_path):
    pytest.importorskip("pyarrow")
    path = tmp_path / "ratings.parquet"
    explicit_frame().to_parquet(path)
    with pytest.raises(DataError, match="score"):
        Interactions.from_parquet(path, rating="score")
    with pytest.raises(ParameterError, match="duplicates"):
        Interactions.from_parquet(path, duplicates="first")
    text = tmp_path / "not.parquet"
    text.write_text("user,item\n1,2\n")
    with pytest.raises(DataError, match="Parquet"):
        Interactions.from_parquet(text)


# ------------------------------------------------------------------------------ readers
# matfact.data.readers: the one reader behind from_csv, from_parquet, the CLI and the apps.


@pytest.mark.parametrize(("line", "name", "sep"), [
    ("user,item,rating", "r.csv", ","),
    ("user\titem\trating", "r.csv", "\t"),
    ("user;item;rating", "r.txt", ";"),
    ("user|item|rating", "r.dat", "|"),
    ("user item  rating", "r.dat", readers.WHITESPACE),
    ("user,item;rating;x", "r.csv", ";"),  # the most frequent wins
    ("a,b\tc", "r.csv", "\t"),  # a tie goes to the earlier candidate
    ("user,item", "r.tsv.gz", "\t"),  # .tsv (under any compression) means tabs
    ("justone", "r.csv", ","),
])
def test_sniff_separator(line, name, sep):
    assert readers.sniff_separator(name, line) == sep


@pytest.mark.parametrize("suffix", ["", ".gz", ".bz2", ".xz"])
def test_sniff_reads_compressed_files_and_detects_the_header(tmp_path, suffix):
    frame = explicit_frame()
    with_header, without = tmp_path / f"a.csv{suffix}", tmp_path / f"b.tsv{suffix}"
    frame.to_csv(with_header, index=False)
    numbers = frame.drop(columns="item")  # all numbers: no header line
    numbers.to_csv(without, sep="\t", header=False, index=False)
    layout = readers.sniff(with_header)
    assert (layout.sep, layout.header, layout.n_fields) == (",", True, frame.shape[1])
    assert layout.names == list(frame.columns)
    layout = readers.sniff(without)
    assert (layout.sep, layout.names, layout.n_fields) == ("\t", None, numbers.shape[1])
    assert readers.sniff(without, header=True).header
    assert readers.sniff(with_header, sep="tab").sep == "\t"
    data = Interactions.from_csv(with_header, rating="rating", timestamp="timestamp")
    assert_same_interactions(data, frame)


def test_sniff_refuses_what_is_not_a_table(tmp_path):
    empty, binary, latin = tmp_path / "e.csv", tmp_path / "b.csv", tmp_path / "l.csv"
    empty.write_text("\n\n")
    binary.write_bytes(b"user,item\x00\n1,2\n")
    latin.write_bytes("usér,item\n1,2\n".encode("latin-1"))
    with pytest.raises(DataError, match="is empty"):
        readers.sniff(empty)
    with pytest.raises(DataError, match="NUL"):
        readers.sniff(binary)
    with pytest.raises(DataError, match=r"not valid utf-8 .*encoding='latin-1' "
                                         r"\(--encoding latin-1\)"):
        readers.sniff(latin)
    with pytest.raises(ParameterError, match="not a known text encoding"):
        readers.sniff(empty, encoding="no-such-codec")
    repeated = tmp_path / "r.csv"
    repeated.write_text("user,user\n1,2\n")
    with pytest.raises(DataError, match="repeated column names"):
        readers.sniff(repeated)
    broken = tmp_path / "x.csv.gz"
    broken.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(DataError, match="cannot read"):
        readers.sniff(broken)
    with pytest.raises(DataError):
        Interactions.from_csv(broken)


def test_resolve_column_by_name_case_or_position():
    names = ["UserId", "item", "Rating"]
    assert readers.resolve_column("item", names, 3, "f.csv", option="item=") == "item"
    assert readers.resolve_column("userid", names, 3, "f.csv", option="user=") == "UserId"
    assert readers.resolve_column("2", names, 3, "f.csv", option="rating=") == "Rating"
    assert readers.resolve_column("1", None, 3, "f.csv", option="--item-col") == 1
    with pytest.raises(ParameterError, match="--user-col: no column 'who' in f.csv"):
        readers.resolve_column("who", names, 3, "f.csv", option="--user-col")
    with pytest.raises(ParameterError, match="no header, so --user-col must be a column number"):
        readers.resolve_column("user", None, 3, "f.csv", option="--user-col")
    with pytest.raises(ParameterError, match="--item-col 3 is out of range"):
        readers.resolve_column("3", None, 3, "f.csv", option="--item-col")


def test_detect_columns_by_usual_names_positions_and_given():
    names = ["Visitor_ID", "movie-id", "Stars", "ts", "plays"]
    roles = readers.detect_columns("f.csv", names, 5, {})
    assert roles == {"user": "Visitor_ID", "item": "movie-id", "rating": "Stars",
                     "timestamp": "ts", "weight": "plays"}
    assert readers.detect_columns("f.csv", names, 5, {}, skip=("rating",))["rating"] is None
    assert readers.detect_columns("f", None, 3, {}) == {
        "user": 0, "item": 1, "rating": 2, "timestamp": None, "weight": None}
    # A headerless file with a column given: the others are not guessed by position.
    assert readers.detect_columns("f", None, 3, {"user": "1"})["item"] is None
    with pytest.raises(ParameterError, match="two roles"):
        readers.detect_columns("f.csv", names, 5, {"weight": "Stars"})


def test_read_delimited_as_text_keeps_every_field(tmp_path):
    path = tmp_path / "docs.csv"
    path.write_text('id,text\n007,NA\n8, spaced\n9,\n', encoding="utf-8")
    frame = readers.read_delimited(path, as_text=True)
    assert frame["id"].tolist() == ["007", "8", "9"]
    assert frame["text"].tolist() == ["NA", " spaced", ""]
    parsed = readers.read_delimited(path)
    assert parsed["id"].tolist() == [7, 8, 9]
    empty = tmp_path / "empty.tsv"
    empty.write_text("")
    with pytest.raises(DataError, match="cannot read it as TSV: the file is empty"):
        readers.read_delimited(empty, sep="\t")


def test_parquet_columns_leave_out_the_index(tmp_path):
    pytest.importorskip("pyarrow")
    frame = explicit_frame()
    plain, indexed = tmp_path / "plain.parquet", tmp_path / "indexed.parquet"
    frame.to_parquet(plain)
    frame.set_index("user").to_parquet(indexed)
    assert readers.parquet_columns(plain) == list(frame.columns)
    assert readers.parquet_columns(indexed) == [c for c in frame.columns if c != "user"]
    assert list(readers.read_parquet(plain, columns=["item", "user"]).columns) == ["item", "user"]
    text = tmp_path / "not.parquet"
    text.write_text("user,item\n1,2\n")
    with pytest.raises(DataError, match="cannot read it as Parquet"):
        readers.parquet_columns(text)


# ------------------------------------------------------------------------------ CSR


def test_csr_matches_dense_matrix_built_by_hand():
    df = explicit_frame()
    data = explicit_data()
    csr = data.to_scipy()
    assert isinstance(csr, sp.csr_matrix)
    assert csr.dtype == np.float32
    assert csr.shape == (4, 3)
    assert csr.has_sorted_indices and csr.has_canonical_format
    for row in range(csr.shape[0]):
        cols = csr.indices[csr.indptr[row]:csr.indptr[row + 1]]
        assert np.all(np.diff(cols) > 0)
    dense = dense_by_hand(df["user"], df["item"], df["rating"], [-5, 10, 20, 30], ["a", "b", "c"])
    np.testing.assert_array_equal(csr.toarray(), dense)
    assert csr.nnz == data.nnz
    assert data.to_scipy() is csr  # cached


def test_csr_of_implicit_data_holds_weights():
    data = Interactions.from_arrays(["b", "a", "b"], [2, 2, 1], weights=[5, 1, 2.5])
    np.testing.assert_array_equal(data.to_scipy().toarray(), [[0, 1], [2.5, 5]])
    plain = Interactions.from_arrays(["b", "a", "b"], [2, 2, 1])
    np.testing.assert_array_equal(plain.to_scipy().toarray(), [[0, 1], [1, 1]])


# ------------------------------------------------------------------------------ IdIndex


def test_id_index_from_values_sorted_ints_and_strings():
    index, codes = IdIndex.from_values([30, -2, 7, 30, 10**15])
    assert index.ids.tolist() == [-2, 7, 30, 10**15]
    assert codes.tolist() == [2, 0, 1, 2, 3]
    assert index.kind == "int" and index.ids.dtype == np.int64
    index, codes = IdIndex.from_values(["b", "B", "a", "aa", "b"])
    assert index.ids.tolist() == sorted(["b", "B", "a", "aa"])
    assert codes.tolist() == [3, 0, 1, 2, 3]
    assert index.kind == "str"
    # String ids sort as strings, not as numbers.
    index, _ = IdIndex.from_values(["10", "9", "100"])
    assert index.ids.tolist() == ["10", "100", "9"]


def test_id_index_keeps_given_order_and_refuses_repeats():
    index = IdIndex(["b", "a"])
    assert index.get_indexer(["a", "z", "b"]).tolist() == [1, -1, 0]
    assert index.to_ids([1, 0]).tolist() == ["a", "b"]
    with pytest.raises(DataError, match="distinct"):
        IdIndex([3, 1, 3])


def test_id_index_get_indexer_unknown_and_shapes():
    index = IdIndex([5, 1, 9])
    assert index.get_indexer([9, 2, 5, 1]).tolist() == [2, -1, 0, 1]
    assert index.get_indexer(9).tolist() == [2]
    assert index.get_indexer([]).tolist() == []
    assert index.get_indexer(["x", None, 1.5]).tolist() == [-1, -1, -1]
    assert index.get_indexer(["9", " 1 "]).tolist() == [2, 1]
    assert index.get_indexer(np.array([9.0, 1.0, 2.5])).tolist() == [2, 1, -1]
    assert index.get_indexer([9]).dtype == np.int64
    assert 9 in index and 2 not in index and "1" in index
    strings = IdIndex(["1", "b"])
    assert strings.get_indexer([1, 2, "b"]).tolist() == [0, -1, 1]


def test_id_index_get_indexer_mixed_query_list():
    index = IdIndex([5, 1, 9])
    assert index.get_indexer(["9", 1.0]).tolist() == [2, 1]


def test_id_index_coerce():
    ints = IdIndex([42, 7])
    out = ints.coerce("42")
    assert out.tolist() == [42] and type(out[0]) is int
    assert ints.coerce([" 7 ", 7.0, "x", 2.5]).tolist() == [7, 7, "x", 2.5]
    assert IdIndex(["42"]).coerce([42, "a"]).tolist() == ["42", "a"]


def test_id_index_extend_keeps_old_indices_and_appends_sorted_new_ones():
    index = IdIndex([5, 1])
    extended = index.extend([7, 1, 3, 3, 5, -4])
    assert extended.ids.tolist() == [5, 1, -4, 3, 7]
    for raw in (5, 1):
        assert extended.get_indexer([raw])[0] == index.get_indexer([raw])[0]
    assert index.ids.tolist() == [5, 1]  # unchanged
    assert index.extend([1, 5]) == index
    assert index.extend([]) == index
    empty = IdIndex([])
    assert len(empty) == 0
    assert empty.extend(["b", "a"]).ids.tolist() == ["a", "b"]


def test_id_index_extend_with_other_type_raises():
    with pytest.raises(DataError, match="cannot extend an index of int ids with string"):
        IdIndex([1, 2]).extend(["a"])
    with pytest.raises(DataError, match="cannot extend an index of str ids with integer"):
        IdIndex(["a"]).extend([1])


def test_id_index_extend_with_longer_strings():
    extended = IdIndex(["a"]).extend(["zz"])
    assert extended.ids.tolist() == ["a", "zz"]
    assert extended.get_indexer(["zz"]).tolist() == [1]


def test_id_index_extend_with_longer_string_sharing_a_prefix():
    assert IdIndex(["a"]).extend(["ab"]).ids.tolist() == ["a", "ab"]


def test_id_index_mixed_types_refused():
    with pytest.raises(DataError, match="mix numbers and strings"):
        IdIndex(pd.Series([1, "a"], dtype=object))
    with pytest.raises(DataError, match="mix numbers and strings"):
        IdIndex.from_values(np.array([3, "x", 4], dtype=object))


def test_id_index_to_ids_out_of_range():
    index = IdIndex([1, 2])
    assert index.to_ids([1, 1, 0]).tolist() == [2, 2, 1]
    with pytest.raises(ParameterError, match="indices must lie in"):
        index.to_ids([2])
    with pytest.raises(ParameterError):
        index.to_ids([-1])


def test_id_index_value_semantics_and_repr():
    assert IdIndex([1, 2]) == IdIndex(np.array([1, 2], dtype=np.int32))
    assert IdIndex([1, 2]) != IdIndex([2, 1])
    assert IdIndex([1, 2]) != IdIndex(["1", "2"])
    assert IdIndex([1, 2]) != [1, 2]
    assert len(IdIndex(["x", "y", "z"])) == 3
    text = repr(IdIndex(["p", "q", "r", "s"]))
    assert "4 str ids" in text and "'p'" in text and "..." in text
    with pytest.raises(ValueError, match="read-only"):
        IdIndex([1, 2]).ids[0] = 3


def test_id_index_does_not_freeze_callers_array():
    ids = np.array([3, 1, 2])
    IdIndex(ids)
    assert ids.flags.writeable
    ids[0] = 4  # must still be possible


def test_id_index_does_not_alias_a_series():
    series = pd.Series([3, 1, 2])
    index = IdIndex(series)
    series.iloc[0] = 10
    assert index.ids.tolist() == [3, 1, 2]
    assert 3 in index


def test_id_index_get_indexer_uint64_beyond_int64_is_unknown():
    index = IdIndex([-1, 0, 1])
    assert index.get_indexer(np.array([2**64 - 1], dtype=np.uint64)).tolist() == [-1]


# ------------------------------------------------------------------------------ duplicates


@st.composite
def frames_with_repeats(draw):
    n = draw(st.integers(1, 14))
    ints = st.integers(0, 2)
    return pd.DataFrame({
        "user": draw(st.lists(ints, min_size=n, max_size=n)),
        "item": draw(st.lists(st.sampled_from(["x", "y", "zz"]), min_size=n, max_size=n)),
        "rating": [r / 4 for r in draw(st.lists(st.integers(-8, 40), min_size=n, max_size=n))],
        "weight": [w / 4 for w in draw(st.lists(st.integers(1, 40), min_size=n, max_size=n))],
        "timestamp": draw(st.lists(st.integers(-10**9, 10**9), min_size=n, max_size=n)),
    })


def duplicate_reference(df: pd.DataFrame, policy: str, column: str) -> pd.DataFrame:
    """Pandas groupby reference: one row per pair at its last position."""
    last = df[~df.duplicated(["user", "item"], keep="last")].copy()
    if policy == "last":
        return last
    groups = df.groupby(["user", "item"])
    last[column] = groups[column].transform(policy).loc[last.index]
    last["timestamp"] = groups["timestamp"].transform("max").loc[last.index]
    return last


@FAST
@given(frames_with_repeats(), st.sampled_from(["last", "sum", "mean"]), st.booleans())
def test_duplicate_policies_match_pandas_groupby(df, policy, implicit):
    column = "weight" if implicit else "rating"
    data = Interactions.from_pandas(df, rating=None if implicit else "rating", weight="weight",
                                    timestamp="timestamp", duplicates=policy)
    ref = duplicate_reference(df, policy, column)
    assert pairs(data) == list(zip(ref["user"], ref["item"], strict=True))
    assert data.timestamps.tolist() == ref["timestamp"].tolist()
    np.testing.assert_allclose(data.values, ref[column].to_numpy(), rtol=1e-6)
    if policy == "last":
        np.testing.assert_array_equal(data.weights, ref["weight"].to_numpy(np.float32))
        if not implicit:
            np.testing.assert_array_equal(data.ratings, ref["rating"].to_numpy(np.float32))
    has_repeats = df.duplicated(["user", "item"]).any()
    if not has_repeats:
        pd.testing.assert_frame_equal(
            data.to_pandas(),
            Interactions.from_pandas(df, rating=None if implicit else "rating", weight="weight",
                                     timestamp="timestamp").to_pandas())
    dense = dense_by_hand(ref["user"], ref["item"], ref[column], data.user_ids, data.item_ids)
    np.testing.assert_allclose(data.to_scipy().toarray(), dense, rtol=1e-6)


def test_implicit_sum_without_weights_counts_interactions():
    data = Interactions.from_arrays([1, 2, 1, 1], ["a", "a", "a", "b"], duplicates="sum")
    assert pairs(data) == [(2, "a"), (1, "a"), (1, "b")]
    assert data.weights.tolist() == [1.0, 2.0, 1.0]
    mean = Interactions.from_arrays([1, 2, 1, 1], ["a", "a", "a", "b"], duplicates="mean")
    assert mean.weights.tolist() == [1.0, 1.0, 1.0]


def test_duplicates_error_names_positions():
    with pytest.raises(DataError, match=r"repeated \(user, item\) pairs: 2 row\(s\)") as err:
        Interactions.from_arrays([1, 2, 1, 2, 3], [1, 1, 1, 1, 1], [1, 2, 3, 4, 5])
    assert "(positions 2, 3)" in str(err.value)
    assert "(the first: user 1, item 1)" in str(err.value)
    assert "duplicates=" in str(err.value)


@pytest.mark.parametrize("policy", ["first", "max", None, "SUM"])
def test_unknown_duplicate_policy(policy):
    with pytest.raises(ParameterError, match="duplicates must be one of"):
        Interactions.from_arrays([1], [1], duplicates=policy)


# ------------------------------------------------------------------------------ immutability


@pytest.mark.parametrize("attribute", ["ratings", "weights", "timestamps", "user_codes",
                                       "item_codes", "user_ids", "item_ids", "values"])
def test_arrays_are_read_only(attribute):
    array = getattr(explicit_data(), attribute)
    with pytest.raises(ValueError, match="read-only"):
        array[0] = array[1]


def test_default_weights_are_read_only():
    data = Interactions.from_arrays([1, 2], [1, 2])
    with pytest.raises(ValueError, match="read-only"):
        data.weights[0] = 5
    assert data.weights.tolist() == [1.0, 1.0]


@pytest.mark.parametrize("attribute", ["n_users", "n_items", "nnz", "ratings", "weights",
                                       "rating_scale", "user_index", "is_implicit"])
def test_properties_cannot_be_reassigned(attribute):
    data = explicit_data()
    with pytest.raises(AttributeError):
        setattr(data, attribute, 3)
    with pytest.raises(AttributeError):
        data.new_attribute = 1


def test_inputs_are_copied_not_frozen():
    users = np.array([3, 1, 2])
    items = np.array([1, 1, 2])
    ratings = np.array([1.0, 2.0, 3.0])
    stamps = np.array([10, 20, 30])
    data = Interactions.from_arrays(users, items, ratings, timestamps=stamps)
    for array in (users, items, ratings, stamps):
        assert array.flags.writeable
    users[0], ratings[0], stamps[0] = 9, 9.0, 9
    assert data.users.tolist() == [3, 1, 2]
    assert data.ratings.tolist() == [1.0, 2.0, 3.0]
    assert data.timestamps.tolist() == [10, 20, 30]


# ------------------------------------------------------------------------------ subset / take


def test_subset_by_users_items_and_both():
    df = explicit_frame()
    data = explicit_data()
    by_user = data.subset(users=[10, 99, "30"])  # unknown ignored, "30" coerced
    keep = df["user"].isin([10, 30])
    assert_same_interactions(by_user, df[keep])
    assert by_user.user_ids.tolist() == [10, 30]
    assert by_user.item_ids.tolist() == sorted(set(df.loc[keep, "item"]))
    assert by_user.timestamps.tolist() == df.loc[keep, "timestamp"].tolist()
    assert by_user.weights.tolist() == df.loc[keep, "weight"].tolist()
    assert by_user.rating_scale == data.rating_scale
    by_item = data.subset(items="c")
    assert pairs(by_item) == [(20, "c"), (10, "c")]
    assert by_item.item_ids.tolist() == ["c"]
    both = data.subset(users=[20], items=["b", "c"])
    assert pairs(both) == [(20, "c"), (20, "b")]
    assert both.shape == (1, 2)
    with pytest.raises(DataError, match="selects no interactions"):
        data.subset(users=[404])
    with pytest.raises(DataError, match="selects no interactions"):
        data.subset(users=[-5], items=["a"])


def test_take_compact_and_not():
    data = explicit_data()
    part = data.take([5, 0, 2])
    assert pairs(part) == [(-5, "b"), (30, "b"), (20, "c")]
    assert part.user_ids.tolist() == [-5, 20, 30]
    assert part.item_ids.tolist() == ["b", "c"]
    assert part.ratings.tolist() == [0.5, 4.5, 1.0]
    assert part.timestamps.tolist() == [0, 100, 75]
    assert part.rating_scale == data.rating_scale
    wide = data.take([5, 0, 2], compact=False)
    assert pairs(wide) == pairs(part)
    assert wide.user_index == data.user_index and wide.item_index == data.item_index
    assert wide.shape == data.shape
    np.testing.assert_array_equal(wide.to_scipy().toarray()[[0, 2, 3]][:, [1, 2]],
                                  part.to_scipy().toarray())
    with pytest.raises(ParameterError, match="positions must lie in"):
        data.take([8])
    with pytest.raises(ParameterError, match="positions must lie in"):
        data.take([-1])
    with pytest.raises(DataError, match="no interactions selected"):
        data.take([])


def test_take_repeated_positions_refused():
    data = Interactions.from_arrays([1, 2], [1, 2], [1.0, 2.0])
    with pytest.raises((ParameterError, DataError)):
        data.take([0, 0])


def test_take_boolean_mask_is_not_read_as_positions():
    data = Interactions.from_arrays([1, 2], [1, 2], [1.0, 2.0])
    try:
        part = data.take(np.array([True, False]))
    except ParameterError:
        return
    assert pairs(part) == [(1, 1)]


def test_with_vocabulary_of_maps_same_ids_to_same_indices():
    train = Interactions.from_arrays([5, 1, 3], ["x", "b", "c"], [1, 2, 3])
    test = Interactions.from_arrays([3, 9, 0, 5], ["c", "a", "x", "d"], [4, 5, 1, 2])
    out = test.with_vocabulary_of(train)
    assert out.user_ids.tolist() == [1, 3, 5, 0, 9]
    assert out.item_ids.tolist() == ["b", "c", "x", "a", "d"]
    assert pairs(out) == pairs(test)
    assert out.ratings.tolist() == test.ratings.tolist()
    for raw in (1, 3, 5):
        assert out.user_index.get_indexer([raw])[0] == train.user_index.get_indexer([raw])[0]
    assert out.user_codes.tolist() == [1, 4, 3, 2]
    assert out.item_codes.tolist() == [1, 3, 2, 4]
    dense = dense_by_hand(test.users, test.items, test.ratings, out.user_ids, out.item_ids)
    np.testing.assert_array_equal(out.to_scipy().toarray(), dense)
    # Nothing new: exactly train's vocabularies.
    same = train.take([0, 1]).with_vocabulary_of(train)
    assert same.user_index == train.user_index and same.item_index == train.item_index
    with pytest.raises(DataError, match="cannot extend"):
        Interactions.from_arrays(["u"], [1]).with_vocabulary_of(train)


def test_with_vocabulary_of_longer_string_ids():
    train = Interactions.from_arrays([1], ["a"])
    test = Interactions.from_arrays([1], ["zz"])
    out = test.with_vocabulary_of(train)
    assert out.item_ids.tolist() == ["a", "zz"]


# ------------------------------------------------------------------------------ to_implicit


def test_to_implicit_threshold_keeps_ratings_at_or_above():
    df = explicit_frame()
    data = explicit_data()
    implicit = data.to_implicit(threshold=3.5)
    keep = df["rating"] >= 3.5
    assert implicit.is_implicit and implicit.ratings is None
    assert implicit.rating_scale is None
    assert pairs(implicit) == list(zip(df.loc[keep, "user"], df.loc[keep, "item"], strict=True))
    assert implicit.weights.tolist() == df.loc[keep, "weight"].tolist()
    assert implicit.timestamps.tolist() == df.loc[keep, "timestamp"].tolist()
    assert implicit.user_index == data.user_index and implicit.item_index == data.item_index
    everything = data.to_implicit()
    # Interactions with sample weight 0 are dropped: implicit weights must be > 0.
    assert everything.nnz == int((data.weights > 0).sum()) and everything.is_implicit
    plain = Interactions.from_arrays([1, 2], [1, 1], [5.0, 1.0]).to_implicit(5)
    assert pairs(plain) == [(1, 1)] and plain.weights.tolist() == [1.0]
    assert not plain.has_weights
    already = Interactions.from_arrays([1, 2], [1, 1], weights=[2, 3])
    assert already.to_implicit().weights.tolist() == [2.0, 3.0]


@pytest.mark.parametrize("threshold", [float("nan"), float("inf"), -np.inf])
def test_to_implicit_non_finite_threshold(threshold):
    with pytest.raises(ParameterError, match="finite"):
        explicit_data().to_implicit(threshold)


def test_to_implicit_non_numeric_threshold():
    with pytest.raises(ParameterError):
        explicit_data().to_implicit("4")


def test_to_implicit_keeping_nothing_raises():
    with pytest.raises(DataError):
        explicit_data().to_implicit(threshold=100)


def test_to_implicit_never_produces_zero_confidence():
    data = explicit_data()  # has a weight of 0.0 at position 1
    try:
        implicit = data.to_implicit()
    except DataError:
        return
    assert (implicit.weights > 0).all()


# ------------------------------------------------------------------------------ scale, density, repr


def test_rating_scale_default_and_explicit():
    assert explicit_data().rating_scale == (0.5, 5.0)
    given_scale = Interactions.from_arrays([1, 2], [1, 1], [2, 3], rating_scale=(1, 5))
    assert given_scale.rating_scale == (1.0, 5.0)
    assert all(type(x) is float for x in given_scale.rating_scale)
    assert Interactions.from_arrays([1], [1], [3]).rating_scale == (3.0, 3.0)


@pytest.mark.parametrize("scale", [(5, 1), (2, 2), (0, np.inf), (np.nan, 1), (1, 2, 3), 5,
                                   ("a", "b")])
def test_bad_rating_scale(scale):
    with pytest.raises(ParameterError, match="rating_scale"):
        Interactions.from_arrays([1], [1], [3], rating_scale=scale)


def test_rating_scale_on_implicit_data_is_a_parameter_error():
    with pytest.raises(ParameterError, match="implicit"):
        Interactions.from_arrays([1], [1], rating_scale=(1, 5))
    with pytest.raises(ParameterError, match="implicit"):
        Interactions.from_scipy(np.eye(2), implicit=True, rating_scale=(0, 1))


def test_density_and_repr():
    data = explicit_data()
    assert data.density == pytest.approx(8 / 12)
    text = repr(data)
    assert "4 users" in text and "3 items" in text and "8 explicit ratings" in text
    assert "in [0.5, 5]" in text and "66.67%" in text
    assert "timestamps" in text and "weights" in text
    big = Interactions.from_arrays(np.arange(1500), np.arange(1500) % 7)
    text = repr(big)
    assert "1,500 users" in text and "7 items" in text and "1,500 implicit interactions" in text
    assert big.density == pytest.approx(1500 / (1500 * 7))


def test_item_titles_and_features():
    features = pd.DataFrame({"title": ["Alpha", None, "Zed"], "year": [1, 2, 3]},
                            index=["a", "b", "z"])
    users = pd.DataFrame({"age": [30]}, index=[10])
    data = Interactions.from_arrays([10, 20], ["b", "a"], [1, 2], item_features=features,
                                    user_features=users)
    assert data.item_titles().tolist() == ["Alpha", "b"]
    assert data.item_features.index.name == "item"
    assert data.user_features.index.name == "user"
    assert "item features (2)" in repr(data) and "user features (1)" in repr(data)
    assert Interactions.from_arrays([1], [1]).item_titles() is None
    no_title = Interactions.from_arrays([1], [1], item_features=pd.DataFrame({"x": [1]}, index=[1]))
    assert no_title.item_titles() is None


@pytest.mark.parametrize(
    ("features", "phrase"),
    [
        (pd.Series([1.0]), "must be a pandas DataFrame"),
        (pd.DataFrame({"t": [1, 2]}, index=[1, 1]), "repeated ids"),
        (pd.DataFrame({"t": [1, 2]}, index=pd.Index([1, "a"], dtype=object)), "mix numbers"),
    ],
)
def test_bad_features(features, phrase):
    with pytest.raises(DataError, match=phrase):
        Interactions.from_arrays([1], [1], item_features=features)


# ------------------------------------------------------------------------------ bad values


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_ratings_name_positions(bad):
    ratings = [1.0, 2.0, bad, 3.0, bad]
    with pytest.raises(DataError, match="NaN or infinite ratings") as err:
        Interactions.from_arrays([1, 2, 3, 4, 5], [1, 1, 1, 1, 1], ratings)
    assert "2 row(s) (positions 2, 4)" in str(err.value)


@FAST
@given(hnp.arrays(np.float64, st.integers(1, 12),
                  elements=st.floats(-1e6, 1e6) | st.sampled_from([np.nan, np.inf, -np.inf])))
def test_non_finite_ratings_property(ratings):
    n = len(ratings)
    bad = np.flatnonzero(~np.isfinite(ratings))
    if len(bad) == 0:
        data = Interactions.from_arrays(np.arange(n), np.zeros(n, dtype=int), ratings)
        np.testing.assert_array_equal(data.ratings, ratings.astype(np.float32))
        return
    with pytest.raises(DataError, match="NaN or infinite ratings") as err:
        Interactions.from_arrays(np.arange(n), np.zeros(n, dtype=int), ratings)
    assert f"{len(bad)} row(s) (positions {bad[0]}" in str(err.value)


def test_non_finite_weights_and_timestamps():
    with pytest.raises(DataError, match="NaN or infinite weights"):
        Interactions.from_arrays([1, 2], [1, 1], weights=[1.0, np.nan])
    with pytest.raises(DataError, match="infinite timestamps"):
        Interactions.from_arrays([1, 2], [1, 1], timestamps=[1.0, np.inf])
    with pytest.raises(DataError, match="missing timestamps"):
        Interactions.from_arrays([1, 2], [1, 1], timestamps=[1.0, np.nan])


def test_implicit_weights_must_be_positive():
    with pytest.raises(DataError, match=r"must be > 0 for implicit data.*positions 0, 2"):
        Interactions.from_arrays([1, 2, 3], [1, 1, 1], weights=[0, 1, -2])
    with pytest.raises(DataError, match="> 0"):
        Interactions.from_pandas(pd.DataFrame({"user": [1], "item": [1], "w": [0.0]}), weight="w")


def test_explicit_weights_are_sample_weights():
    data = Interactions.from_arrays([1, 2], [1, 1], [3, 4], weights=[0, 2])
    assert data.weights.tolist() == [0.0, 2.0]
    with pytest.raises(DataError, match=r"must be ≥ 0.*positions 1"):
        Interactions.from_arrays([1, 2], [1, 1], [3, 4], weights=[0, -1])


@pytest.mark.parametrize(
    ("kwargs", "phrase"),
    [
        ({"ratings": [1.0]}, r"ratings must have shape \(2,\)"),
        ({"weights": [1.0, 2.0, 3.0]}, r"weights must have shape \(2,\)"),
        ({"timestamps": [1]}, r"timestamps must have shape \(2,\)"),
        ({"ratings": ["a", "b"]}, "must be numbers"),
        ({"timestamps": ["2020", "2021"]}, "numbers .* or datetimes"),
    ],
)
def test_value_shapes_and_types(kwargs, phrase):
    with pytest.raises(DataError, match=phrase):
        Interactions.from_arrays([1, 2], [1, 1], **kwargs)


def test_id_length_mismatch_and_dimensions():
    with pytest.raises(DataError, match="got 2 user ids but 3 item ids"):
        Interactions.from_arrays([1, 2], [1, 1, 3])
    with pytest.raises(DataError, match="one-dimensional"):
        Interactions.from_arrays([[1, 2]], [[1, 1]])
    with pytest.raises(DataError, match="one-dimensional"):
        Interactions.from_arrays(5, 1)


@pytest.mark.parametrize("frame", [
    pd.DataFrame({"user": [], "item": []}),
    pd.DataFrame({"user": pd.Series([], dtype=object), "item": pd.Series([], dtype=object),
                  "rating": pd.Series([], dtype=float)}),
])
def test_empty_frames(frame):
    rating = "rating" if "rating" in frame.columns else None
    with pytest.raises(DataError, match="no interactions"):
        Interactions.from_pandas(frame, rating=rating)


def test_empty_arrays():
    with pytest.raises(DataError, match="no interactions"):
        Interactions.from_arrays([], [])


def test_missing_columns_list_available_columns():
    df = pd.DataFrame({"uid": [1], "item": [2], "stars": [3.0]})
    with pytest.raises(DataError, match="missing column") as err:
        Interactions.from_pandas(df, rating="rating", timestamp="ts")
    message = str(err.value)
    assert "user='user'" in message and "rating='rating'" in message and "timestamp='ts'" in message
    assert "item=" not in message
    assert "['uid', 'item', 'stars']" in message
    with pytest.raises(DataError, match="needs a pandas DataFrame"):
        Interactions.from_pandas({"user": [1], "item": [2]})


@pytest.mark.parametrize(
    ("ids", "phrase"),
    [
        (pd.Series([1, "a", 2], dtype=object), "mix numbers and strings"),
        (pd.Series(["a", None]), "missing user ids"),
        (pd.Series([1.0, np.nan]), "missing user ids"),
        (pd.Series(["a", np.nan], dtype=object), "missing user ids"),
        (pd.array([1, None], dtype="Int64"), "missing (or infinite )?user ids"),
        (pd.Series([True, False]), "booleans"),
        (np.array([True, False]), "booleans"),
        (pd.Series([True, 2], dtype=object), "integers or strings"),
        (pd.Series([1.5, 2.0]), "non-integral"),
        (np.array([1.0, 2.25]), "non-integral"),
        (np.array([1.0, np.inf]), "missing or infinite user ids"),
        (np.array([np.nan, 1.0]), r"missing or infinite user ids in 1 row\(s\) \(positions 0\)"),
        (np.array([2**63, 1], dtype=np.uint64), "int64 range"),
        (np.array([2.0**63, 1.0]), "int64 range"),
        (np.array([2**64, 1], dtype=object), "int64 range"),
        (pd.to_datetime(pd.Series(["2020-01-01", "2020-01-02"])), "integers or strings"),
    ],
)
def test_bad_user_ids(ids, phrase):
    with pytest.raises(DataError, match=phrase):
        Interactions.from_arrays(ids, [1, 2])


def test_bad_ids_through_from_pandas_name_the_axis_and_positions():
    df = pd.DataFrame({"user": [1, 2, 3], "item": ["a", None, None]})
    with pytest.raises(DataError, match=r"missing item ids in 2 row\(s\) \(positions 1, 2\)"):
        Interactions.from_pandas(df)
    mixed = pd.DataFrame({"user": [1, "x", 3], "item": [1, 2, 3]})
    with pytest.raises(DataError, match=r"user ids mix numbers and strings.*astype\(str\)"):
        Interactions.from_pandas(mixed)


def test_pandas_id_dtypes_accepted():
    frames = {
        "Int64": pd.array([3, 1], dtype="Int64"),
        "category": pd.Categorical(["b", "a"]),
        "float": [3.0, 1.0],
        "int32": np.array([3, 1], dtype=np.int32),
        "object ints": pd.Series([3, 1], dtype=object),
        "uint64": np.array([3, 1], dtype=np.uint64),
    }
    for name, users in frames.items():
        data = Interactions.from_pandas(pd.DataFrame({"user": users, "item": [1, 2]}))
        assert data.user_codes.tolist() == [1, 0], name
        assert data.user_ids.dtype.kind in "iO", name


@pytest.mark.parametrize(
    "users",
    [
        pytest.param([1, "a"], id="int-and-str"),
        pytest.param(["a", 1.5], id="str-and-float"),
        pytest.param(["a", True], id="str-and-bool"),
        pytest.param([True, 2], id="bool-and-int"),
        pytest.param(["a", float("nan")], id="str-and-nan"),
    ],
)
def test_mixed_id_lists_refused(users):
    with pytest.raises(DataError):
        Interactions.from_arrays(users, [1, 2])


def test_ids_with_nul_characters_are_refused():
    # numpy's fixed-width strings would drop the trailing NUL and merge "a" and "a\x00".
    with pytest.raises(DataError, match="NUL"):
        Interactions.from_arrays(["a", "a\x00"], [1, 1])


def test_non_ascii_bytes_ids_raise_data_error():
    with pytest.raises(DataError):
        Interactions.from_arrays(np.array([b"\xff", b"a"]), [1, 2])


def test_bad_id_type_message_names_offending_type():
    with pytest.raises(DataError, match="mix numbers and strings"):
        Interactions.from_arrays(pd.Series(["a", 1.5], dtype=object), [1, 2])
    with pytest.raises(DataError, match="got dict"):
        Interactions.from_arrays(pd.Series(["a", {"x": 1}], dtype=object), [1, 2])


ID_ELEMENTS = st.one_of(
    st.integers(-(2**70), 2**70),
    st.integers(-5, 5),
    st.text(st.characters(blacklist_characters="\x00"), max_size=3),
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1.0, -3.0, 0.5, float("nan")]),
    st.booleans(),
)


@FAST
@given(st.lists(ID_ELEMENTS, min_size=1, max_size=8), st.booleans())
def test_arbitrary_id_lists_build_or_raise_data_error(values, as_series):
    ids = pd.Series(values, dtype=object) if as_series else values
    try:
        data = Interactions.from_arrays(ids, list(range(len(values))))
    except DataError as err:
        assert str(err)
        return
    assert data.nnz == len(values)
    assert data.users.tolist() == [data.user_ids[c] for c in data.user_codes]


def _valid_object_ids(values) -> bool:
    """All strings, or all numbers that are integral (ints, or floats like 2.0) in int64."""
    strs = [type(v) is str for v in values]
    if all(strs):
        return True
    numbers = [type(v) is int or (type(v) is float and np.isfinite(v) and v == int(v))
               for v in values]
    return all(numbers) and all(-(2**63) <= v < 2**63 for v in values)


@FAST
@given(st.lists(ID_ELEMENTS, min_size=1, max_size=8))
def test_object_ids_are_accepted_exactly_when_all_ints_or_all_strings(values):
    ids = pd.Series(values, dtype=object)
    items = list(range(len(values)))
    if _valid_object_ids(values):
        data = Interactions.from_arrays(ids, items)
        assert data.users.tolist() == values
        assert data.user_ids.tolist() == sorted(set(values))
    else:
        with pytest.raises(DataError):
            Interactions.from_arrays(ids, items)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_ratings_overflowing_float32_refused():
    with pytest.raises(DataError):
        Interactions.from_arrays([1, 2], [1, 1], [1e39, 1.0])


def test_tiny_implicit_weights_do_not_become_zero():
    try:
        data = Interactions.from_arrays([1, 2], [1, 1], weights=[1e-50, 1.0])
    except DataError:
        return
    assert (data.weights > 0).all()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_timestamps_beyond_int64_refused():
    with pytest.raises(DataError):
        Interactions.from_arrays([1, 2], [1, 1], timestamps=[1e30, 1.0])


# ------------------------------------------------------------------------------ large ids


def test_large_and_negative_ids():
    big, small = np.iinfo(np.int64).max, np.iinfo(np.int64).min
    data = Interactions.from_arrays([big, small, -1, 0], [big, -7, big, -7], [1, 2, 3, 4])
    assert data.user_ids.tolist() == [small, -1, 0, big]
    assert data.item_ids.tolist() == [-7, big]
    assert data.users.tolist() == [big, small, -1, 0]
    assert data.items.tolist() == [big, -7, big, -7]
    assert data.user_index.get_indexer([big, small]).tolist() == [3, 0]
    np.testing.assert_array_equal(data.to_scipy().toarray(), [[2, 0], [0, 3], [4, 0], [0, 1]])
    assert data.to_pandas()["user"].tolist() == [big, small, -1, 0]
    unsigned = Interactions.from_arrays(np.array([big, 1], dtype=np.uint64), [1, 1])
    assert unsigned.user_ids.tolist() == [1, big]
    for too_big in (np.array([2**63, 1], dtype=np.uint64), [2**64 - 1, 1], [2**63, -1]):
        with pytest.raises(DataError, match="int64 range"):
            Interactions.from_arrays(too_big, [1, 2])


# ------------------------------------------------------------------------------ timestamps


def test_datetime_timestamps_convert_to_unix_seconds():
    naive = pd.Series(pd.to_datetime(["2020-01-01 00:00:00", "1970-01-01 00:00:10"]))
    data = Interactions.from_arrays([1, 2], [1, 1], timestamps=naive)
    assert data.timestamps.tolist() == [1577836800, 10]
    assert data.timestamps.dtype == np.int64
    aware = pd.Series(pd.to_datetime(["2020-01-01 01:00", "2020-07-01 02:00"])).dt.tz_localize(
        "Europe/Paris")
    data = Interactions.from_arrays([1, 2], [1, 1], timestamps=aware)
    assert data.timestamps.tolist() == [1577836800, 1593561600]  # CET +1, CEST +2
    df = pd.DataFrame({"user": [1, 2], "item": [1, 1],
                       "t": pd.to_datetime([0, 86400], unit="s", utc=True).tz_convert(
                           "America/New_York")})
    assert Interactions.from_pandas(df, timestamp="t").timestamps.tolist() == [0, 86400]
    days = np.array(["2020-01-01", "2020-01-02"], dtype="datetime64[D]")
    assert Interactions.from_arrays([1, 2], [1, 1], timestamps=days).timestamps.tolist() == [
        1577836800, 1577923200]
    listed = [pd.Timestamp("2020-01-01", tz="UTC"), pd.Timestamp("2020-01-02", tz="UTC")]
    assert Interactions.from_arrays([1, 2], [1, 1], timestamps=listed).timestamps.tolist() == [
        1577836800, 1577923200]


def test_numeric_timestamps_and_missing_ones():
    data = Interactions.from_arrays([1, 2, 3], [1, 1, 1], timestamps=[10.4, 20.6, -3.0])
    assert data.timestamps.tolist() == [10, 21, -3]
    with pytest.raises(DataError, match=r"missing timestamps in 1 row\(s\) \(positions 0\)"):
        Interactions.from_arrays([1, 2], [1, 1], timestamps=pd.Series([pd.NaT, pd.Timestamp(0)]))


def test_timestamps_aggregate_to_max_under_sum():
    stamps = pd.Series(pd.to_datetime(["2020-01-02", "2020-01-01", "2020-01-03"]))
    data = Interactions.from_arrays([1, 1, 2], [1, 1, 1], [1, 2, 3], timestamps=stamps,
                                    duplicates="mean")
    assert data.timestamps.tolist() == [1577923200, 1578009600]
    assert data.ratings.tolist() == [1.5, 3.0]


# ------------------------------------------------------------------------------ exceptions


def test_exception_hierarchy():
    assert issubclass(DataError, ValueError) and issubclass(DataError, MatfactError)
    assert issubclass(ParameterError, ValueError) and issubclass(ParameterError, MatfactError)
    assert not issubclass(DataError, ParameterError)


def test_ids_that_are_not_valid_unicode_are_a_data_error():
    # A lone surrogate cannot be stored as text (found by hypothesis).
    with pytest.raises(DataError, match="not valid Unicode"):
        Interactions.from_arrays(["\ud800", "a"], [1, 2], [1.0, 2.0])


def test_duplicates_in_a_file_name_file_lines(tmp_path):
    # Issue 20: file lines (1-based, header and blank lines counted), not 0-based positions.
    path = tmp_path / "r.csv"
    path.write_text("user,item,rating\n1,a,4\n1,b,5\n2,a,3\n\n2,a,1\n1,b,2\n")
    with pytest.raises(DataError, match=r"2 row\(s\) \(lines 6, 7 of .*r\.csv\) repeat an "
                                        r"earlier row \(the first: user 2, item 'a'\)"):
        Interactions.from_csv(path, rating="rating")

"""scikit-learn conventions of the estimators (and scikit-learn's own checks), the inputs imbalanced-learn
accepts, its error types, neighbour objects as ``k_neighbors``, imblearn pipelines, the shared parameter rules."""

import subprocess
import sys

import numpy as np
import pytest
from scipy import sparse
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import NearestNeighbors
from sklearn.utils.estimator_checks import parametrize_with_checks

from selectkit.errors import ConfigError

from selectkit_plugins.smote import ADASYN, SMOTE, BorderlineSMOTE, RandomOverSampler, RandomUnderSampler

ALL = [SMOTE, BorderlineSMOTE, ADASYN, RandomOverSampler, RandomUnderSampler]


@pytest.mark.parametrize("cls", ALL)
def test_constructor_stores_params_and_clone_round_trips(cls):
    est = cls(sampling_strategy={1: 80}, random_state=3)
    params = est.get_params()
    assert params["sampling_strategy"] == {1: 80} and params["random_state"] == 3
    twin = clone(est)
    assert twin is not est and twin.get_params() == params
    assert est.set_params(random_state=4) is est and est.random_state == 4
    with pytest.raises(TypeError):
        cls({1: 80})  # keyword-only
    bad = cls(sampling_strategy="bogus")  # stored, not checked, until fit
    assert bad.sampling_strategy == "bogus"


@pytest.mark.parametrize("cls", ALL)
def test_fit_checks_and_fit_resample_sets_attributes(cls, data3):
    X, y = data3
    est = cls(random_state=0)
    assert est.fit(X, y) is est
    assert isinstance(est.sampling_strategy_, dict) and est.n_features_in_ == X.shape[1]
    assert not hasattr(est, "synthetic_parents_") and not hasattr(est, "sample_indices_"), "fit only checks, as in imblearn"
    with pytest.raises(ValueError):
        cls(random_state=0).fit(X, y[:-1])
    X_res, y_res = est.fit_resample(X, y)
    if cls in (RandomOverSampler, RandomUnderSampler):
        assert np.array_equal(X_res, X[est.sample_indices_]) and np.array_equal(y_res, y[est.sample_indices_])
    else:
        assert not hasattr(est, "sample_indices_")
    if cls is not RandomUnderSampler:
        assert est.synthetic_parents_.dtype == np.int64 and est.synthetic_parents_.shape[1] == 2
        assert est.synthetic_lam_.dtype == np.float32


def test_nearest_neighbors_object_as_k_neighbors(data3):
    X, y = data3
    nn = NearestNeighbors(n_neighbors=4)
    est = SMOTE(k_neighbors=nn, random_state=0)
    est.fit_resample(X, y)
    assert not hasattr(nn, "n_samples_fit_"), "the caller's object is never fitted"
    for c in (1, 2):
        rows = np.flatnonzero(y == c)
        d = ((X[rows, None] - X[None, rows]) ** 2).sum(-1)
        np.fill_diagonal(d, np.inf)
        ref = dict(zip(rows, rows[np.argsort(d, axis=1)[:, :3]]))
        for p0, p1 in est.synthetic_parents_[y[est.synthetic_parents_[:, 0]] == c]:
            assert p1 in ref[p0]


def test_neighbor_index_as_k_neighbors(data3):
    from selectkit.neighbors import NeighborIndex

    X, y = data3
    a = SMOTE(k_neighbors=NeighborIndex(n_neighbors=4), random_state=0)
    b = SMOTE(k_neighbors=3, random_state=0)
    Xa, _ = a.fit_resample(X, y)
    Xb, _ = b.fit_resample(X, y)
    assert np.array_equal(Xa, Xb), "an exact NeighborIndex finds the same neighbours as the default search"
    assert clone(a).k_neighbors is not a.k_neighbors


def test_in_imblearn_pipeline_with_logistic_regression(data3):
    X, y = data3
    Pipeline = pytest.importorskip("imblearn.pipeline").Pipeline
    pipe = Pipeline([("smote", SMOTE(k_neighbors=3, random_state=0)), ("clf", LogisticRegression(max_iter=500))])
    pipe.fit(X, y)
    X_res, y_res = SMOTE(k_neighbors=3, random_state=0).fit_resample(X, y)
    direct = LogisticRegression(max_iter=500).fit(X_res, y_res)
    assert np.allclose(pipe.named_steps["clf"].coef_, direct.coef_)
    assert pipe.predict(X).shape == y.shape, "resampling happens in fit only"
    scores = cross_val_score(Pipeline([("under", RandomUnderSampler(random_state=0)), ("clf", LogisticRegression())]), X, y, cv=3)
    assert scores.shape == (3,) and np.all(scores > 0)
    tuned = clone(pipe).set_params(smote__k_neighbors=5)
    assert tuned.named_steps["smote"].k_neighbors == 5


def test_failed_fit_leaves_no_attributes(data3):
    X, y = data3
    est = SMOTE(sampling_strategy={9: 10})
    with pytest.raises(ValueError):
        est.fit_resample(X, y)
    assert not hasattr(est, "sampling_strategy_") and not hasattr(est, "synthetic_parents_")


# ---------------------------------------------------------------------------------------------------
# scikit-learn's estimator checks (imbalanced-learn runs them over its samplers too)


@parametrize_with_checks([cls(random_state=42) for cls in ALL])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


# ---------------------------------------------------------------------------------------------------
# inputs imbalanced-learn accepts, answered in kind


@pytest.mark.parametrize("cls", ALL)
def test_lists_and_column_vector_y(cls, data3):
    X, y = data3
    X_ref, y_ref = cls(random_state=0).fit_resample(X.astype(np.float64), y)  # a list of floats reads as float64
    X_list, y_list = cls(random_state=0).fit_resample(X.tolist(), y.tolist())
    assert isinstance(X_list, list) and isinstance(y_list, list)
    assert np.allclose(np.asarray(X_list), X_ref) and np.array_equal(np.asarray(y_list), y_ref)
    X_col, y_col = cls(random_state=0).fit_resample(X.astype(np.float64), y[:, None])
    assert y_col.shape == y_ref.shape and np.array_equal(y_col, y_ref) and np.array_equal(X_col, X_ref)


@pytest.mark.parametrize("cls", ALL)
def test_string_labels_and_one_hot_y(cls, data3):
    X, y = data3
    X_ref, y_ref = cls(random_state=0).fit_resample(X, y)
    words = np.array(["ant", "bee", "cat"])
    X_w, y_w = cls(random_state=0).fit_resample(X, words[y])
    assert np.array_equal(X_w, X_ref) and np.array_equal(y_w, words[y_ref])
    one_hot = np.eye(3, dtype=np.int8)[y]
    est = cls(random_state=0)
    X_h, y_h = est.fit_resample(X, one_hot)
    assert np.array_equal(X_h, X_ref)
    assert y_h.dtype == np.int8 and y_h.shape == (y_ref.size, 3) and np.array_equal(y_h.argmax(axis=1), y_ref)
    assert (y_h.sum(axis=1) == 1).all()
    assert est.sampling_strategy_ == cls(random_state=0).fit(X, y).sampling_strategy_
    not_one_hot = one_hot.copy()
    not_one_hot[0] = 1
    with pytest.raises(ConfigError, match="multilabel"):
        cls().fit_resample(X, not_one_hot)


@pytest.mark.parametrize("cls", [SMOTE, BorderlineSMOTE, ADASYN])
@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
def test_sparse_X_is_densified_and_answered_sparse(cls, fmt, data3):
    X, y = data3
    X = X.copy()
    X[np.abs(X) < 0.8] = 0
    X_ref, y_ref = cls(random_state=0).fit_resample(X, y)
    X_sp, y_sp = cls(random_state=0).fit_resample(sparse.coo_matrix(X).asformat(fmt), y)
    assert sparse.issparse(X_sp) and X_sp.format == ("csr" if fmt == "coo" else fmt)
    assert X_sp.dtype == X.dtype and np.array_equal(X_sp.toarray(), X_ref) and np.array_equal(y_sp, y_ref)
    X_arr, _ = cls(random_state=0).fit_resample(sparse.csr_array(X), y)
    assert isinstance(X_arr, sparse.sparray) and np.array_equal(X_arr.toarray(), X_ref)


def test_sparse_X_above_the_memory_cap_is_refused(data3):
    from selectkit.neighbors import MemoryCapExceeded

    X, y = data3
    est = SMOTE(neighbors={"memory_cap_gb": 1e-6}, random_state=0)
    with pytest.raises(MemoryCapExceeded) as info:
        est.fit_resample(sparse.csr_matrix(X), y)
    msg = str(info.value)
    assert msg.startswith("SMOTE.neighbors.memory_cap_gb=1e-06") and "densifying sparse X" in msg and "\n" not in msg
    assert not hasattr(est, "synthetic_parents_")
    gb = float(msg.split(" is below the ")[1].split(" GB")[0])
    n, d = X.shape
    assert gb * 1e9 >= n * d * X.dtype.itemsize, "the estimate covers at least the dense copy"


@pytest.mark.parametrize("cls", [RandomOverSampler, RandomUnderSampler])
def test_random_samplers_index_sparse_X_without_densifying(cls, data3):
    X, y = data3
    X = X.copy()
    X[np.abs(X) < 1.0] = 0
    Xs = sparse.csc_matrix(X)
    est = cls(random_state=0)
    X_res, y_res = est.fit_resample(Xs, y)
    assert sparse.issparse(X_res) and X_res.format == "csc"
    assert np.array_equal(X_res.toarray(), X[est.sample_indices_]) and np.array_equal(y_res, y[est.sample_indices_])
    assert X_res.nnz == np.count_nonzero(X[est.sample_indices_])


@pytest.mark.parametrize("cls", ALL)
def test_pandas_in_pandas_out(cls, data3):
    pd = pytest.importorskip("pandas")
    X, y = data3
    X_ref, y_ref = cls(random_state=0).fit_resample(X, y)
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    est = cls(random_state=0)
    X_df, y_s = est.fit_resample(frame, pd.Series(y, name="label"))
    assert list(X_df.columns) == list(frame.columns) and y_s.name == "label"
    assert np.array_equal(X_df.to_numpy(), X_ref) and np.array_equal(y_s.to_numpy(), y_ref)
    assert (X_df.index == y_s.index).all()
    assert list(est.feature_names_in_) == list(frame.columns)
    assert list(est.get_feature_names_out()) == list(frame.columns)


def test_random_samplers_keep_mixed_frames_as_they_are(data3):
    pd = pytest.importorskip("pandas")
    _, y = data3
    frame = pd.DataFrame({"n": np.arange(y.size), "s": [f"r{i}" for i in range(y.size)]}, index=np.arange(y.size) + 1000)
    est = RandomOverSampler(random_state=0)
    X_df, _ = est.fit_resample(frame, y)
    assert X_df["n"].dtype == frame["n"].dtype and X_df["s"].tolist() == [f"r{i}" for i in est.sample_indices_]
    assert (X_df.index.to_numpy() == est.sample_indices_ + 1000).all(), "index labels follow their rows"


# ---------------------------------------------------------------------------------------------------
# errors where imbalanced-learn raises them, of the same types


def test_parameter_errors_speak_both_languages(data3):
    from sklearn.utils._param_validation import InvalidParameterError

    X, y = data3
    for est, key in [(SMOTE(k_neighbors=0), "k_neighbors"), (BorderlineSMOTE(kind="borderline-3"), "kind"),
                     (RandomUnderSampler(sampling_strategy="minority"), "sampling_strategy"), (ADASYN(random_state=-1), "random_state")]:
        name = type(est).__name__
        for call in (est.fit, est.fit_resample):
            with pytest.raises(InvalidParameterError) as info:
                call(X, y)
            err = info.value
            assert isinstance(err, ConfigError) and isinstance(err, TypeError) and isinstance(err, ValueError)
            assert str(err).startswith(f"{name}.{key}=") and f"The '{key}' parameter of {name} must be" in str(err)
            assert "\n" not in str(err)


def test_target_errors(data3):
    X, y = data3
    with pytest.raises(ValueError, match="Unknown label type: continuous"):
        SMOTE().fit_resample(X, np.linspace(0, 1, y.size))
    with pytest.raises(ValueError, match="multioutput"):
        SMOTE().fit_resample(X, np.stack([y, y + 3], axis=1))
    with pytest.raises(ValueError, match="requires y to be passed"):
        SMOTE().fit(X, None)
    with pytest.raises(ValueError, match=r"0 feature\(s\)"):
        RandomOverSampler().fit_resample(np.zeros((y.size, 0)), y)
    with pytest.raises(TypeError, match="X must be numeric"):
        SMOTE().fit_resample(np.array([[{}, 1.0]] * y.size, dtype=object), y)


def test_random_state_forms_are_deterministic(data3):
    X, y = data3
    for make in (lambda: 7, lambda: np.random.RandomState(7), lambda: np.random.default_rng(7)):
        a = SMOTE(random_state=make()).fit_resample(X, y)[0]
        b = SMOTE(random_state=make()).fit_resample(X, y)[0]
        assert np.array_equal(a, b)
    assert not np.array_equal(SMOTE(random_state=8).fit_resample(X, y)[0], a)


# ---------------------------------------------------------------------------------------------------
# one vocabulary of parameter rules


PROBES = {
    "sampling_strategy": [0.5, 1.0, 0.0, 1.5, "auto", "minority", "balanced", {0: 3}, {0: -1}, [1], None, len],
    "k_neighbors": [1, 5, 0, -3, "5", None],
    "m_neighbors": [1, 10, 0, "x"],
    "kind": ["borderline-1", "borderline-2", "borderline-3", 1],
    "neighbors": [None, {}, {"nprobe": 4}, "ivf", 3],
}


def test_estimator_constraints_are_the_shared_rules():
    from sklearn.utils._param_validation import make_constraint

    from selectkit_plugins.smote.estimators import sklearn_constraints
    from selectkit_plugins.smote.strategy import RULES

    for key, values in PROBES.items():
        translated = [make_constraint(c) for c in sklearn_constraints(RULES[key])]
        own = [make_constraint(c) for c in BorderlineSMOTE._parameter_constraints[key]]
        for v in values:
            shared = RULES[key].ok(v)
            assert any(c.is_satisfied_by(v) for c in translated) == shared, (key, v)
            if key != "sampling_strategy":  # the estimator adds neighbour objects / NeighborConfig, never removes
                assert any(c.is_satisfied_by(v) for c in own) >= shared, (key, v)


def test_selectors_read_the_same_rules():
    from selectkit_plugins.smote import BorderlineSMOTESelector
    from selectkit_plugins.smote.strategy import RULES

    for key, values in PROBES.items():
        rule = BorderlineSMOTESelector.parameter_constraints[key]
        assert [rule.ok(v) for v in values] == [RULES[key].ok(v) for v in values], key


def test_selectors_import_without_imblearn(data3, tmp_path):
    X, y = data3
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    code = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "imblearn" or name.startswith("imblearn."):
            raise ModuleNotFoundError("imblearn blocked")
sys.meta_path.insert(0, Block())
import numpy as np
from selectkit.selector import Pool, SelectContext
from selectkit_plugins.smote import SMOTE, SMOTESelector
X, y = np.load({str(tmp_path / "X.npy")!r}), np.load({str(tmp_path / "y.npy")!r})
sel = SMOTESelector().select(Pool(np.arange(y.size), labels=y, features=X), SelectContext(seed=0))
X_res, _ = SMOTE(random_state=0).fit_resample(X, y)
assert sel.num_synthetic == X_res.shape[0] - y.size > 0
assert not any(m.split(".")[0] == "imblearn" for m in sys.modules)
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


# ---------------------------------------------------------------------------------------------------
# imbalanced-learn's other parameters: shrinkage, replacement, ADASYN's n_neighbors


def _noise_std(est, X, y):
    X_res, _ = est.fit_resample(X, y)
    extra = est.sample_indices_[X.shape[0]:]
    noise = X_res[X.shape[0]:] - X[extra]
    return {c: noise[y[extra] == c].std(axis=0) for c in np.unique(y[extra])}


def test_shrinkage_is_imblearns_smoothed_bootstrap(data3):
    ImbROS = pytest.importorskip("imblearn.over_sampling").RandomOverSampler

    X, y = data3
    X = X.astype(np.float64)
    ours = _noise_std(RandomOverSampler(shrinkage=2.0, random_state=0), X, y)
    theirs = _noise_std(ImbROS(shrinkage=2.0, random_state=0), X, y)
    n, d = X.shape
    h = (4 / ((d + 2) * n)) ** (1 / (d + 4))
    for c in (1, 2):
        want = 2.0 * h * X[y == c].std(axis=0)
        assert np.allclose(ours[c], want, rtol=0.25) and np.allclose(theirs[c], want, rtol=0.25)
    est = RandomOverSampler(shrinkage=0.0, random_state=0)
    X0, _ = est.fit_resample(X, y)
    assert np.array_equal(X0, X[est.sample_indices_]) and est.shrinkage_ == {1: 0.0, 2: 0.0}
    X32, _ = RandomOverSampler(shrinkage={1: 1.0, 2: 0.5}, random_state=0).fit_resample(X.astype(np.float32), y)
    assert X32.dtype == np.float32


def test_shrinkage_errors_and_sparse(data3):
    X, y = data3
    with pytest.raises(ConfigError, match=r"RandomOverSampler\.shrinkage needs a factor for every class .* missing: 2"):
        RandomOverSampler(shrinkage={1: 1.0}).fit_resample(X, y)
    with pytest.raises(ValueError, match="The 'shrinkage' parameter of RandomOverSampler must be"):
        RandomOverSampler(shrinkage=-1.0).fit_resample(X, y)
    with pytest.raises(ConfigError, match=r"RandomOverSampler\.shrinkage needs numeric"):
        RandomOverSampler(shrinkage=1.0).fit_resample(np.full((y.size, 2), "a", dtype=object), y)
    dense = RandomOverSampler(shrinkage=1.0, random_state=0).fit_resample(X, y)[0]
    Xs, _ = RandomOverSampler(shrinkage=1.0, random_state=0).fit_resample(sparse.csr_matrix(X), y)
    assert sparse.issparse(Xs) and np.allclose(Xs.toarray(), dense, atol=1e-5)


def test_under_sampling_with_replacement(data3):
    ImbRUS = pytest.importorskip("imblearn.under_sampling").RandomUnderSampler

    X, y = data3
    est = RandomUnderSampler(replacement=True, sampling_strategy={0: 200}, random_state=0)
    _, y_res = est.fit_resample(X, y)
    theirs = ImbRUS(replacement=True, sampling_strategy={0: 200}, random_state=0).fit_resample(X, y)[1]
    assert np.array_equal(np.bincount(y_res), np.bincount(theirs))
    kept = est.sample_indices_
    assert np.all(np.diff(kept) >= 0)
    assert np.unique(kept[y[kept] == 0]).size < 200, "drawn with replacement: some rows repeat"
    assert np.array_equal(kept[y[kept] != 0], np.flatnonzero(y != 0)), "classes left alone keep every row"
    with pytest.raises(ValueError, match="The 'replacement' parameter"):
        RandomUnderSampler(replacement="yes").fit_resample(X, y)


def test_adasyn_takes_imblearns_n_neighbors(data3, make_data):
    X, y = data3
    a = ADASYN(k_neighbors=3, random_state=0).fit_resample(X, y)[0]
    b = ADASYN(n_neighbors=3, random_state=0).fit_resample(X, y)[0]
    assert np.array_equal(a, b)
    X, y = make_data(sizes=(100, 4))
    with pytest.raises(ConfigError, match=r"ADASYN\.n_neighbors=5"):
        ADASYN(n_neighbors=5).fit_resample(X, y)

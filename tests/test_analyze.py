import numpy as np
import pytest

from bnll_jax import analyze, cli
from bnll_jax.objectives import parse


@pytest.mark.parametrize("spec", analyze.DEFAULT_OBJECTIVES + ("focal:2",))
def test_autodiff_weight_through_softmax_equals_closed_form(spec):
    objective = parse(spec)
    p = np.linspace(0.02, 0.98, 49)
    np.testing.assert_allclose(
        analyze.autodiff_gradient_weight(objective, p),
        objective.gradient_weight(p),
        rtol=1e-4,
        atol=1e-6,
    )


@pytest.mark.parametrize("a", [0.5, 1.0, 2.0, 10.0])
def test_power_family_weight_peaks_at_a_over_a_plus_one(a):
    shape = analyze.profile(parse(f"power:{a}"))
    assert shape.peak_p == pytest.approx(a / (a + 1), abs=1e-3)


@pytest.mark.parametrize(
    "spec, leaning",
    [
        ("nll", False),
        ("power:0.5", False),
        ("p", True),
        ("power:10", True),
        ("log1m_p", True),
        ("focal:2", False),
    ],
)
def test_concave_objectives_lean_on_the_prior(spec, leaning):
    # Proposition 3.2: concave f peaks at p >= 1/2, convex f below.
    assert analyze.profile(parse(spec)).prior_leaning is leaning


def test_cli_prints_weights_and_peaks_for_default_objectives(capsys):
    assert cli.main(["analyze"]) == 0
    out = capsys.readouterr().out
    for spec in analyze.DEFAULT_OBJECTIVES:
        assert spec in out
    row = next(line for line in out.splitlines() if line.startswith("p "))
    # W(0.5) = 0.25 for 1 - p, and it peaks at p = 0.5.
    assert "0.2500" in row and row.split()[-4] == "0.500"


def test_cli_reports_bad_objective_without_traceback(capsys):
    assert cli.main(["analyze", "--objectives", "p,nonsense"]) == 2
    assert "valid forms" in capsys.readouterr().err


@pytest.mark.parametrize(
    "spec, shape",
    [
        ("nll", "convex"),
        ("p", "linear"),
        ("dft", "linear"),
        ("power:10", "concave"),
        ("power:0.5", "convex"),
        ("log1m_p", "concave"),
        ("top_logp:0.2", "neither"),
    ],
)
def test_curvature_classes_match_the_objectives(spec, shape):
    assert analyze.curvature(parse(spec)) == shape


@pytest.mark.parametrize(
    "spec",
    ["nll", "p", "power:10", "power:0.5", "log1m_p", "focal:2", "power:-1"],
)
def test_proposition_3_2_concave_peaks_high_convex_peaks_low(spec):
    shape = analyze.profile(parse(spec))
    if shape.curvature == "concave":
        assert shape.peak_p >= 0.5
    if shape.curvature == "convex":
        assert shape.peak_p <= 0.5


def test_cli_writes_json_and_png(tmp_path):
    out = tmp_path / "analysis"
    argv = ["analyze", "--objectives", "nll,p", "--no-flow", "--out", str(out)]
    assert cli.main(argv) == 0
    assert (out / "gradient_weights.png").stat().st_size > 10_000
    import json

    summary = json.loads((out / "analysis.json").read_text())
    assert [o["spec"] for o in summary["objectives"]] == ["nll", "p"]
    assert summary["objectives"][1]["peak_p"] == pytest.approx(0.5, abs=1e-3)

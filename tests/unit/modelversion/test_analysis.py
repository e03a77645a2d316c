import pytest

from finetune_operator.modelversion import analysis


def test_render_replaces_variables():
    q = 'sum(rate(x{model="$model",version="${version}",namespace="$namespace"}[1m])) / $versionless'
    assert analysis.render(q, model="bot", version="v2", namespace="ns") == \
        'sum(rate(x{model="bot",version="v2",namespace="ns"}[1m])) / $versionless'


@pytest.mark.parametrize("doc,value", [
    ({"data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, "0.25"]}]}}, 0.25),
    ({"data": {"resultType": "scalar", "result": [1, "3"]}}, 3.0),
    ({"data": {"resultType": "vector", "result": []}}, None),
    ({"data": {"resultType": "vector", "result": [{"value": [1, "NaN"]}]}}, None),
])
def test_value_of(doc, value):
    assert analysis.value_of(doc) == value


def test_breach_directions_and_no_data():
    assert analysis.breached(0.2, 0.1)
    assert not analysis.breached(0.1, 0.1)
    assert analysis.breached(0.05, 0.1, "LessThan")
    assert not analysis.breached(None, 0.1)
    assert analysis.describe(0.2, 0.1) == "0.2 > 0.1"
    assert analysis.describe(None, 0.1) == "no data not > 0.1"

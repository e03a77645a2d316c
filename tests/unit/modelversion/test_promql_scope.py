"""Every selector of a tenant's PromQL reads only the tenant's namespace (modelversion/promql.py)."""
from __future__ import annotations

import pytest

from finetune_operator.modelversion import promql

NS = 'namespace="team-a"'


@pytest.mark.parametrize("behaviour, query, scoped", [
    ("a bare metric name gets the matcher", "up", f"up{{{NS}}}"),
    ("a selector with matchers gets it first", 'x{job="a"}', f'x{{{NS},job="a"}}'),
    ("an empty selector gets it", "x{}", f"x{{{NS}}}"),
    ("the matcher already there is kept once", f"x{{{NS}}}", f"x{{{NS}}}"),
    ("both sides of or are scoped", "a or b", f"a{{{NS}}} or b{{{NS}}}"),
    ("a name-regex selector is scoped", '{__name__=~".+"}', f'{{{NS},__name__=~".+"}}'),
    ("a subquery's inner selector is scoped", "max_over_time(rate(x[5m])[1h:1m])",
     f"max_over_time(rate(x{{{NS}}}[5m])[1h:1m])"),
    ("an offset selector is scoped", "x offset 1w", f"x{{{NS}}} offset 1w"),
    ("a negative offset and @ are scoped", "x offset -5m @ start()", f"x{{{NS}}} offset -5m @ start()"),
    ("label lists are not selectors", "sum by (le) (rate(h_bucket[2m]))",
     f"sum by (le) (rate(h_bucket{{{NS}}}[2m]))"),
    ("a trailing by list is not a selector", "sum(x) without (pod)", f"sum(x{{{NS}}}) without (pod)"),
    ("vector matching keeps both sides scoped", "a * on(job) group_left(pod) b",
     f"a{{{NS}}} * on(job) group_left(pod) b{{{NS}}}"),
    ("group_left without a list scopes the next operand", "a * on(job) group_left b",
     f"a{{{NS}}} * on(job) group_left b{{{NS}}}"),
    ("keywords are case-insensitive", "SUM BY (le) (X) OR Y", f"SUM BY (le) (X{{{NS}}}) OR Y{{{NS}}}"),
    ("a keyword in operand position is a metric name", "x + sum", f"x{{{NS}}} + sum{{{NS}}}"),
    ("a metric named by inside a call is scoped", "rate(by[5m])", f"rate(by{{{NS}}}[5m])"),
    ("bool is a modifier", "x > bool 1", f"x{{{NS}}} > bool 1"),
    ("label_replace cannot widen what is read", 'label_replace(up, "namespace", "b", "", "")',
     f'label_replace(up{{{NS}}}, "namespace", "b", "", "")'),
    ("strings are not selectors", 'count_values("x{y}", m)', f'count_values("x{{y}}", m{{{NS}}})'),
    ("comments are dropped", "x # } or other{}\n", f"x{{{NS}}} \n"),
    ("no selector at all is unchanged", "vector(1) + scalar(time())", "vector(1) + scalar(time())"),
    ("the project's error-rate query", 'sum(rate(r{code=~"5.."}[10s])) / sum(rate(r[10s]))',
     f'sum(rate(r{{{NS},code=~"5.."}}[10s])) / sum(rate(r{{{NS}}}[10s]))'),
])
def test_every_selector_is_scoped(behaviour, query, scoped):
    assert promql.scope(query, "team-a") == scoped


@pytest.mark.parametrize("behaviour, query, words", [
    ("another namespace", 'x{namespace="team-b"}', "may only match namespace=\"team-a\""),
    ("a namespace regex", 'x{namespace=~".*"}', "may only match"),
    ("a negative namespace matcher", 'x{namespace!="team-a"}', "may only match"),
    ("a namespace regex inside a subquery", 'rate(x{namespace=~"team-.*"}[5m])[1h:]', "may only match"),
    ("a namespace matcher on one side of or", 'a or b{namespace="team-b"}', "may only match"),
    ("or inside a selector (Prometheus 3)", 'x{a="b" or namespace="team-b"}', "unexpected 'or'"),
    ("a quoted metric name (Prometheus 3)", '{"x.y"}', "matchers must each be"),
    ("a selector inside a label list", 'sum by (x{a="b"}) (y)', "inside (...)"),
    ("a selector inside a range", 'x[5m{a="b"}]', "inside [...]"),
    ("a stray closing brace", "x}", "unexpected }"),
    ("an unterminated string", 'x{a="b}', "cannot read"),
    ("a string across lines", 'x{a="b\nc"}', "cannot read"),
])
def test_what_cannot_be_proven_scoped_is_refused(behaviour, query, words):
    with pytest.raises(promql.Unscoped) as refused:
        promql.scope(query, "team-a")
    assert words in str(refused.value)


def test_the_namespace_label_is_the_admins_choice():
    assert promql.scope("x", "team-a", "kubernetes_namespace") == 'x{kubernetes_namespace="team-a"}'

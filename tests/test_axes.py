"""Log-axis ticks: one label per decade from two decades up, Plotly's own below that."""

import plotly.graph_objects as go

from attn.axes import decade_ticks, tick_text, tidy_log_axes


def test_decade_ticks_by_span():
    # Under two decades: 1, 2, 5 of each decade, written in full (Plotly would write "5" for 50).
    assert decade_ticks([1, 99]) == {"tickvals": [1, 2, 5, 10, 20, 50, 100], "ticktext": ["1", "2", "5", "10", "20", "50", "100"]}
    assert decade_ticks([13.5, 141]) == {"tickvals": [20, 50, 100], "ticktext": ["20", "50", "100"]}
    assert decade_ticks([3e5, 2.5e6])["ticktext"] == ["500k", "1M", "2M"]
    assert decade_ticks([2, 3]) == {}  # a narrow range: Plotly's own ticks
    assert decade_ticks([1, 100]) == {"dtick": 1}
    assert decade_ticks([3e5, 2e10]) == {"dtick": 1}
    assert decade_ticks([0, -1, None, float("nan"), 5, 6]) == {}  # only positive, finite values count
    assert decade_ticks([]) == {}


def test_tick_text():
    assert [tick_text(v) for v in (0.05, 1, 20, 500, 2000, 5e7, 2e9)] == ["0.05", "1", "20", "500", "2k", "50M", "2G"]


def test_tidy_log_axes_leaves_linear_and_ticked_axes_alone():
    fig = go.Figure(go.Scatter(x=[1, 10, 1000], y=[1e3, 1e6, 1e9]))
    fig.update_xaxes(type="log", tickvals=[1, 10, 1000])
    fig.update_yaxes(type="log")
    tidy_log_axes(fig)
    assert fig.layout.yaxis.dtick == 1 and fig.layout.xaxis.dtick is None

    lin = go.Figure(go.Scatter(x=[1, 2], y=[1, 1e6]))
    assert tidy_log_axes(lin).layout.yaxis.dtick is None


def test_figures_label_each_decade():
    from attn import lesson_figures

    fig = lesson_figures.pairs_growth_figure(4096)
    assert fig.layout.yaxis.type == "log" and fig.layout.yaxis.dtick == 1


def test_numpy_trace_data():
    import numpy as np

    fig = go.Figure(go.Scatter(x=np.array([1.0, 1e4]), y=np.array([2.0, 3.0])))
    fig.update_xaxes(type="log")
    assert tidy_log_axes(fig).layout.xaxis.dtick == 1

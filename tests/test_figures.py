"""Heatmap grids are legible on a page: as many panels per row as fit minigpt.figures.PAGE_WIDTH,
so a 64-character window gets one panel per row instead of a strip too wide to read."""

import torch

from minigpt.figures import PAGE_WIDTH, plot_attention, plot_attention_mean


def weights(n_head: int, T: int) -> torch.Tensor:
    return torch.ones(n_head, T, T).tril().div(torch.arange(1, T + 1)[:, None])


def test_a_64_character_window_gets_one_panel_per_row():
    fig = plot_attention(weights(4, 64), list("x" * 64), "layer 0")
    panels = [ax for ax in fig.axes if ax.get_images()]
    assert len(panels) == 5  # four heads and their mean
    assert len({round(ax.get_position().x0, 3) for ax in panels}) == 1  # all in one column
    assert fig.get_size_inches()[0] <= PAGE_WIDTH


def test_short_windows_share_a_row_within_the_page_width():
    fig = plot_attention_mean([weights(2, 16)] * 3, list("x" * 16))
    panels = [ax for ax in fig.axes if ax.get_images()]
    columns = {round(ax.get_position().x0, 3) for ax in panels}
    assert len(columns) == 2 and fig.get_size_inches()[0] <= PAGE_WIDTH


def test_an_explicit_column_count_is_kept():
    fig = plot_attention(weights(4, 64), list("x" * 64), "layer 0", columns=5)
    assert len({round(ax.get_position().x0, 3) for ax in fig.axes if ax.get_images()}) == 5

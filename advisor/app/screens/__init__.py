"""The app's screens, one per file, each with its stylesheet beside it where it has one."""

LOSS_LINE = (0, 130, 200)
"""The training-loss line's colour, as RGB: textual-plotext's first series colour, given outright so that the line
keeps it whether or not the app's theme is registered with plotext when the plot is first drawn."""

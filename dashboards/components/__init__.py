"""Shared building blocks of the control room: the page shell, tiles, figures, page bodies and
the live-refresh callbacks. Components take data and return layout; they never query."""

"""One module per page; Dash imports them when the app is built (see dashboards/context.py
for how a page reaches config and data, and how to add one)."""

"""`anvil compare`: two runs, or the variants of one run, side by side, from the journal.
`model.build_comparison` makes the value (`sides.py` reads the journal's rows); `render_text`,
`render_html` and `Comparison.to_json` show it."""

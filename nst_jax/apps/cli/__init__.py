"""The command-line tools: stylize, sweep, fetch_weights (each a module with ``main``)."""

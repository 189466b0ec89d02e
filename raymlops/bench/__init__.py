"""Side-by-side benchmarks: raymlops against the bare tools it wraps, measured in one run.

Apart from the library it measures: nothing in raymlops imports this package.
"""

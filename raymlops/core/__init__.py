"""The bottom layer: user-facing errors, redaction, console set-up and the names every layer shares.

Imports nothing from the rest of the package.
"""

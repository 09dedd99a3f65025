"""Tools for the tests and the benchmark: tiny local models and probes of a running app.

Never imported by the service itself.
"""

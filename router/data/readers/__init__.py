"""One reader per log format, each a function from a source (a file, glob, directory or list) to a
LazyFrame of canonical rows, built on ``router.data.read``: ``long``, ``wide``, ``pairwise``,
``decision_logs`` (the gateway's own traffic), and ``prices`` (token prices that fill missing costs).
``router.data.scan.scan_logs`` detects a source's format and calls its reader.
"""

"""The aggregate behaviour store (SQLite, WAL): below ``control`` and ``learn``, above ``model``.

``aggregates.AggregateStore`` is the write API; ``queries`` holds the read side for the review.
"""

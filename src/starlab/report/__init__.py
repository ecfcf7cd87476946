"""A run shown: its result in words and rows (``summary``, no matplotlib), genome diagrams (``diagram``), and the
figures and self-contained HTML page (``report``)."""

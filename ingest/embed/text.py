"""Moved to ``db.embed.text`` (the API embeds queries with it and may not import ``ingest``).

This name stays an alias of that module, so older imports keep working and see the same objects.
"""

import sys

from db.embed import text as _moved

sys.modules[__name__] = _moved

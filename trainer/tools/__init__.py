"""Tools around trained results: Hub export and cache filling."""

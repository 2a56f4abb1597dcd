"""Stage: query."""

"""Stage: confirm."""

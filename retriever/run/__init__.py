"""Stage: run."""

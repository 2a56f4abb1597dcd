"""Stage: distill."""

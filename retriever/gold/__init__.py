"""Stage: gold."""

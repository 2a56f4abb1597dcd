"""Stage: batch_filter."""

"""The article store: scored articles for queries, alert context and drift."""

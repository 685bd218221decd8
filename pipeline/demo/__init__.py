"""The end-to-end demo: every stage on the local stack, a replayed stream with a spike."""

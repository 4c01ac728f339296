"""Traffic recorded from real AI clients, and the pinned clients themselves (see record.py)."""

"""The leaderboard: validated, append-only CSV of run records, rendered in the paper's table layouts."""

"""Research: parameter spaces, combinations and walk-forward windows (pure; no I/O, no runs)."""

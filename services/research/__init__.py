"""Research at scale: parameter sweeps and walk-forward evaluation of a blueprint, run with the
daemon's own strategy runs (same workers, same simulated broker), in one process, over local
processes or on a Ray cluster."""

"""An example opdaemon worker plugin package, named in blueprints by import path:
`momentum_plugin.workers:MomentumDetector` and `momentum_plugin.workers:MomentumOpportunity`.

It lives outside the daemon's packages on purpose: put `examples/plugins` on PYTHONPATH (or
install a package like it) and a blueprint can use it without touching opdaemon itself."""

"""The span path at the root of tracekit: decorators, configure/flush, the exporter, the query facade, the pytest plugin."""

"""Host operations: what keeps ARK alive on a machine, apart from the trading pipeline.

`layout` is the one place that knows where things live; the pipeline imports nothing
from this package except `layout`.
"""

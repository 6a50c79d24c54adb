"""``InfluxWriter``: a buffered, retrying, spooling InfluxDB writer as a lifecycle service.

See :mod:`lifecycle.adapters.influx._writer` and docs/influx.md.
"""

from ._settings import InfluxSettings
from ._stats import InfluxStats
from ._writer import InfluxWriter, PointsDroppedError, WriterClosedError

__all__ = ["InfluxSettings", "InfluxStats", "InfluxWriter", "PointsDroppedError",
           "WriterClosedError"]

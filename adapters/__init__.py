"""Services for real back ends (asyncpg, aiosqlite, InfluxDB, HTTP), imported as ``lifecycle.adapters.X``."""

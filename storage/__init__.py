"""Storage: one write + query interface (base.Store), adapters for InfluxDB and DuckDB."""

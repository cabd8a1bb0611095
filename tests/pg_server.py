"""A real PostgreSQL server for the tests, started from Debian's binaries (fixtures)."""

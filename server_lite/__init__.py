"""fleetdeck's tracking server: HTTP API over a document store, event segments and blob files."""

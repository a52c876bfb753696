"""fleetdeck: app/tui."""

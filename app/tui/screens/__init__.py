"""fleetdeck: app/tui/screens."""

"""fleetdeck: app/tui/widgets."""

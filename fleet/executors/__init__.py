"""fleetdeck: fleet/executors."""

"""The control centre: a Textual TUI over the tracking server's API.

Entry points: ``fleetdeck`` with no arguments, ``fleetdeck tui``, ``fleetdeck serve`` (in a browser,
through textual-serve). The app is :class:`fleetdeck.app.tui.app.FleetdeckApp`; it talks to the
server only through :class:`fleetdeck.app.tui.data.DataSource` (the one ``Client``). Nothing here
is imported by ``import fleetdeck``.
"""

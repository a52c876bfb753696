from fleetdeck.app.cli import main

main()

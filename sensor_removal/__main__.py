from sensor_removal.cli.commands import main

raise SystemExit(main())

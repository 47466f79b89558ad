from sensor_removal.commands import main

raise SystemExit(main())

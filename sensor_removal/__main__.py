from sensor_removal.cli import main

raise SystemExit(main())

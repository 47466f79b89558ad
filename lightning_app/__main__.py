from lightning_app.cli import main

raise SystemExit(main())

from fleming_dsl.cli.main import main

raise SystemExit(main())

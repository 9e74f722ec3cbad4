from posfault.cli import main

raise SystemExit(main())

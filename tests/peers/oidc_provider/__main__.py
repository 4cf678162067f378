from tests.peers.oidc_provider.provider import main

raise SystemExit(main())

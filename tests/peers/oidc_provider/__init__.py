"""A minimal OpenID Connect provider for the tests, built from authlib's server components
(the authorization-code grant with PKCE and the OpenID Connect code extension): discovery,
JWKS, /authorize, /token. The token signing is authlib's and joserfc's, not ours.

    python -m tests.peers.oidc_provider --port 8123 --client-id gwanje --client-secret s \\
        --redirect-uri http://127.0.0.1:8050/login/oidc/callback \\
        --users '{"kim": {"groups": ["gwanje-operators"]}}'

/authorize stands in for the provider's own login page: the user who signs in is the query
parameter `user` (one of --users); anything else is refused there."""

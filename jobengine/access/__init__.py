"""Who may do what: passwords and API tokens, SAML sign-on, login limits, accounts."""

"""Authentication: password schemes, passwd-file users, the cred checker, realm and portal,
SASL helpers and login throttling."""

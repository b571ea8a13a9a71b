"""The Neo4j wing: planning and running statements, and the credentials they run as.

- ``executor.py`` plans (``EXPLAIN``) and runs statements with the credential it is handed, on
  the official driver (``driver_rows.py``: its rows); ``relay.py`` runs the Bolt door's on
  connections of the gateway's own (``bolt.py``, ``relay_rows.py``);
- ``brokers.py`` hands out that credential: the gateway's own (service account) or a leased
  user per DAG, held for a block;
- ``logins.py`` is a credential as the executor uses it, and the retries of a refused login;
- ``rotation.py`` rotates the gateway's own password, ``leases.py`` creates and drops per-DAG
  users, ``secret_sources.py`` is where the gateway's password is kept;
- ``errors.py`` translates the driver's exceptions into the gateway's, once.

Rules: this wing imports the foundation (errors, settings, metrics, faults, statement) and the
``neo4j`` driver, never the policy, the analysis, the audit log or the request path. It builds
nothing from settings: ``proxy/app/`` chooses and assembles its parts.
"""

"""The local stack of real services for the demo, the tests and the benchmarks.

``state.py`` (names and ``state.json``), ``supervisor.py`` (processes), ``services.py`` (how each
service starts), ``aws.py`` (moto's IAM, S3 and Secrets Manager), ``gateway_config.py`` (the
gateway's configuration), ``stack.py`` (:class:`~proxy.devstack.stack.DevStack`, the stack as
its users see it), ``install.py`` and ``demo.py``.

Rules: the devstack may import any production module; no production module imports the devstack
(only the command line does).
"""

"""The use cases: what the gateway does for a caller, a reviewer and a policy author.

- ``path.py``: the request path of one statement (:class:`~proxy.gateway.path.Gateway`);
- ``trail.py``: one call's audit trail, written ahead and after, every failure once;
- ``call.py``: what a front door hands the request path (:class:`~proxy.gateway.call.Call`);
- ``transactions.py``: an explicit transaction, each of its statements on the request path;
- ``review.py``: reviewers reading the audit log, authorised and recorded;
- ``replay.py``: ``policy explain`` and ``policy replay``;
- ``seams.py``: the Protocols the use cases take their collaborators through.

Rules: a use case knows no web framework and no wire format (front doors in ``proxy/api/``
translate theirs to a :class:`~proxy.gateway.call.Call` and back), and no concrete wing: it is
handed its collaborators, each behind a Protocol of ``seams.py`` as narrow as its use, by
``proxy/app/``. It may import the wings' types (a ``Decision``, an ``AuditEvent``), never a
front door, the application or the command line.
"""

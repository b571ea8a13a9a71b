"""Audit records streamed to a SIEM: the sinks beside the SQLite chain.

The chain stays the source of truth. A sink (``sink.py``) tails its file after a cursor
(``cursor.py``: the last record delivered, kept beside the log), renders each committed record
in our own form or as OCSF (``forms.py``, ``ocsf.py``) and hands it to a destination
(``destinations.py``: JSON Lines, ``syslog.py``: RFC 5424, ``hec.py``: a Splunk-style HTTP
collector), in order, retrying with back-off: delivery is at least once, never in the request
path, and a sink that is down only falls behind.

Rules: this package reads the audit log through :mod:`proxy.audit` and imports the foundation;
the composition root builds its sinks from ``[[audit.sinks]]``.
"""

"""One construct per capability of the gateway.

Note: this package shadows the ``constructs`` library if ``infra/`` itself is on ``sys.path``;
``infra/app.py`` takes care of that when run as a script. Always import it as ``infra.constructs``.
"""

"""Load testing for a running parawave server.

* ``python -m service.loadtest.sweep --url http://127.0.0.1:8000 --concurrency 1,2,4,8,16``: a bounded
  async client (httpx) that sweeps concurrency levels and writes a JSON + markdown + PNG report.
* ``locust -f service/loadtest/locustfile.py --host http://127.0.0.1:8000``: a Locust file for the
  speech and reference endpoints (time to first audio reported as its own entry).

Both draw their texts from :mod:`service.loadtest.sentences` and count audio with
:class:`service.loadtest.meter.AudioMeter`. Install with ``pip install -e '.[load]'``.
"""

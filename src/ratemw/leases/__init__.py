"""Global limits: quota leased from a shared store and spent locally (LEASES.md).

:mod:`~ratemw.leases.bucket` stands in for a policy's local algorithm, spending leased
tokens (:mod:`~ratemw.leases.account`); :mod:`~ratemw.leases.engine` and its asyncio twin
:mod:`~ratemw.leases.engine_aio` make the store calls and run the reconcile loop;
:mod:`~ratemw.leases.slots` holds global concurrency slots.
"""

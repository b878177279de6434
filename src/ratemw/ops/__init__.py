"""Operations: metrics, top offenders, spike alerts, bans, challenges and brownout.

See docs/operations.md. The hot path only counts and queues; everything else runs
in :class:`ratemw.ops.runtime.Operations`' background loop.
"""

"""The self-check: before a candidate is reported, the recording is replayed against
the rules that were live when it was made and compared with what was decided then.
Where they disagree on more than a stated share, the candidate is not reported and the
reasons are given (docs/replay.md, "Refusals")."""

from __future__ import annotations

from dataclasses import dataclass, field

from ratemw.replay.engine import Run
from ratemw.replay.reader import Arrival, Recording
from ratemw.rules.model import RuleSet

__all__ = ["DEFAULT_TOLERANCE", "SelfCheck", "precheck", "self_check"]

#: the largest share of recorded verdicts the baseline replay may disagree with
DEFAULT_TOLERANCE = 0.01


@dataclass(slots=True)
class SelfCheck:
    """The verdict of the self-check; ``reasons`` is empty when it passed."""

    compared: int = 0
    disagreements: int = 0
    tolerance: float = DEFAULT_TOLERANCE
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.reasons

    @property
    def share(self) -> float:
        return self.disagreements / self.compared if self.compared else 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "compared": self.compared,
            "disagreements": self.disagreements,
            "share": round(self.share, 6),
            "tolerance": self.tolerance,
            "reasons": list(self.reasons),
        }


def _short(version: str) -> str:
    return version[:12]


def precheck(recording: Recording, baseline: RuleSet, tolerance: float) -> SelfCheck:
    """What can be refused without replaying: empty, rules changed, wrong baseline, gaps."""
    check = SelfCheck(tolerance=tolerance)
    if not recording.arrivals:
        check.reasons.append("the recording holds no arrivals")
    versions = recording.versions
    if len(versions) > 1:
        shown = ", ".join(_short(v) for v in versions)
        check.reasons.append(f"rules changed mid-recording (versions {shown}): replay each part")
    if versions and baseline.digest and baseline.digest not in versions:
        check.reasons.append(
            f"the baseline (version {_short(baseline.digest)}) is not the rules live when "
            f"recorded (version {_short(versions[-1])})"
        )
    if recording.gaps:
        check.reasons.append(
            f"recording gaps: {recording.gaps} arrival(s) were dropped by the recorder "
            "(buffer full or a failed write), so some buckets cannot be rebuilt"
        )
    return check


def unsampled_rules(
    recording: Recording, rulesets: list[RuleSet], run_matched: set[str]
) -> list[str]:
    """Rules that matched recorded traffic but count by an identity the sample does not
    keep whole (with a 100 % sample, none)."""
    if recording.sample >= 1.0:
        return []
    out = []
    for ruleset in rulesets:
        for rule in ruleset.rules:
            whole = recording.by in rule.identity
            if not whole and rule.name in run_matched and rule.name not in out:
                out.append(rule.name)
    return out


def self_check(
    recording: Recording, baseline: RuleSet, run: Run, check: SelfCheck, candidate: RuleSet
) -> SelfCheck:
    """Compare ``run`` (the baseline replayed) with the recorded verdicts."""
    matched = {n for o in run.outcomes if o is not None for n in o.matched}
    for o, a in zip(run.outcomes, recording.arrivals, strict=True):
        if o is None:
            continue
        check.compared += 1
        allowed = o.status < 300
        if allowed != (a.status < 300) or (not allowed and set(o.violated) != _rejected_by(a)):
            check.disagreements += 1
    sampled_out = unsampled_rules(recording, [baseline, candidate], matched)
    if sampled_out:
        check.reasons.append(
            f"sampling made a global limit unreplayable: {recording.sample:.0%} of "
            f"{recording.by} identities were recorded, but {', '.join(sampled_out)} "
            f"count(s) by another identity, whose buckets the sample cuts"
        )
    if check.share > check.tolerance:
        why = (
            f"the baseline replay disagrees with {check.disagreements} of {check.compared} "
            f"recorded verdicts ({check.share:.2%}, more than the {check.tolerance:.2%} allowed)"
        )
        if len(recording.pids) > 1:
            why += (
                f"; recorded by {len(recording.pids)} processes, whose local limits were "
                "separate buckets"
            )
        if recording.shared:
            why += (
                "; the limits were global: the leased reality differs from one exact bucket "
                "by up to the lease bound (f·B, plus R·D during an outage; docs/global.md), "
                "and here that lease error exceeds the bound of the self-check"
            )
        check.reasons.append(why)
    if recording.shared:
        check.notes.append(
            "global limits are replayed as one exact bucket; the fleet's leases may admit "
            "up to f·B more (docs/global.md)"
        )
    if run.unknown_finish:
        check.notes.append(
            f"{run.unknown_finish} request(s) rejected live would hold a concurrency slot: "
            "their duration is unknown, taken as zero"
        )
    return check


def _rejected_by(a: Arrival) -> set[str]:
    return {name for name, verdict in a.verdicts if verdict == "reject"}

"""The replay report: a stable JSON document (schema ``ratemw-replay-report/1``,
docs/replay.md) and its plain-text rendering.

"Before" is the baseline replayed (which the self-check compared with what was
decided live), "after" the candidate; a flip is an arrival the two decide differently.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from typing import Any

from ratemw.replay.check import SelfCheck
from ratemw.replay.engine import Replayed, Run
from ratemw.replay.reader import Arrival, Recording

__all__ = ["SCHEMA", "build_report", "render_text"]

SCHEMA = "ratemw-replay-report/1"
#: identities and minutes listed, most affected first
TOP = 10
_A2R, _R2A = "allowed_to_rejected", "rejected_to_allowed"


def _minute(wall: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(wall // 60 * 60))


def _identity(a: Arrival, kinds: tuple[str, ...], by: str) -> str:
    """The hashed identity of the rule that flipped ``a`` (else the sampled one)."""
    ids = dict(a.ids)
    if kinds and all(k in ids for k in kinds):
        return "+".join(f"{k}:{ids[k]}" for k in kinds)
    return f"{by}:{ids[by]}" if by in ids else "(none)"


def _ratio(part: int, whole: int) -> float:
    return round(part / whole, 6) if whole else 0.0


def _recording(recording: Recording) -> dict[str, Any]:
    arrivals = recording.arrivals
    replayed = sum(not a.gated for a in arrivals)
    return {
        "files": list(recording.files),
        "arrivals": len(arrivals),
        "replayed": replayed,
        "decided_by_lists": len(arrivals) - replayed,
        "sample": recording.sample,
        "scale": round(1 / recording.sample, 6),
        "sampled_by": recording.by,
        "rules_versions": list(recording.versions),
        "processes": len(recording.pids),
        "global_limits": recording.shared,
        "gaps": recording.gaps,
        "bad_lines": recording.bad_lines,
        "from": _minute(arrivals[0].wall) if arrivals else None,
        "to": _minute(arrivals[-1].wall) if arrivals else None,
    }


def build_report(
    recording: Recording, check: SelfCheck, before: Run | None, after: Run | None
) -> dict[str, Any]:
    """The report; without ``after`` (a refusal) only the recording and the self-check."""
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "recording": _recording(recording),
        "self_check": check.as_dict(),
        "notes": list(check.notes),
    }
    if not check.ok or before is None or after is None:
        return report
    scale = 1 / recording.sample
    matched: dict[str, Counter[tuple[str, str]]] = {"before": Counter(), "after": Counter()}
    flips: dict[tuple[str, str], Counter[str]] = {}
    totals = {"before": Counter[str](), "after": Counter[str]()}
    by_identity: Counter[str] = Counter()
    flipped_ids: dict[tuple[str, str], set[str]] = {}  # rule and tier -> who flipped
    by_minute: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    tiered = before.tiered | after.tiered
    # Outcomes are shared objects (engine._run): count each (before, after, tier) once
    # per kind, and add up the rules they matched afterwards, not per arrival.
    pairs: dict[tuple[int, int, str], int] = {}
    outcomes: dict[tuple[int, int, str], tuple[Replayed, Replayed]] = {}
    for a, b, c in zip(recording.arrivals, before.outcomes, after.outcomes, strict=True):
        if b is None or c is None:
            continue
        tier = a.tier or ""  # for the rules with limits per tier
        pair = (id(b), id(c), tier)
        seen_n = pairs.get(pair)
        if seen_n is None:
            pairs[pair] = 1
            outcomes[pair] = (b, c)
        else:
            pairs[pair] = seen_n + 1
        if (b.status < 300) == (c.status < 300):
            continue
        kind, names = (_A2R, c.violated) if b.allowed else (_R2A, b.violated)
        kinds[kind] += 1
        run = after if b.allowed else before
        first = names[0] if names else ""
        who = _identity(a, run.identities.get(first, ()), recording.by)
        for name in names or ("(no rule: store or brownout)",):
            key = (name, tier if name in tiered else "")
            flips.setdefault(key, Counter())[kind] += 1
            flipped_ids.setdefault(key, set()).add(who)
        by_identity[who] += 1
        by_minute[_minute(a.wall)] += 1
    for pair, n in pairs.items():
        tier = pair[2]
        for side, o in zip(("before", "after"), outcomes[pair], strict=True):
            totals[side]["admitted" if o.allowed else "rejected"] += n
            for name in o.matched:
                matched[side][name, tier if name in tiered else ""] += n
    rules = []
    # Every rule and tier that matched, flipped or not; "(no rule …)" only when flipped.
    for name, tier in sorted({*matched["before"], *matched["after"], *flips}):
        counts = flips.get((name, tier), Counter())
        a2r, r2a = counts[_A2R], counts[_R2A]
        rules.append({
            "rule": name,
            "tier": tier or None,
            "matched_before": matched["before"][name, tier],
            "matched_after": matched["after"][name, tier],
            _A2R: a2r,
            _R2A: r2a,
            f"share_{_A2R}": _ratio(a2r, matched["after"][name, tier]),
            f"share_{_R2A}": _ratio(r2a, matched["before"][name, tier]),
            f"scaled_{_A2R}": round(a2r * scale, 3),
            f"scaled_{_R2A}": round(r2a * scale, 3),
            "identities": len(flipped_ids.get((name, tier), ())),
        })  # fmt: skip
    seen = {name for counter in matched.values() for name, _ in counter}
    flipped = sum(by_minute.values())
    report.update({
        "before": {k: totals["before"][k] for k in ("admitted", "rejected")},
        "after": {k: totals["after"][k] for k in ("admitted", "rejected")},
        "flips": {
            _A2R: kinds[_A2R],
            _R2A: kinds[_R2A],
            "total": flipped,
            "share": _ratio(flipped, sum(totals["before"].values())),
            "scaled_total": round(flipped * scale, 3),
            "scaled_error": round(_sampling_error(by_identity, recording.sample), 3),
            "identities": len(by_identity),
        },
        "rules": rules,
        "identities": [{"identity": k, "flips": n} for k, n in _top(by_identity)],
        "minutes": [{"minute": k, "flips": n} for k, n in _top(by_minute)],
        "never_matched": [n for n in after.rules if n not in {x for x, _ in matched["after"]}],
        "never_matched_before": [n for n in before.rules if n not in seen],
    })  # fmt: skip
    if recording.sample < 1.0:
        report["notes"].append(
            f"counts are of the recorded {recording.sample:.0%} sample of {recording.by} "
            f"identities; scaled_* multiply them by {scale:g} (an estimate, not a count)"
        )
        report["notes"].append(
            f"sampling error: scaled flips {flipped * scale:g} ± "
            f"{report['flips']['scaled_error']:g} (one standard error; the whole traffic's "
            "count lies within two of the estimate about 95 % of the time)"
        )
    return report


def _sampling_error(flips_by_identity: Counter[str], sample: float) -> float:
    """One standard error of the scaled flips: identities are sampled independently with
    probability ``sample``, each bringing all its flips (Horvitz-Thompson; its variance
    estimated from the sampled identities' flips)."""
    if sample >= 1.0:
        return 0.0
    squares = sum(n * n for n in flips_by_identity.values())
    return math.sqrt((1.0 - sample) * squares) / sample


def _top(counter: Counter[str]) -> list[tuple[str, int]]:
    # Ties in name order: the same input gives the same report.
    return sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP]


def render_text(report: dict[str, Any]) -> str:
    """The report for a terminal."""
    rec, check = report["recording"], report["self_check"]
    lines = [
        f"recording: {rec['arrivals']} arrivals, {rec['replayed']} replayed, sample "
        f"{rec['sample']:.0%} by {rec['sampled_by']}, {rec['from']} .. {rec['to']}",
        f"self-check: {'ok' if check['ok'] else 'REFUSED'}: {check['disagreements']} of "
        f"{check['compared']} verdicts differ ({check['share']:.2%}, "
        f"tolerance {check['tolerance']:.2%})",
    ]  # fmt: skip
    lines += [f"  refused: {reason}" for reason in check["reasons"]]
    if check["ok"] and "before" in report:
        b, a, f = report["before"], report["after"], report["flips"]
        lines.append(f"before: {b['admitted']} admitted, {b['rejected']} rejected")
        lines.append(f"after:  {a['admitted']} admitted, {a['rejected']} rejected")
        error = f" ± {f['scaled_error']:g}" if f.get("scaled_error") else ""
        lines.append(f"flips: {f['total']} ({f['share']:.2%}); scaled {f['scaled_total']:g}{error}")
        for r in report["rules"]:
            tier = f" [{r['tier']}]" if r["tier"] else ""
            lines.append(
                f"  {r['rule']}{tier}: {r[_A2R]} allowed->rejected "
                f"({r[f'share_{_A2R}']:.2%}), {r[_R2A]} rejected->allowed "
                f"({r[f'share_{_R2A}']:.2%})"
            )
        if report["identities"]:
            lines.append("most affected identities:")
            lines += [f"  {i['identity']}: {i['flips']}" for i in report["identities"]]
        if report["minutes"]:
            lines.append("most affected minutes:")
            lines += [f"  {m['minute']}: {m['flips']}" for m in report["minutes"]]
        if report["never_matched"]:
            lines.append(f"never matched: {', '.join(report['never_matched'])}")
    lines += [f"note: {note}" for note in report["notes"]]
    return "\n".join(lines) + "\n"

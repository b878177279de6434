"""The console's flows in real Chromium against a real ``ratemw control``, real Redis and
two limiter processes (conftest.py). The flows build on each other and run in order:
sign in, propose a rule with the form, approve, roll out in stages and watch the
limiters enforce it, roll back, verify the audit chain, ban a top offender, a brownout
that expires, what a viewer may do, and the charts against the limiters' /metrics."""

from __future__ import annotations

import io
import re
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ratemw.cli import main as ratemw_main
from ratemw.control.ui.render import CSP
from ratemw.ops.fleet_counts import read_counts
from tests.console.conftest import DEADLINE, Session, Stack, wait_for

pytestmark = pytest.mark.redis

NEW_RULE_LIMIT = 3  # the rule the editor adds: 3/minute per address


def statuses(stack: Stack, method: str, path: str, ip: str, n: int) -> Counter[int]:
    """``n`` requests from ``ip``, alternating between the two limiters."""
    seen: Counter[int] = Counter()
    with httpx.Client(timeout=10) as client:
        for i in range(n):
            url = stack.limiters[i % 2] + path
            seen[client.request(method, url, headers={"X-Forwarded-For": ip}).status_code] += 1
    return seen


def banned(stack: Stack, ip: str) -> list[bool]:
    """Whether each limiter answers ``ip``'s login as banned."""
    found = []
    for url in stack.limiters:
        r = httpx.post(url + "/login", headers={"X-Forwarded-For": ip}, timeout=10)
        found.append(r.status_code == 429 and "Temporarily banned" in r.json().get("detail", ""))
    return found


def accessible(page: Any) -> None:
    """Every visible control has a label, and nothing runs wider than the window."""
    unlabelled = page.evaluate("""() => Array.from(document.querySelectorAll(
        'input:not([type=hidden]), select, textarea')).filter(
        el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')).map(
        el => el.name || el.id)""")
    assert unlabelled == []
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")


def test_sign_in_refuses_a_wrong_token_and_signs_out(
    stack: Stack, open_session: Callable[..., Session]
) -> None:
    s = open_session(None)
    page = s.page
    response = page.goto(stack.url + "/ui/")
    assert page.url.startswith(stack.url + "/ui/signin")
    assert response.headers["content-security-policy"] == CSP
    assert "unsafe-inline" not in CSP and "default-src 'self'" in CSP
    s.shot("signin")
    page.get_by_label("Token").fill("not-a-token")
    with page.expect_response(lambda r: r.url.endswith("/ui/signin")) as refused:
        page.get_by_role("button", name="Sign in").click()
    assert refused.value.status == 401
    assert "That token is not valid." in page.inner_text("main")
    assert not [c for c in s.context.cookies() if c["name"] == "ratemw_console"]

    page.get_by_label("Token").fill(stack.token("editor"))
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r".*/ui/\?done=signed-in$"))
    assert "Signed in as alice (role: editor)" in page.inner_text("header")
    (cookie,) = [c for c in s.context.cookies() if c["name"] == "ratemw_console"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/ui"
    assert not cookie["secure"]  # plain HTTP on loopback; Secure over TLS (test_console_web)
    assert time.time() + 3600 < cookie["expires"] < time.time() + 9 * 3600
    assert page.evaluate("document.cookie") == ""  # HttpOnly: no script reads it
    accessible(page)

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r".*/ui/signin$"))
    # The signed-out cookie is dead even if a copy of it is replayed.
    replay = open_session(None)
    replay.context.add_cookies([cookie])
    replay.page.goto(stack.url + "/ui/versions")
    assert replay.page.url.startswith(stack.url + "/ui/signin")
    # Nothing came from another origin and nothing broke the CSP.
    assert all(url.startswith(stack.url) for url in s.requested), s.requested
    assert not [m for m in s.messages if "Content Security Policy" in m], s.messages


def test_editor_checks_a_raw_draft_with_line_and_column(
    stack: Stack, open_session: Callable[..., Session], tmp_path: Path
) -> None:
    page = open_session("editor").page
    page.goto(stack.url + "/ui/edit")
    bad = "version: 1\nrules:\n  - name: broken\n    match: {path: /x}\n    limit: 0/minute\n"
    page.get_by_label("Rules document").fill(bad)
    # Validated as you type (the script posts the draft), with ratemw check's positions.
    problem = page.locator("[data-problems] li.problem-error").first
    problem.wait_for()
    (tmp_path / "draft.yaml").write_text(bad)
    out = io.StringIO()
    assert ratemw_main(["check", str(tmp_path / "draft.yaml")], out=out) == 1
    expected = [line for line in out.getvalue().splitlines() if ": error: " in line]
    line, column = re.search(r":(\d+):(\d+): error: ", expected[0]).groups()  # type: ignore[union-attr]
    assert (problem.get_attribute("data-line"), problem.get_attribute("data-column")) == (
        line, column,
    )  # fmt: skip
    # Without the script, "Check" gives the same problems and no Propose button.
    page.get_by_role("button", name="Check").click()
    shown = page.locator("[data-problems] li").all_inner_texts()
    assert len(shown) == len(expected)
    for text, line_out in zip(shown, expected, strict=True):
        assert line_out.removeprefix(str(tmp_path / "draft.yaml")).split(": error: ")[1] in text
    assert page.get_by_role("button", name="Propose").count() == 0


def test_editor_adds_a_rule_with_the_form_and_sees_the_diff(
    stack: Stack, open_session: Callable[..., Session]
) -> None:
    s = open_session("editor")
    page = s.page
    page.goto(stack.url + "/ui/edit/rule")
    accessible(page)
    page.get_by_label("Name", exact=True).fill("reports")
    page.get_by_label("GET", exact=True).check()
    page.get_by_label("Path", exact=True).fill("/reports/**")
    page.get_by_label("Identity", exact=True).fill("ip")
    page.get_by_label("Limit (every tier without its own)").fill("zero per minute")
    page.locator("[data-problems] li.problem-error").first.wait_for()  # as you type
    page.get_by_label("Limit (every tier without its own)").fill(f"{NEW_RULE_LIMIT}/minute")
    page.get_by_label("Message", exact=True).fill("limit the reports")
    s.shot("rule-form")
    page.get_by_role("button", name="Review the change").click()
    changes = page.locator("ul.changes li").all_inner_texts()
    assert any("reports" in c and c.startswith("+") for c in changes), changes
    added = [line.rstrip() for line in page.locator("pre.diff span.d-add").all_inner_texts()]
    assert "+  - name: reports" in added and "+    limit: 3/minute" in added, added
    assert "Valid:" in page.inner_text("[data-problems]")
    s.shot("review")
    page.get_by_role("button", name="Propose").click()
    page.wait_for_url(re.compile(r".*/ui/versions/\d+\?done=proposed$"))
    vid = int(re.search(r"/versions/(\d+)", page.url).group(1))  # type: ignore[union-attr]
    stack.state["v2"] = vid
    assert "proposed" in page.inner_text("h1")
    # The author is not offered "Approve".
    assert page.get_by_role("button", name="Approve").count() == 0
    (entry,) = [v for v in stack.api("GET", "/v1/versions")["versions"] if v["id"] == vid]
    assert entry["author"] == "alice" and entry["message"] == "limit the reports"


def test_approver_approves(stack: Stack, open_session: Callable[..., Session]) -> None:
    vid = stack.state["v2"]
    s = open_session("approver")
    s.page.goto(f"{stack.url}/ui/versions/{vid}")
    assert s.page.locator("ul.changes li", has_text="+ rule 'reports' added").count() == 1
    text_diff = s.page.inner_text("pre.diff")
    assert "+  - name: reports" in text_diff and "\n-version: 1" not in text_diff  # LF kept
    s.shot("version")
    s.page.get_by_label("Comment").fill("lgtm")
    s.page.get_by_role("button", name="Approve").click()
    s.page.wait_for_url(re.compile(rf".*/ui/versions/{vid}\?done=approved$"))
    assert "bob" in s.page.inner_text("section[aria-labelledby=appr-h]")
    version = stack.api("GET", f"/v1/versions/{vid}")["version"]
    assert version["status"] == "approved"
    assert [a["principal"] for a in version["approvals"]] == ["bob"]


def _roll(page: Any, button: str, confirm: str) -> None:
    page.get_by_role("button", name=button).click()
    page.get_by_role("button", name=confirm).click()
    page.wait_for_url(re.compile(r".*\?done=rolled-out$"))


def test_admin_rolls_out_shadow_then_half_then_enforce(
    stack: Stack, open_session: Callable[..., Session]
) -> None:
    vid = stack.state["v2"]
    page = open_session("admin").page
    page.goto(f"{stack.url}/ui/versions/{vid}")

    _roll(page, "Roll out in shadow…", "Yes: Roll out at shadow")
    stack.wait_published()
    assert statuses(stack, "GET", "/reports/1", "198.18.1.1", 6) == {200: 6}  # only counted

    page.get_by_label("Percent enforced").fill("50")
    _roll(page, "Roll out to a percentage…", "Yes: Roll out at 50 %")
    stack.wait_published()
    limited = [statuses(stack, "GET", "/reports/1", f"198.18.2.{i}", 5)[429] > 0
               for i in range(16)]  # fmt: skip
    assert 0 < sum(limited) < 16, limited  # a stable share of identities is enforced

    _roll(page, "Enforce…", "Yes: Roll out at enforce")
    stack.state["v2_digest"] = stack.wait_published()
    seen = statuses(stack, "GET", "/reports/1", "198.18.3.1", 6)
    assert seen[429] >= 6 - NEW_RULE_LIMIT - 1 and seen[200] <= NEW_RULE_LIMIT + 1, seen
    assert stack.api("GET", f"/v1/versions/{vid}")["version"]["status"] == "enforced"
    page.goto(stack.url + "/ui/")
    assert f"Version {vid} is enforced" in page.inner_text("main")


def test_admin_rolls_back(stack: Stack, open_session: Callable[..., Session]) -> None:
    s = open_session("admin")
    page = s.page
    page.goto(stack.url + "/ui/")
    page.get_by_label("Reason").fill("reports are slow")
    page.get_by_role("button", name="Roll back…").click()
    assert "Roll back version" in page.inner_text("main")
    page.get_by_role("button", name="Yes: Roll back").click()
    page.wait_for_url(re.compile(r".*\?done=rolled-back$"))
    assert page.url.endswith(f"/ui/versions/{stack.state['v1']}?done=rolled-back")
    digest = stack.wait_published()
    assert digest != stack.state["v2_digest"]
    assert statuses(stack, "GET", "/reports/1", "198.18.4.1", 6) == {200: 6}
    versions = {v["id"]: v["status"] for v in stack.api("GET", "/v1/versions")["versions"]}
    assert versions[stack.state["v2"]] == "rolled_back"
    assert versions[stack.state["v1"]] == "enforced"


def test_audit_chain_verifies_and_filters(
    stack: Stack, open_session: Callable[..., Session]
) -> None:
    s = open_session("viewer")
    page = s.page
    page.goto(stack.url + "/ui/audit")
    page.get_by_role("button", name="Verify chain").click()
    shown = page.inner_text("#verification")
    out = io.StringIO()
    assert ratemw_main(["audit", "verify", "--db", stack.db_url], out=out) == 0
    cli = out.getvalue().strip()
    assert cli.startswith("ok: ") and cli in shown
    s.shot("audit")
    page.get_by_label("Principal").fill("carol")
    page.get_by_label("Outcome").select_option("ok")
    page.get_by_role("button", name="Filter").click()
    rows = page.locator("table.audit tbody tr")
    actions = [rows.nth(i).locator("td").nth(4).inner_text() for i in range(rows.count())]
    assert {"rollout", "rollback", "console.signin"} <= set(actions), actions
    principals = {rows.nth(i).locator("td").nth(2).inner_text() for i in range(rows.count())}
    assert principals == {"carol"}


def test_ban_a_top_offender_from_the_table_and_the_limiters_ban_it(
    stack: Stack, open_session: Callable[..., Session]
) -> None:
    offender = "198.51.100.7"
    assert statuses(stack, "POST", "/login", offender, 8)[429] >= 5
    s = open_session("admin")
    page = s.page

    def listed() -> bool:
        page.goto(stack.url + "/ui/ops")
        row = f"table.top[data-rule=login] tr[data-identity='{offender}']"
        return bool(page.locator(row).count() > 0)

    wait_for(listed, "the offender in the top-offenders table")
    page.get_by_role("button", name=f"Ban {offender}").click()
    page.wait_for_url(re.compile(r".*/ui/ops\?done=banned#bans$"))
    assert page.locator(f"tr[data-ban='login|{offender}']").count() == 1
    s.shot("ops")
    # The project answers a ban 429 with "Temporarily banned" (docs/operations.md, "Bans
    # are answered 429"), which tells it apart from the rate limit's own 429.
    wait_for(lambda: banned(stack, offender) == [True, True], "both limiters banning it")
    assert statuses(stack, "POST", "/login", "198.51.100.8", 1) == {200: 1}
    entries = stack.api("GET", "/v1/audit?limit=1000")["entries"]
    (ban,) = [e for e in entries if e["action"] == "ban.add"]
    assert ban["principal"] == "carol" and ban["detail"]["identity"] == offender


def test_brownout_is_set_and_expires_on_the_page(
    stack: Stack, open_session: Callable[..., Session]
) -> None:
    s = open_session("admin")
    page = s.page
    page.goto(stack.url + "/ui/ops")
    page.get_by_label("Factor (0.5 halves the limits)").fill("0.5")
    page.get_by_label("Duration in seconds", exact=True).first.fill("5")
    page.get_by_label("Reason").first.fill("database failover")
    page.get_by_role("button", name="Set the brownout").click()
    page.wait_for_url(re.compile(r".*\?done=brownout-set#brownout$"))
    assert "Brownout in force" in page.inner_text("#brownout")
    countdown = page.locator("#brownout .countdown")
    assert re.fullmatch(r"\d s left", countdown.inner_text())

    def factor(url: str) -> float | None:
        text = httpx.get(url + "/metrics", timeout=5).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "ratemw_brownout_factor":
                    return float(sample.value)
        return None

    wait_for(lambda: all(factor(u) == 0.5 for u in stack.limiters), "limiters under brownout")
    # No reload: the page's script counts down and refreshes the section.
    page.locator("#no-brownout").wait_for(timeout=DEADLINE * 1000)
    assert "Brownout in force" not in page.inner_text("#brownout")
    wait_for(lambda: all(factor(u) == 1.0 for u in stack.limiters), "limiters back to 1.0")


def test_a_viewer_sees_no_changes_and_a_forged_post_is_refused(
    stack: Stack, open_session: Callable[..., Session]
) -> None:
    s = open_session("viewer")
    page = s.page
    for path in ("/ui/", f"/ui/versions/{stack.state['v2']}", "/ui/versions", "/ui/edit",
                 "/ui/edit/rule", "/ui/edit/lists", "/ui/ops", "/ui/audit"):  # fmt: skip
        page.goto(stack.url + path)
        forms = page.locator("form[method=post]")
        actions = [forms.nth(i).get_attribute("action") for i in range(forms.count())]
        assert actions == ["/ui/signout"], (path, actions)
        accessible(page)
    before = len(stack.api("GET", "/v1/audit?limit=1000")["entries"])
    forged = page.request.post(stack.url + "/ui/ops/brownout",
                               form={"factor": "0.1", "seconds": "600"})  # fmt: skip
    assert forged.status == 403 and "CSRF" in forged.text()
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    form = {"csrf": csrf, "factor": "0.1", "seconds": "600"}
    wrong_role = page.request.post(stack.url + "/ui/ops/brownout", form=form)
    assert wrong_role.status == 403 and "may not deploy" in wrong_role.text()
    assert stack.api("GET", "/v1/brownout")["brownout"] is None
    entries = stack.api("GET", "/v1/audit?limit=1000")["entries"][before:]
    assert [(e["principal"], e["action"], e["outcome"]) for e in entries] == [
        ("victor", "setBrownout", "refused"), ("victor", "setBrownout", "forbidden"),
    ]  # fmt: skip


def _metrics(stack: Stack) -> dict[tuple[str, str], float]:
    """(rule, verdict with mode) -> decisions, summed over both limiters."""
    out: dict[tuple[str, str], float] = {}
    for url in stack.limiters:
        for family in text_string_to_metric_families(httpx.get(url + "/metrics", timeout=5).text):
            for sample in family.samples:
                if sample.name == "ratemw_decisions_total":
                    key = (sample.labels["rule"], sample.labels["verdict"])
                    out[key] = out.get(key, 0.0) + sample.value
    return out


def test_the_overview_charts_add_up_to_the_limiters_metrics(
    stack: Stack, open_session: Callable[..., Session]
) -> None:
    assert stack.traffic.sent > 0
    stack.traffic.pause()
    try:
        metrics = _metrics(stack)
        total = int(sum(metrics.values()))
        s = open_session("viewer")
        page = s.page

        deadline = time.monotonic() + DEADLINE
        while True:
            page.goto(stack.url + "/ui/")
            shown = page.locator("#verdict-total").get_attribute("data-total")
            if shown == str(total):
                break
            if time.monotonic() > deadline:
                window = read_counts(stack.redis.client(), f"ratemw:{stack.ops_app}:", time.time())
                charted = {(r, f): sum(v) for r, fs in window.series.items() for f, v in fs.items()}
                pytest.fail(f"the overview shows {shown} decisions, /metrics {total}: "
                            f"{charted} against {metrics}")  # fmt: skip
            time.sleep(0.2)
        assert _metrics(stack) == metrics  # nothing moved while we looked
        for rule in ("login", "search", "reports"):
            row = page.locator(f"tr[data-rule='{rule}']")
            allowed = sum(v for (r, verdict), v in metrics.items()
                          if r == rule and verdict == "allowed")  # fmt: skip
            rejected = sum(v for (r, verdict), v in metrics.items()
                           if r == rule and verdict == "rejected")  # fmt: skip
            assert row.locator("td[data-allowed]").get_attribute("data-allowed") == str(
                int(allowed)
            )
            assert row.locator("td[data-rejected]").get_attribute("data-rejected") == str(
                int(rejected)
            )
            chart = row.locator("svg.chart")
            assert chart.get_attribute("data-allowed") == str(int(allowed))
        bars = page.locator("svg.bars rect.bar")
        assert (
            sum(int(bars.nth(i).get_attribute("data-value")) for i in range(bars.count())) == total
        )
        s.shot("overview")
        phone = open_session("viewer", width=390, height=844)
        phone.page.goto(stack.url + "/ui/")
        accessible(phone.page)
        phone.shot("overview-phone")
    finally:
        stack.traffic.resume()

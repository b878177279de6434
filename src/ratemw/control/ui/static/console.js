// ratemw console: refreshes live parts, counts down, and validates drafts as you type.
// Everything here only improves pages that work without it.
"use strict";
(function () {
  var DEBOUNCE_MS = 600;

  function text(el, value) { el.textContent = value; }

  // -- countdowns: data-left is the seconds left when the page was rendered --------------
  function startCountdowns(root) {
    root.querySelectorAll("[data-left]").forEach(function (el) {
      el.dataset.deadline = String(Date.now() / 1000 + Number(el.dataset.left || 0));
    });
  }
  function format(seconds) {
    var s = Math.max(0, Math.floor(seconds));
    if (s >= 3600) { return Math.floor(s / 3600) + " h " + String(Math.floor(s % 3600 / 60)).padStart(2, "0") + " min"; }
    if (s >= 60) { return Math.floor(s / 60) + " min " + String(s % 60).padStart(2, "0") + " s"; }
    return s + " s";
  }
  function tick() {
    document.querySelectorAll("[data-deadline]").forEach(function (el) {
      var left = Number(el.dataset.deadline) - Date.now() / 1000;
      text(el, left > 0 ? format(left) + " left" : "ended");
      var live = el.closest("[data-refresh]");
      if (left <= 0 && live && !el.dataset.ended) {
        el.dataset.ended = "1"; // show what the server says now, without waiting a round
        setTimeout(function () { refresh(live); }, 1000);
      }
    });
  }

  // -- live parts: fetch the page again and swap the element with the same id -----------
  function refresh(el) {
    if (el.contains(document.activeElement)) { return; } // never under the user's hands
    fetch(window.location.pathname + window.location.search, {
      credentials: "same-origin", headers: {"Accept": "text/html"}, cache: "no-store"
    }).then(function (response) {
      return response.ok ? response.text() : null;
    }).then(function (html) {
      if (!html || el.contains(document.activeElement)) { return; }
      var fresh = new DOMParser().parseFromString(html, "text/html").getElementById(el.id);
      if (fresh) {
        el.replaceChildren.apply(el, Array.prototype.slice.call(fresh.childNodes));
        startCountdowns(el);
        tick();
      }
    }).catch(function () { /* offline for a moment: the next round tries again */ });
  }

  // -- drafts: post the form with live=1, show the problems and the diff -----------------
  function showCheck(form, data) {
    var box = form.querySelector("[data-problems]");
    if (!box) { return; }
    box.replaceChildren();
    var p = document.createElement("p");
    p.className = data.ok ? "ok" : "error";
    var strong = document.createElement("strong");
    text(strong, data.ok ? "Valid: " : "Not valid: ");
    p.appendChild(strong);
    p.appendChild(document.createTextNode(data.errors + " error(s), " + data.warnings + " warning(s)."));
    box.appendChild(p);
    if (data.problems.length) {
      var list = document.createElement("ul");
      list.className = "problem-list";
      data.problems.forEach(function (problem) {
        var li = document.createElement("li");
        li.className = "problem-" + problem.severity;
        li.dataset.line = problem.line;
        li.dataset.column = problem.column;
        text(li, problem.severity + " at line " + problem.line + ", column " + problem.column + ": " + problem.reason);
        list.appendChild(li);
      });
      box.appendChild(list);
    }
    var diff = document.querySelector("[data-diff]");
    if (diff && data.changes) {
      diff.replaceChildren();
      var h = document.createElement("h3");
      text(h, "Rule changes (as you type)");
      diff.appendChild(h);
      var ul = document.createElement("ul");
      ul.className = "changes";
      (data.changes.length ? data.changes : ["no rule changes"]).forEach(function (line) {
        var li = document.createElement("li");
        li.className = "mono";
        text(li, line);
        ul.appendChild(li);
      });
      diff.appendChild(ul);
    }
  }
  function liveCheck(form) {
    var timer = null;
    var run = function () {
      var body = new URLSearchParams(new FormData(form));
      body.set("live", "1");
      fetch(form.getAttribute("action"), {
        method: "POST", credentials: "same-origin", body: body,
        headers: {"Accept": "application/json"}
      }).then(function (response) {
        return response.ok ? response.json() : null;
      }).then(function (data) { if (data) { showCheck(form, data); } })
        .catch(function () { /* the Check button still works */ });
    };
    form.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(run, DEBOUNCE_MS);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    startCountdowns(document);
    tick();
    setInterval(tick, 1000);
    document.querySelectorAll("[data-refresh]").forEach(function (el) {
      var seconds = Math.max(2, Number(el.dataset.refresh) || 10);
      setInterval(function () { refresh(el); }, seconds * 1000);
    });
    document.querySelectorAll("form[data-live-check]").forEach(liveCheck);
  });
})();

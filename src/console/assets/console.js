// iochub console: the little the pages need from a script; every page works without it.
// Served from the binary under the page's CSP (script-src 'self'), so no inline handlers.
"use strict";

// A wall screen keeps the overview current: an element with data-refresh="N" reloads the
// page every N seconds, unless someone is typing in a field or the tab is hidden.
(function () {
  var marker = document.querySelector("[data-refresh]");
  if (!marker) return;
  var seconds = parseInt(marker.getAttribute("data-refresh"), 10);
  if (!(seconds >= 15)) return;
  setInterval(function () {
    var active = document.activeElement;
    var typing = active && /^(INPUT|TEXTAREA|SELECT)$/.test(active.tagName);
    if (!typing && document.visibilityState === "visible") window.location.reload();
  }, seconds * 1000);
})();

// Ctrl+Enter in the SQL box runs the query.
(function () {
  var box = document.getElementById("sql-text");
  if (!box) return;
  box.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey) && box.form) {
      e.preventDefault();
      box.form.requestSubmit();
    }
  });
})();

// The ticket list refreshes itself: every 10 seconds it asks whether any ticket
// changed, and reloads the page when one did (no build step, no framework).
(function () {
  "use strict";
  var list = document.querySelector("[data-poll]");
  if (!list) { return; }
  var url = list.getAttribute("data-poll");
  var mark = null;
  function look() {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (body) {
        if (!body) { return; }
        if (mark !== null && body.mark !== mark) { window.location.reload(); }
        mark = body.mark;
      })
      .catch(function () {});
  }
  look();
  window.setInterval(look, 10000);
}());

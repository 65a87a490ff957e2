// Reloads the page when the server's trail moves on (a new request, a
// decision, a revocation), unless the person is typing in a field.
// Same origin only; the page works without it (a <noscript> refresh).
(function () {
  "use strict";
  var seq = document.body.getAttribute("data-seq");
  if (!seq || !window.fetch) { return; }
  function busy() {
    var a = document.activeElement;
    if (a && a.tagName === "INPUT") { return true; }
    var fields = document.querySelectorAll("input:not([type=hidden])");
    for (var i = 0; i < fields.length; i++) {
      if (fields[i].value !== fields[i].defaultValue) { return true; }
    }
    return false;
  }
  function poll(delay) {
    setTimeout(function () {
      fetch("/console/changes?seq=" + encodeURIComponent(seq), { credentials: "same-origin", cache: "no-store" })
        .then(function (r) { if (!r.ok) { throw new Error(String(r.status)); } return r.json(); })
        .then(function (j) {
          if (String(j.seq) !== seq) {
            if (busy()) { poll(2000); return; }
            location.reload();
            return;
          }
          poll(0);
        })
        .catch(function () { poll(5000); });
    }, delay);
  }
  poll(0);
}());

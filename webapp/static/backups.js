// A restore's or an export's progress on the dashboard: the request is polled until it ends,
// then the page shows its outcome (the restored state, or the download link).
(function () {
  "use strict";
  var box = document.getElementById("backup-progress");
  if (!box) return;
  var bar = document.getElementById("backup-bar");
  var message = document.getElementById("backup-message");
  function show(request) {
    bar.style.width = (request.progress || 0) + "%";
    bar.parentElement.setAttribute("aria-valuenow", request.progress || 0);
    if (request.message) message.textContent = request.message + "…";
  }
  show({ progress: parseInt(bar.getAttribute("data-progress"), 10) || 0 });
  function poll() {
    fetch(box.getAttribute("data-request"), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (body) {
        if (body && (body.request.status === "done" || body.request.status === "failed")) {
          window.location.reload();
          return;
        }
        if (body) show(body.request);
        window.setTimeout(poll, 2000);
      })
      .catch(function () { window.setTimeout(poll, 5000); });
  }
  window.setTimeout(poll, 2000);
})();

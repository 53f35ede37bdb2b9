// Live progress of the instance on the dashboard, from the server-sent events endpoint.
(function () {
  "use strict";
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
    });
  });
  var card = document.getElementById("instance");
  if (!card) return;
  var bar = document.getElementById("instance-bar");
  var steps = document.querySelectorAll("#instance-steps li");
  var progressBox = document.getElementById("instance-progress");
  var statusBadge = document.getElementById("instance-status");
  var message = document.getElementById("instance-message");
  var stepOrder = Array.prototype.map.call(steps, function (li) { return li.getAttribute("data-step"); });

  function setProgress(value) {
    if (value === null || value === undefined) return;
    bar.style.width = value + "%";
    bar.parentElement.setAttribute("aria-valuenow", value);
  }
  function setStep(step) {
    var index = stepOrder.indexOf(step);
    if (index < 0) return;
    steps.forEach(function (li, i) {
      li.className = i < index ? "done" : (i === index ? "current" : "");
    });
  }
  setProgress(parseInt(bar.getAttribute("data-progress"), 10) || 0);
  if (card.getAttribute("data-busy") !== "true") return;

  var lastId = "";
  var source = null;
  var failures = 0;
  function listen() {
    // A browser reconnects an EventSource by itself after a dropped stream, but not after an
    // error status (a proxy restarting behind the front): then we open it again, resuming.
    var url = card.getAttribute("data-events");
    source = new EventSource(lastId ? url + "?after=" + encodeURIComponent(lastId) : url);
    source.addEventListener("progress", function (event) {
      var data = JSON.parse(event.data);
      if (event.lastEventId) lastId = event.lastEventId;
      failures = 0;
      progressBox.classList.remove("reconnecting");
      message.textContent = data.message;
      setStep(data.step);
      setProgress(data.progress);
    });
    source.addEventListener("state", function (event) {
      var data = JSON.parse(event.data);
      failures = 0;
      progressBox.classList.remove("reconnecting");
      statusBadge.textContent = data.status;
      statusBadge.className = "badge status-" + data.status;
      card.setAttribute("data-status", data.status);
      if (!data.inFlight && ["ready", "paused", "failed", "destroyed"].indexOf(data.status) >= 0) {
        source.close();
        if (data.status === "ready") { setStep("ready"); setProgress(100); }
        window.setTimeout(function () { window.location.reload(); }, 600);
      }
    });
    source.onerror = function () {
      progressBox.classList.add("reconnecting");
      if (source.readyState !== EventSource.CLOSED) return;
      failures += 1;  // refused for good (signed out, gone): reload, which shows why
      if (failures > 4) { window.location.reload(); return; }
      window.setTimeout(listen, 1000 * Math.pow(2, failures));
    };
  }
  listen();
})();

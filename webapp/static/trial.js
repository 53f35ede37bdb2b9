// Homepage trial chat. The server counts the messages; this script only shows what it says.
(function () {
  "use strict";
  var box = document.getElementById("trial-chat");
  if (!box) return;
  var form = document.getElementById("trial-form");
  var input = document.getElementById("trial-input");
  var log = document.getElementById("trial-log");
  var status = document.getElementById("trial-status");
  var history = [];

  function show(role, text) {
    var item = document.createElement("li");
    item.className = "trial-" + role;
    item.textContent = text;
    log.appendChild(item);
    return item;
  }

  function offerSignup(error) {
    status.textContent = error.message + " " + error.action + " ";
    var link = document.createElement("a");
    link.href = error.link || "/signup";
    link.textContent = "Create your free account";
    status.appendChild(link);
    input.disabled = true;
    form.querySelector("button").disabled = true;
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = input.value.trim();
    if (!text) return;
    show("user", text);
    history.push({ role: "user", content: text });
    input.value = "";
    status.textContent = "…";
    fetch(box.dataset.endpoint, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": box.dataset.csrf },
      body: JSON.stringify({ messages: history.slice(-10) })
    }).then(function (response) {
      return response.json().then(function (body) { return { status: response.status, body: body }; });
    }).then(function (result) {
      if (result.body.error) {
        history.pop();
        if (result.body.error.code === "trial_limit") return offerSignup(result.body.error);
        status.textContent = result.body.error.message + " " + result.body.error.action;
        return;
      }
      show("assistant", result.body.reply);
      history.push({ role: "assistant", content: result.body.reply });
      status.textContent = result.body.remaining + " free messages left.";
    }).catch(function () {
      history.pop();
      status.textContent = "The assistant could not be reached. Try again in a minute.";
    });
  });
})();

// Live delivery progress on a confirmed submission's result page: asks the server for the
// delivery's state every few seconds until it is archived or failed (.cat -> .cat_proc ->
// archived), and ticks the steps off as they happen.
(function () {
  "use strict";
  var box = document.getElementById("delivery");
  if (!box || box.dataset.done === "1" || !window.fetch) { return; }
  var POLL_MS = 2000;

  function show(data) {
    if (!data.delivery) { return false; }
    var html = "<p>Delivery <span class=\"mono\"></span>: <span id=\"delivery-state\"></span></p>" +
      "<ol class=\"steps\" id=\"delivery-steps\"></ol>";
    box.innerHTML = html;
    box.querySelector(".mono").textContent = data.delivery;
    var state = box.querySelector("#delivery-state");
    state.textContent = data.state + (data.reason ? ": " + data.reason : "");
    state.className = "state-" + data.state;
    var list = box.querySelector("#delivery-steps");
    data.steps.forEach(function (s) {
      var li = document.createElement("li");
      li.dataset.step = s.step;
      li.className = s.at ? "done" : "todo";
      li.textContent = s.text + (s.at ? " · " + s.at.replace("T", " ").slice(0, 19) : "");
      list.appendChild(li);
    });
    return data.state === "archived" || data.state === "failed";
  }

  function poll() {
    fetch(box.dataset.poll, {credentials: "same-origin"})
      .then(function (r) { return r.json(); })
      .then(function (data) { if (!show(data)) { window.setTimeout(poll, POLL_MS); } })
      .catch(function () { window.setTimeout(poll, POLL_MS * 2); });
  }

  window.setTimeout(poll, POLL_MS);
})();

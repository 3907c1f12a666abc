// Live submission monitor: follows the server-sent events of one submission.
// EventSource resumes by itself after a dropped connection, sending Last-Event-ID.
(function () {
  "use strict";
  var list = document.getElementById("monitor");
  if (!list || list.dataset.done === "1" || !window.EventSource) { return; }
  var outcome = document.getElementById("outcome");
  var link = document.getElementById("result-link");
  var note = document.getElementById("monitor-note");
  var seen = {};
  Array.prototype.forEach.call(list.children, function (li) { seen[li.dataset.id] = true; });
  var url = list.dataset.events + "?after=" + encodeURIComponent(list.dataset.cursor || "0");
  var source = new EventSource(url);

  function add(message) {
    if (seen[message.id]) { return; }
    seen[message.id] = true;
    var li = document.createElement("li");
    li.dataset.id = message.id;
    var time = document.createElement("span");
    time.className = "muted";
    time.textContent = message.time;
    li.appendChild(time);
    li.appendChild(document.createTextNode(" " + message.message));
    list.appendChild(li);
    list.scrollTop = list.scrollHeight;
  }

  source.addEventListener("progress", function (e) {
    add(JSON.parse(e.data));
    if (outcome.textContent === "WAITING") { outcome.textContent = "PROCESSING"; }
  });
  source.addEventListener("done", function (e) {
    var message = JSON.parse(e.data);
    add(message);
    source.close();
    outcome.textContent = message.state.toUpperCase();
    outcome.className = "outcome " + message.state;
    link.hidden = false;
    note.textContent = "";
  });
})();

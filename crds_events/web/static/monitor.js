// Live submission monitor: follows the server-sent events of one submission.
// EventSource resumes by itself after a dropped connection, sending Last-Event-ID. A
// stream the server refuses (429: too many open progress streams) is not retried by
// EventSource, so the page tries again itself after a pause, from the last line it has.
(function () {
  "use strict";
  var list = document.getElementById("monitor");
  if (!list || list.dataset.done === "1" || !window.EventSource) { return; }
  var outcome = document.getElementById("outcome");
  var link = document.getElementById("result-link");
  var note = document.getElementById("monitor-note");
  var RETRY_MS = 5000;
  var noteText = note.textContent;
  var seen = {};
  var cursor = Number(list.dataset.cursor || "0");
  Array.prototype.forEach.call(list.children, function (li) { seen[li.dataset.id] = true; });

  function add(message) {
    if (seen[message.id]) { return; }
    seen[message.id] = true;
    cursor = Math.max(cursor, Number(message.id));
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

  function connect() {
    var source = new EventSource(list.dataset.events + "?after=" + encodeURIComponent(cursor));
    source.addEventListener("open", function () { note.textContent = noteText; });
    source.addEventListener("progress", function (e) {
      add(JSON.parse(e.data));
      if (outcome.textContent === "WAITING") { outcome.textContent = "STARTED"; }
    });
    source.addEventListener("done", function (e) {
      var message = JSON.parse(e.data);
      add(message);
      source.close();
      // CRDS's word for the state (BAD FILES, FAIL, ...), as every other page shows it
      outcome.textContent = message.status || message.state.toUpperCase();
      outcome.className = "outcome " + message.state;
      link.hidden = false;
      note.textContent = "";
    });
    source.addEventListener("error", function () {
      if (source.readyState !== EventSource.CLOSED) { return; }  // reconnecting by itself
      // the status is not visible here: most likely too many open progress streams
      note.textContent = "The live view was refused (too many open monitors?); trying " +
        "again in " + (RETRY_MS / 1000) + " s, or reload the page.";
      window.setTimeout(connect, RETRY_MS);
    });
  }

  connect();
})();

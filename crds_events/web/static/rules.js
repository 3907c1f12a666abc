// The rules display of a context: an rmap's rules are fetched when its section is opened
// (once), the filter box narrows the outline as you type, and the buttons open or close
// every instrument. Without JavaScript the filter is a GET form and each rmap links to
// its own page.
(function () {
  "use strict";
  var outline = document.getElementById("outline");
  if (!outline) { return; }

  function load(details) {
    var box = details.querySelector(".rules");
    if (!box || details.dataset.loaded) { return; }
    details.dataset.loaded = "1";
    box.textContent = "loading…";
    fetch(details.dataset.src, {credentials: "same-origin"})
      .then(function (r) {
        if (!r.ok) { throw new Error(r.status + " " + r.statusText); }
        return r.text();
      })
      .then(function (html) { box.innerHTML = html; })
      .catch(function (e) {
        delete details.dataset.loaded;
        box.textContent = "could not load the rules (" + e.message + "); close and open to retry";
      });
  }

  outline.addEventListener("toggle", function (e) {
    var target = e.target;
    if (target.classList && target.classList.contains("rmap") && target.open) { load(target); }
  }, true);

  var input = document.getElementById("rules-q");
  function filter() {
    var q = input.value.trim().toLowerCase();
    Array.prototype.forEach.call(outline.querySelectorAll("details.instrument"), function (inst) {
      var whole = !q || inst.dataset.filter.indexOf(q) >= 0;
      var any = false;
      Array.prototype.forEach.call(inst.querySelectorAll("li[data-filter]"), function (li) {
        var hit = whole || li.dataset.filter.indexOf(q) >= 0;
        li.hidden = !hit;
        any = any || hit;
      });
      inst.hidden = !(whole || any);
      if (q && (whole || any)) { inst.open = true; }
    });
  }
  if (input) { input.addEventListener("input", filter); }

  function all(open) {
    Array.prototype.forEach.call(outline.querySelectorAll("details.instrument"), function (d) {
      if (!d.hidden) { d.open = open; }
    });
  }
  var expand = document.getElementById("expand-all");
  var collapse = document.getElementById("collapse-all");
  if (expand) { expand.addEventListener("click", function () { all(true); }); }
  if (collapse) { collapse.addEventListener("click", function () { all(false); }); }
})();
